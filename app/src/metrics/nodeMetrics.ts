import type { EventEmitter } from 'node:events';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RingHolder } from '../keyring/holder.js';
import { PURPOSES, type Purpose } from '../keyring/types.js';
import type { Clock } from '../lib/clock.js';
import { KEY_STATES, ringFigures, ringTransitions, type PurposeFigures } from './ringFigures.js';
import { RateWindow, type NodeFigures } from './rates.js';

// A node's Prometheus metrics (prom-client), in a registry of its own, served on METRICS_PORT
// (server.ts), never through the balancer. The rest of the code is observed, not changed:
// ring state is read at scrape time from the ring the node holds, ring changes arrive as the
// holder's `change` events, and the few things only the code knows (a verification's outcome,
// a lease change) are one-line calls to the MetricsObserver below.
//
// Labels stay bounded: purposes, key states, outcome codes (a fixed set in the code), Express
// route patterns; never a user name, a token, a kid or a raw path.

/** What the rest of the node reports; every method is cheap and never throws. */
export interface MetricsObserver {
  /** A credential check: `code` is 'OK' or the refusal's error code; `cache` for token and cookie checks. */
  verification(purpose: Purpose, code: string, cache: 'hit' | 'miss' | 'none'): void;
  /** A token or cookie carried an unknown kid: `reloaded` false when the reload was rate-limited. */
  unknownKidReload(reloaded: boolean): void;
  /** This node took (true) or lost (false) the primary lease. */
  leaseChanged(held: boolean): void;
  /** A rotation run by this node as primary ended: activated, or blocked by unconfirmed nodes. */
  rotationRun(purpose: Purpose, ok: boolean): void;
  /** A refresh token was presented again after it was redeemed (its family is revoked). */
  refreshTokenReuse(): void;
}

/** Where the collectors read the node's state at scrape time. */
export interface ObservedNode {
  holder: Pick<RingHolder, 'current' | 'on'>;
  lease: { readonly held: boolean };
  /** Redis connections by name (main, sub, ...): their ioredis `status`. */
  redis: Record<string, { readonly status: string } & Pick<EventEmitter, 'on'>>;
}

export interface NodeMetricsOptions {
  nodeId: string;
  role: string;
  rotationIntervalMs: number;
  clock: Clock;
  /** Node.js runtime metrics (process_*, nodejs_*); tests building many nodes turn them off. */
  defaultMetrics?: boolean;
}

/** An outcome code as a label value: our codes are ERR_ + capitals; anything else is folded. */
export const codeLabel = (code: string) => (code === 'OK' || /^ERR_[A-Z0-9_]{1,48}$/.test(code) ? code : 'ERR_OTHER');

/** One series of a scraped gauge: its labels and its value. */
type Sample = [labels: Record<string, string>, value: number];
const withValue = (labels: Record<string, string>, value: number | undefined): Sample[] => (value === undefined ? [] : [[labels, value]]);

