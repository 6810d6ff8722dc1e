import { once } from 'node:events';
import { loadConfig } from './config/index.js';
import { ConfigError, KeyfleetError } from './lib/errors.js';
import { createLogger } from './lib/log.js';
import { describeTarget } from './lib/redis.js';
import { startMetricsServer } from './metrics/server.js';
import { KeyfleetNode } from './node.js';

// Owns the process: configuration, listen, signals, graceful shutdown.

/** How long start-up waits for the key ring before listening regardless. */
const LISTEN_AFTER_MS = 10_000;
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`keyfleet: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const log = createLogger(config.logLevel, config.nodeId);
  log.info({ role: config.nodeRole, redis: describeTarget(config.redis), port: config.port }, 'starting');
  const node = new KeyfleetNode(config, log);
  const refuse = (error: unknown): never => {
    if (error instanceof KeyfleetError && error.code === 'ERR_MASTER_KEY_MISMATCH') {
      log.fatal({ code: error.code }, error.message);
      console.error(`keyfleet: refusing to start: ${error.message}`);
      process.exit(1);
    }
    throw error;
  };
  // Listen once the ring is loaded, so the balancer (which may send a request to a server it
  // has just found through DNS, before its first health check) never reaches a node without
  // one. If loading takes longer (Redis unreachable, an empty ring), listen anyway so that
  // /healthz can say why the node is not ready; credentials then get 503, retried elsewhere.
  let failed: { error: unknown } | undefined;
  const starting = node.start().catch((error: unknown) => {
    failed = { error };
  });
  await Promise.race([starting, new Promise((resolve) => setTimeout(resolve, LISTEN_AFTER_MS))]);
  if (failed) refuse(failed.error);
  const server = node.app.listen(config.port);
  server.keepAliveTimeout = 65_000;
  await once(server, 'listening');
  // Prometheus scrapes each node here, on a port the balancer does not forward.
  const metricsServer = config.metricsPort === 0 ? undefined : await startMetricsServer(node.metrics.registry, config.metricsPort);
  await starting;
  if (failed) refuse(failed.error);
  // uptimeMs: process start to this line (Node's own start-up included): the cold-start figure.
  log.info({ ring: node.holder.current?.version ?? null, uptimeMs: Math.round(process.uptime() * 1000) }, node.ready ? 'ready' : 'waiting for a key ring');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Fail health checks first, give the balancer time to notice, then finish in-flight work.
    log.info({ signal, drainMs: config.shutdownDrainMs }, 'draining');
    node.drain();
    await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
    server.closeIdleConnections();
    await node.stop(server);
    metricsServer?.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  console.error('keyfleet: failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
