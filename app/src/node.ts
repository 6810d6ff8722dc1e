import type { Server } from 'node:http';
import type { Redis } from 'ioredis';
import type { Config } from './config/index.js';
import { configureIssuer } from './auth/claims.js';
import { sessionMiddleware } from './auth/session.js';
import { RefreshTokens } from './auth/refresh.js';
import { CredentialRevocations } from './auth/revocations.js';
import { createVerifiers } from './auth/verifiers.js';
import { LoginThrottle } from './auth/throttle.js';
import { RedisCommandChannel } from './cluster/commands.js';
import { authenticBeats, HeartbeatDirectory, publishBeat, removeBeat } from './cluster/heartbeat.js';
import { Lease } from './cluster/lease.js';
import { PrimaryDuty } from './cluster/primary.js';
import { redisStatusSource } from './cluster/status.js';
import type { ClaimsSchema } from './auth/appClaims.js';
import { createKit, type KeyfleetHttp } from './http/kit.js';
import { localRing, staticRing } from './keyring/fixed.js';
import { RingHolder } from './keyring/holder.js';
import { RingSnapshot } from './keyring/snapshot.js';
import { RingStore } from './keyring/store.js';
import { RingWriter } from './keyring/writer.js';
import { systemClock, type Clock } from './lib/clock.js';
import type { Logger } from './lib/log.js';
import { connectRedis } from './lib/redis.js';
import { NodeMetrics } from './metrics/nodeMetrics.js';

export const leaseTickMs = (leaseTtlMs: number) => Math.min(500, Math.max(50, Math.floor(leaseTtlMs / 4)));

export interface NodeExtras {
  /** The app's claims schema (appClaims.ts). */
  claims?: ClaimsSchema;
  /** Whether an account still exists; default: USERS when it names any, else every account. */
  userExists?: (user: string) => boolean;
}

/**
 * One keyfleet node: its Redis connections, the ring it holds, its part in the election,
 * its heartbeat and the request side an app mounts (http/kit.ts). keyfleet.ts wraps it as
 * the public createKeyfleet().
 */