/** Seconds, from the propagation of a ring change within one host to a stuck node's timeout. */
const PROPAGATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class NodeMetrics implements MetricsObserver {
  readonly registry = new Registry();
  private readonly clock: Clock;
  private loadedAt: number | undefined;
  private readonly totals = { verifications: 0, cacheable: 0, hits: 0 };
  private readonly rates = new RateWindow();

  private readonly rotations: Counter<'purpose'>;
  private readonly revocations: Counter<'purpose'>;
  private readonly propagation: Histogram;
  private readonly verifications: Counter<'purpose' | 'code' | 'cache'>;
  private readonly unknownKid: Counter<'result'>;
  private readonly leaseChanges: Counter<'change'>;
  private readonly rotationRuns: Counter<'purpose' | 'outcome'>;
  private readonly refreshReuse: Counter;
  private readonly redisReconnects: Counter<'connection'>;
  readonly logins: Counter<'outcome'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;

  constructor(private readonly options: NodeMetricsOptions) {
    this.clock = options.clock;
    this.rates.sample(this.clock.now(), this.totals); // the first figures count from start-up
    const registers = [this.registry];
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    new Gauge({ name: 'keyfleet_node_info', help: 'This node (value 1): its NODE_ID and NODE_ROLE', labelNames: ['node', 'role'], registers }).set(
      { node: options.nodeId, role: options.role },
      1,
    );
    new Gauge({ name: 'keyfleet_rotation_interval_seconds', help: 'KEY_ROTATION_INTERVAL: how often the primary rotates each purpose', registers }).set(
      options.rotationIntervalMs / 1000,
    );
    this.rotations = new Counter({ name: 'keyfleet_rotations_total', help: 'Keys this node saw become active (a rotation or a replacement), by purpose', labelNames: ['purpose'], registers });
    this.revocations = new Counter({ name: 'keyfleet_revocations_total', help: 'Keys this node saw become revoked, by purpose', labelNames: ['purpose'], registers });
    this.propagation = new Histogram({
      name: 'keyfleet_ring_propagation_seconds',
      help: 'Time from a ring change committed (by the primary) to this node loading it',
      buckets: PROPAGATION_BUCKETS,
      registers,
    });
    this.verifications = new Counter({
      name: 'keyfleet_verifications_total',
      help: 'Credential checks by purpose (sign: token, encrypt: auth cookie, cookie: session), outcome code and verified-credential cache',
      labelNames: ['purpose', 'code', 'cache'],
      registers,
    });
    this.unknownKid = new Counter({ name: 'keyfleet_unknown_kid_reloads_total', help: 'Credentials with a kid not in the ring: reloads done, and reloads refused by the rate limit', labelNames: ['result'], registers });
    this.leaseChanges = new Counter({ name: 'keyfleet_primary_lease_changes_total', help: 'Times this node took or lost the primary lease', labelNames: ['change'], registers });
    this.rotationRuns = new Counter({ name: 'keyfleet_rotation_runs_total', help: 'Rotations this node ran as primary, by purpose and outcome (ok, blocked: a node never confirmed)', labelNames: ['purpose', 'outcome'], registers });
    this.refreshReuse = new Counter({ name: 'keyfleet_refresh_token_reuse_total', help: 'Refresh tokens presented again after they were redeemed (the family is revoked)', registers });
    this.redisReconnects = new Counter({ name: 'keyfleet_redis_reconnects_total', help: 'Reconnection attempts to Redis, by connection', labelNames: ['connection'], registers });
    this.logins = new Counter({ name: 'keyfleet_logins_total', help: 'POST /login by outcome (ok, refused, throttled, invalid, unavailable)', labelNames: ['outcome'], registers });
    this.httpDuration = new Histogram({
      name: 'keyfleet_http_request_duration_seconds',
      help: 'HTTP requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    // Series that should read 0 rather than be absent before the first event.
    for (const purpose of PURPOSES) {
      this.rotations.inc({ purpose }, 0);
      this.revocations.inc({ purpose }, 0);
    }
    for (const change of ['acquired', 'lost']) this.leaseChanges.inc({ change }, 0);
    for (const result of ['reloaded', 'rate_limited']) this.unknownKid.inc({ result }, 0);
  }

  /** Starts observing a node: ring changes as they happen, the rest read at scrape time. */
  observe(node: ObservedNode): void {
    const { holder, lease, redis } = node;
    if (holder.current) this.loadedAt = this.clock.now();
    let held = holder.current?.document;
    holder.on('change', (snapshot) => {
      const now = this.clock.now();
      this.loadedAt = now;
      if (held) {
        // The first load at start-up is not a propagation: that ring may be hours old.
        this.propagation.observe(Math.max(0, now - snapshot.document.updatedAt) / 1000);
        const { activated, revoked } = ringTransitions(held, snapshot.document);
        for (const purpose of activated) this.rotations.inc({ purpose });
        for (const purpose of revoked) this.revocations.inc({ purpose });
      }
      held = snapshot.document;
    });
    holder.on('unknownKid', (reloaded) => this.unknownKidReload(reloaded));

    const ring = () => holder.current;
    const figures = () => {
      const current = ring();
      return current ? ringFigures(current.document, this.clock.now(), this.options.rotationIntervalMs) : undefined;
    };
    const perPurpose = (pick: (f: PurposeFigures) => number | undefined) => (): Sample[] => {
      const all = figures();
      return all ? PURPOSES.flatMap((purpose) => withValue({ purpose }, pick(all[purpose]))) : [];
    };
    const flag = (on: boolean) => (on ? 1 : 0);

    this.scraped('keyfleet_ring_version', 'Version of the key ring this node serves from (0: none loaded)', [], () => [[{}, ring()?.version ?? 0]]);
    this.scraped('keyfleet_ring_loaded_age_seconds', 'Seconds since this node loaded the ring version it holds', [], () =>
      withValue({}, this.loadedAt === undefined ? undefined : (this.clock.now() - this.loadedAt) / 1000),
    );
    this.scraped('keyfleet_ring_complete', '1 when the ring held has an active key for every purpose (the node can serve)', [], () => [[{}, flag(ring()?.complete === true)]]);
    this.scraped('keyfleet_keys', 'Keys in the ring held, by purpose and state', ['purpose', 'state'], () => {
      const all = figures();
      return all ? PURPOSES.flatMap((purpose) => KEY_STATES.map((state): Sample => [{ purpose, state }, all[purpose].keys[state]])) : [];
    });
    this.scraped('keyfleet_active_key_age_seconds', 'Seconds since the active key of each purpose was activated', ['purpose'], perPurpose((f) => f.activeKeyAgeS));
    this.scraped('keyfleet_rotation_due_in_seconds', 'Seconds until the scheduled rotation of each purpose (negative: overdue)', ['purpose'], perPurpose((f) => f.rotationDueInS));
    this.scraped('keyfleet_staged_key_age_seconds', 'Seconds since the staged key of each purpose was created (absent: none staged)', ['purpose'], perPurpose((f) => f.stagedKeyAgeS));
    this.scraped('keyfleet_primary_lease_held', '1 while this node holds the primary lease', [], () => [[{}, flag(lease.held)]]);
    // express-session's store uses the main connection, and refuses at once unless it is ready.
    this.scraped('keyfleet_session_store_up', '1 while the session store (Redis, main connection) is usable', [], () => [[{}, flag(redis.main?.status === 'ready')]]);
    this.scraped('keyfleet_redis_connected', '1 while the Redis connection is ready, by connection', ['connection'], () =>
      Object.entries(redis).map(([connection, client]): Sample => [{ connection }, flag(client.status === 'ready')]),
    );
    for (const [connection, client] of Object.entries(redis)) {
      this.redisReconnects.inc({ connection }, 0);
      client.on('reconnecting', () => this.redisReconnects.inc({ connection }));
    }
  }

  /** A gauge whose series are read from the node when Prometheus scrapes (absent series: not set). */
  private scraped(name: string, help: string, labelNames: string[], read: () => Sample[]): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      },
    });
  }

  verification(purpose: Purpose, code: string, cache: 'hit' | 'miss' | 'none'): void {
    this.verifications.inc({ purpose, code: codeLabel(code), cache });
    this.totals.verifications++;
    if (cache !== 'none') {
      this.totals.cacheable++;
      if (cache === 'hit') this.totals.hits++;
    }
  }

  unknownKidReload(reloaded: boolean): void {
    this.unknownKid.inc({ result: reloaded ? 'reloaded' : 'rate_limited' });
  }

  leaseChanged(held: boolean): void {
    this.leaseChanges.inc({ change: held ? 'acquired' : 'lost' });
  }

  rotationRun(purpose: Purpose, ok: boolean): void {
    this.rotationRuns.inc({ purpose, outcome: ok ? 'ok' : 'blocked' });
  }

  refreshTokenReuse(): void {
    this.refreshReuse.inc();
  }

  /** The dashboard's per-node figures, over the last few seconds (called once per heartbeat). */
  figures(): NodeFigures {
    return this.rates.sample(this.clock.now(), this.totals);
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
