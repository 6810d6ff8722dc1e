import { once } from 'node:events';
import type { Server } from 'node:http';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { Claims, ClaimsSchema } from './auth/appClaims.js';
import type { LoginThrottle } from './auth/throttle.js';
import { loadConfig, type Config } from './config/index.js';
import type { KeyfleetHttp } from './http/kit.js';
import { systemClock } from './lib/clock.js';
import { createLogger, type Logger } from './lib/log.js';
import { describeTarget } from './lib/redis.js';
import { startMetricsServer } from './metrics/server.js';
import { KeyfleetNode } from './node.js';

// The public object: one keyfleet node living inside an app's own process. Its lifetime is
// start() → serve() → stop(); the request side (routes, middleware, login) is http/kit.ts.

/** The node's configuration as parsed from the environment (config/index.ts). */
export type KeyfleetConfig = Config;

export interface KeyfleetOptions<C extends object = Claims> {
  /** Where configuration is read from (REDIS_URL, KEYRING_MASTER_KEY, TOKEN_TTL…). Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Overrides of the parsed configuration (programmatic use, tests). */
  config?: Partial<KeyfleetConfig>;
  /** A pino logger; default one at LOG_LEVEL, with the node id, authorization and cookies redacted. */
  logger?: Logger;
  /** The app's own claims: a zod schema (or `{ parse }`), checked at login and parsed on every read. */
  claims?: ClaimsSchema<C>;
  /**
   * Whether an account still exists, asked when a refresh token is redeemed and by the
   * dashboard's login mode. Default: USERS when it names any account, else every account does.
   */
  userExists?: (user: string) => boolean;
}

export interface ServeOptions {
  /** Drain and stop on SIGTERM and SIGINT, then exit 0 (default true). */
  signals?: boolean;
}

export interface Keyfleet<C extends object = Claims> extends KeyfleetHttp<C> {
  /** The parsed configuration. */
  readonly config: Readonly<KeyfleetConfig>;
  /** The node's logger (pino). */
  readonly log: Logger;
  /** True once the key ring is loaded, until draining starts (what /healthz answers 200 for). */
  readonly ready: boolean;
  /** The version of the key ring this node holds; null before it has one. */
  readonly ringVersion: number | null;
  /** Prometheus registry of this node's metrics (served on METRICS_PORT by serve()). */
  readonly metrics: Registry;
  /**
   * The node's Redis connection (ioredis), for the app's own data: the same server, user and
   * reconnection as keyfleet's, commands failing within ~2 s while Redis is away (an error
   * that isRedisUnavailable() recognises, answered 503 by errorHandler()). The nodes' ACL user
   * may only touch `keyfleet:*` keys: keep the app's under `appKey(app, …)`
   * (`keyfleet:app:<app>:…`). Do not disconnect it (stop() does), SUBSCRIBE on it or block on it.
   */
  readonly redis: Redis;
  /**
   * Failed-login counters shared by every node (LOGIN_*): guard(username, address, check)
   * around the app's password check, or admit() before it and failed(ticket) or
   * succeeded(ticket) after.
   */
  readonly loginThrottle: LoginThrottle;
  /**
   * Loads the ring (a wrong master key throws ERR_MASTER_KEY_MISMATCH), then runs the node's
   * duties: primary lease, rotation, heartbeats, operator commands, revocations.
   */
  start(): Promise<void>;
  /** /healthz answers 503 from now on, so the balancer stops sending requests here. */
  drain(): void;
  /** Stops the duties, closes the server given to serve() and the metrics listener, disconnects Redis. */
  stop(): Promise<void>;
  /**
   * Takes charge of an app's HTTP server: keep-alive longer than the balancer's, the metrics
   * listener on METRICS_PORT, and graceful shutdown on SIGTERM/SIGINT (drain, wait
   * SHUTDOWN_DRAIN, finish in-flight requests, stop, exit 0). Resolves once both listen.
   */
  serve(server: Server, options?: ServeOptions): Promise<void>;
}

/**
 * A keyfleet node inside an app's process, configured from the environment. Throws a
 * ConfigError naming every bad variable, before opening anything; then opens the node's
 * Redis connections. start() loads the ring and starts the duties.
 */
export function createKeyfleet<C extends object = Claims>(options: KeyfleetOptions<C> = {}): Keyfleet<C> {
  const config: Config = { ...loadConfig(options.env ?? process.env), ...options.config };
  const log = options.logger ?? createLogger(config.logLevel, config.nodeId);
  log.info({ role: config.nodeRole, redis: describeTarget(config.redis), port: config.port }, 'starting');
  const node = new KeyfleetNode(config, log, systemClock, {
    // Any object type reads back as Claims at run time: the schema only narrows it for the app.
    ...(options.claims ? { claims: options.claims as ClaimsSchema } : {}),
    ...(options.userExists ? { userExists: options.userExists } : {}),
  });
  const http = node.http as KeyfleetHttp<C>;
  let served: Server | undefined;
  let metricsServer: Server | undefined;
  let stopping: Promise<void> | undefined;

  const stop = () =>
    (stopping ??= (async () => {
      await node.stop(served);
      metricsServer?.close();
    })());

  async function serve(server: Server, { signals = true }: ServeOptions = {}): Promise<void> {
    served = server;
    // Longer than HAProxy's idle timeout, so the balancer closes idle connections, not us.
    server.keepAliveTimeout = 65_000;
    if (!server.listening) await once(server, 'listening');
    // Prometheus scrapes each node here, on a port the balancer does not forward.
    if (config.metricsPort !== 0 && !metricsServer) metricsServer = await startMetricsServer(node.metrics.registry, config.metricsPort);
    if (!signals) return;
    let shuttingDown = false;
    const shutdown = async (signal: string) => {
      if (shuttingDown) return;
      shuttingDown = true;
      // Fail health checks first, give the balancer time to notice, then finish in-flight work.
      log.info({ signal, drainMs: config.shutdownDrainMs }, 'draining');
      node.drain();
      await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
      server.closeIdleConnections();
      await stop();
      log.info('stopped');
      process.exit(0);
    };
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
  }

  return {
    ...http,
    config,
    log,
    get ready() {
      return node.ready;
    },
    get ringVersion() {
      return node.holder.current?.version ?? null;
    },
    metrics: node.metrics.registry,
    loginThrottle: node.throttle,
    get redis() {
      return node.redis;
    },
    start: () => node.start(),
    drain: () => node.drain(),
    stop,
    serve,
  };
}