export class KeyfleetNode {
  readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly commandRedis: Redis;
  readonly store: RingStore;
  readonly holder: RingHolder;
  readonly lease: Lease;
  readonly primary: PrimaryDuty;
  readonly http: KeyfleetHttp;
  readonly metrics: NodeMetrics;
  readonly revocations: CredentialRevocations;
  /** Failed-login counters shared by every node (LOGIN_THROTTLE_*), for an app's login route. */
  readonly throttle: LoginThrottle;
  private readonly startedAt: number;
  private draining = false;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    extras: NodeExtras = {},
  ) {
    this.startedAt = clock.now();
    configureIssuer(config.publicIssuer);
    // socketTimeout: a connection that gets no reply at all for 5 s is dropped and made again.
    // A node cut off from Redis by the network (no RST, no FIN) otherwise kept a dead socket
    // for minutes after the route came back: every command timed out, no heartbeat, no
    // session (found by the nemesis). `commands` blocks at most 1 s (BLPOP), `sub` waits idle.
    this.redis = connectRedis(config.redis, 'main', { socketTimeout: 5_000 });
    // The subscriber too: the ring holder pings it, so a route that died silently is noticed.
    this.subscriber = connectRedis(config.redis, 'sub', { maxRetriesPerRequest: null, commandTimeout: undefined, socketTimeout: 5_000 });
    this.commandRedis = connectRedis(config.redis, 'commands', { commandTimeout: undefined, lazyConnect: true, socketTimeout: 5_000 });
    for (const [name, client] of [['main', this.redis], ['sub', this.subscriber], ['commands', this.commandRedis]] as const) {
      client.on('error', (error: Error) => log.debug({ connection: name, err: error.message }, 'redis connection error'));
    }
    this.store = new RingStore(this.redis, config.masterKey);
    this.holder = new RingHolder({
      nodeId: config.nodeId,
      peers: async () =>
        (await authenticBeats(this.redis, config.masterKey))
          .filter((beat) => beat.id !== config.nodeId && beat.ringId !== undefined)
          .map((beat) => ({ id: beat.id, ringId: beat.ringId!, ringVersion: beat.ringVersion })),
      store: this.store,
      subscriber: this.subscriber,
      masterKey: config.masterKey,
      clock,
      log: log.child({ component: 'ring' }),
      reloadIntervalMs: config.ringReloadIntervalMs,
      // Rotations stop waiting for a node once its heartbeat (TTL: three intervals) expires;
      // the node stops counting itself current half an interval before that.
      currentForMs: config.heartbeatIntervalMs * 2.5,
    });
    this.lease = new Lease(this.redis, config.nodeId, config.leaseTtlMs, clock);
    this.metrics = new NodeMetrics({ nodeId: config.nodeId, role: config.nodeRole, rotationIntervalMs: config.keyRotationIntervalMs, clock });
    this.metrics.observe({ holder: this.holder, lease: this.lease, redis: { main: this.redis, sub: this.subscriber } });
    const lifetimes = {
      sign: config.tokenTtlMs,
      encrypt: config.sessionTtlMs,
      cookie: config.sessionTtlMs,
      clockSkewMs: config.clockSkewMs,
    };
    const writer = new RingWriter({
      store: this.store,
      holder: this.holder,
      lease: this.lease,
      masterKey: config.masterKey,
      clock,
      log: log.child({ component: 'writer' }),
      nodeId: config.nodeId,
      lifetimes,
    });
    this.primary = new PrimaryDuty({
      role: config.nodeRole,
      nodes: new HeartbeatDirectory(this.redis, log.child({ component: 'primary' })),
      commands: new RedisCommandChannel(this.commandRedis, this.redis, log.child({ component: 'primary' })),
      store: this.store,
      holder: this.holder,
      lease: this.lease,
      writer,
      clock,
      log: log.child({ component: 'primary' }),
      masterKey: config.masterKey,
      rotationIntervalMs: config.keyRotationIntervalMs,
      confirmTimeoutMs: config.rotationConfirmTimeoutMs,
      minReplicas: config.redisMinReplicas,
      metrics: this.metrics,
      prepublishMs: config.jwksPrepublishMs,
    });
    this.revocations = new CredentialRevocations({
      redis: this.redis,
      subscriber: this.subscriber,
      clock,
      log: log.child({ component: 'revocations' }),
      // The longest any credential a not-before can refuse lives (refresh families are checked in Redis).
      horizonMs: Math.max(config.tokenTtlMs, config.sessionTtlMs, config.authCookie.absoluteMs) + config.clockSkewMs,
      storeHorizonMs: config.refresh.absoluteMs + config.clockSkewMs,
      reloadIntervalMs: config.ringReloadIntervalMs,
    });
    this.throttle = new LoginThrottle(this.redis, config.loginThrottle, log.child({ component: 'throttle' }), clock);
    // One verifier a purpose, for every token and `auth` cookie this node checks.
    const verifiers = createVerifiers({ holder: this.holder, revocations: this.revocations, observe: this.metrics.verification.bind(this.metrics) });
    const users = config.users;
    this.http = createKit({
      verifiers,
      nodeId: config.nodeId,
      tokenTtlMs: config.tokenTtlMs,
      sessionTtlMs: config.sessionTtlMs,
      clockSkewMs: config.clockSkewMs,
      trustProxy: config.trustProxy,
      holder: this.holder,
      userExists: extras.userExists ?? (users.size > 0 ? (user) => users.has(user) : undefined),
      ...(extras.claims ? { claims: extras.claims } : {}),
      session: sessionMiddleware(this.redis, this.holder, config.sessionTtlMs, { log: log.child({ component: 'sessions' }) }),
      clock,
      log: log.child({ component: 'http' }),
      isDraining: () => this.draining,
      publicOrigins: config.publicOrigins,
      cookieHostPrefix: config.cookieHostPrefix,
      audiences: config.audiences,
      jwksPrepublishMs: config.jwksPrepublishMs,
      ...(config.publicIssuer ? { publicIssuer: config.publicIssuer } : {}),
      dashboard: {
        mode: config.dashboard,
        token: config.dashboardToken,
        operators: config.dashboardUsers,
        source: redisStatusSource(this.redis, this.store, log.child({ component: 'dashboard' })),
        heartbeatIntervalMs: config.heartbeatIntervalMs,
      },
      metrics: this.metrics,
      revocations: this.revocations,
      refresh: new RefreshTokens(this.redis, config.masterKey, config.refresh),
      cookieLifetimes: config.authCookie,
    });
    // Confirm a new ring version at once: rotation waits on these heartbeats.
    this.holder.on('change', () => void this.beat());
    // Likewise a revocation: `keyfleet revoke-user` waits on these.
    this.revocations.on('change', () => void this.beat());
  }

  /** Loads the ring (a wrong master key throws here) and starts the background duties. */
  async start(): Promise<void> {
    const { keyringMode, masterKey, staticSecret } = this.config;
    if (keyringMode === 'shared') {
      await this.holder.start();
      await this.primary.tick();
    } else {
      const now = this.clock.now();
      const doc = keyringMode === 'local' ? await localRing(masterKey, now) : staticRing(staticSecret!, masterKey, now);
      await this.holder.adopt(await RingSnapshot.open(doc, masterKey, undefined, this.clock));
      this.holder.markFixed();
      this.log.warn({ keyringMode }, keyringMode === 'local'
        ? 'KEYRING_MODE=local: this node uses keys of its own; other nodes will not accept what it mints'
        : 'KEYRING_MODE=static: keys derived from STATIC_SECRET; no rotation, no revocation');
    }
    await this.revocations.start();
    await this.beat();
    const every = (ms: number, fn: () => Promise<void>) => {
      const timer = setInterval(() => void fn().catch(() => undefined), ms);
      timer.unref();
      this.timers.push(timer);
    };
    // The holder renews, and the others try for a free lease, every half second (or TTL/4 if
    // shorter): a dead primary's lease is taken over within about one TTL of its last renewal.
    if (keyringMode === 'shared') every(leaseTickMs(this.config.leaseTtlMs), () => this.primary.tick());
    every(this.config.heartbeatIntervalMs, () => this.beat());
  }

  /** Waits until the ring is loaded; a secondary facing an empty ring waits here. */
  get ready(): boolean {
    return this.holder.current?.complete === true && !this.draining;
  }

  async beat(): Promise<void> {
    const sentAt = this.clock.now();
    await publishBeat(
      this.redis,
      {
        id: this.config.nodeId,
        role: this.config.nodeRole,
        primary: this.lease.held,
        ringVersion: this.holder.current?.version ?? 0,
        ...(this.holder.current ? { ringId: this.holder.current.document.ringId } : {}),
        startedAt: this.startedAt,
        at: this.clock.now(),
        draining: this.draining,
        figures: this.metrics.figures(),
        revocationSeq: this.revocations.seq,
      },
      this.config.heartbeatIntervalMs * 3,
      this.config.masterKey,
    ).then(
      () => this.backInTouch(sentAt),
      (error: unknown) => this.log.debug({ err: error }, 'heartbeat failed'),
    );
  }

  /**
   * A heartbeat Redis acknowledged. After a spell out of touch (cut off, paused), rotations
   * may have gone ahead without this node, and their announcement may never reach it (its
   * subscriber's connection can die with the route): it loads the ring before it vouches for
   * it again, or it would refuse the new keys' credentials with 401 (found by the nemesis).
   */
  private async backInTouch(sentAt: number): Promise<void> {
    if (!this.holder.inSync && !(await this.holder.reload('back in touch', { throwOnError: true }).then(() => true, () => false))) return;
    this.holder.markCurrent(sentAt);
  }

  /** Turns /healthz to 503 so the balancer stops sending new requests here. */
  drain(): void {
    this.draining = true;
  }

  async stop(server?: Server): Promise<void> {
    this.drain();
    for (const timer of this.timers) clearInterval(timer);
    this.holder.stop();
    this.revocations.stop();
    await this.primary.stop();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await removeBeat(this.redis, this.config.nodeId).catch(() => undefined);
    for (const client of [this.subscriber, this.commandRedis, this.redis]) client.disconnect();
  }
}
