import { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { activate, stage } from '../../../app/src/keyring/lifecycle.js';
import { generateKey } from '../../../app/src/keyring/generate.js';
import { NodeMetrics } from '../../../app/src/metrics/nodeMetrics.js';
import { RateWindow, readFigures } from '../../../app/src/metrics/rates.js';
import { ringFigures, ringTransitions } from '../../../app/src/metrics/ringFigures.js';
import { startMetricsServer } from '../../../app/src/metrics/server.js';
import { buildRing, LIFETIMES, loadedHolder, newMasterKey, revokeActive, rotateKey, T0 } from '../support/ring.js';

const HOUR = 3_600_000;

/** The value of one series of `name` whose labels include `labels` (collectors run first). */
export async function valueOf(metrics: NodeMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const family = name.replace(/_(count|sum|bucket)$/, '');
  const metric = metrics.registry.getSingleMetric(family);
  if (!metric) throw new Error(`no metric ${family}`);
  const { values } = await metric.get();
  return values.find(
    (v) => ((v as { metricName?: string }).metricName ?? family) === name && Object.entries(labels).every(([key, value]) => String((v.labels as Record<string, unknown>)[key]) === value),
  )?.value;
}

describe('ringFigures', () => {
  it('counts keys by purpose and state, and times the active and staged keys', async () => {
    const masterKey = newMasterKey();
    let doc = await buildRing(masterKey, T0);
    doc = await rotateKey(doc, 'sign', T0 + HOUR, masterKey);
    doc = stage(doc, await generateKey('cookie', T0 + 2 * HOUR, masterKey), T0 + 2 * HOUR);
    doc = revokeActive(doc, 'encrypt', T0 + 2 * HOUR);
    const figures = ringFigures(doc, T0 + 3 * HOUR, 24 * HOUR);
    expect(figures.sign.keys).toEqual({ staged: 0, active: 1, retired: 1, revoked: 0 });
    expect(figures.sign.activeKeyAgeS).toBe(2 * 3600);
    expect(figures.sign.rotationDueInS).toBe(22 * 3600);
    expect(figures.sign.stagedKeyAgeS).toBeUndefined();
    expect(figures.cookie.keys).toEqual({ staged: 1, active: 1, retired: 0, revoked: 0 });
    expect(figures.cookie.stagedKeyAgeS).toBe(3600);
    expect(figures.encrypt.keys).toEqual({ staged: 0, active: 0, retired: 0, revoked: 1 });
    expect(figures.encrypt.activeKeyAgeS).toBeUndefined();
  });

  it('reports an overdue rotation as a negative due time', async () => {
    const doc = await buildRing(newMasterKey(), T0);
    expect(ringFigures(doc, T0 + 25 * HOUR, 24 * HOUR).sign.rotationDueInS).toBe(-3600);
  });
});

describe('ringTransitions', () => {
  it('sees activations and revocations between two rings, even across skipped versions', async () => {
    const masterKey = newMasterKey();
    const v1 = await buildRing(masterKey, T0);
    const v2 = await rotateKey(v1, 'sign', T0 + 1000, masterKey);
    const v3 = revokeActive(v2, 'cookie', T0 + 2000);
    expect(ringTransitions(v1, v2)).toEqual({ activated: ['sign'], revoked: [] });
    expect(ringTransitions(v1, v3)).toEqual({ activated: ['sign'], revoked: ['cookie'] });
    expect(ringTransitions(v3, v3)).toEqual({ activated: [], revoked: [] });
  });

  it('does not count a staged key, only its activation', async () => {
    const masterKey = newMasterKey();
    const v1 = await buildRing(masterKey, T0);
    const key = await generateKey('encrypt', T0 + 1000, masterKey);
    const staged = stage(v1, key, T0 + 1000);
    expect(ringTransitions(v1, staged).activated).toEqual([]);
    expect(ringTransitions(staged, activate(staged, key.kid, T0 + 2000, LIFETIMES)).activated).toEqual(['encrypt']);
  });
});

describe('RateWindow', () => {
  it('answers verifications per second and the cache hit ratio over the window', () => {
    const window = new RateWindow(10_000);
    expect(window.sample(T0, { verifications: 0, cacheable: 0, hits: 0 })).toEqual({ verificationsPerSecond: 0, cacheHitRatio: null, windowMs: 0 });
    expect(window.sample(T0 + 5_000, { verifications: 100, cacheable: 80, hits: 60 })).toEqual({ verificationsPerSecond: 20, cacheHitRatio: 0.75, windowMs: 5_000 });
    window.sample(T0 + 10_000, { verifications: 200, cacheable: 160, hits: 140 });
    // The first sample left the window: measured from T0 + 5 s to T0 + 15 s.
    expect(window.sample(T0 + 15_000, { verifications: 200, cacheable: 160, hits: 140 })).toEqual({
      verificationsPerSecond: 10,
      cacheHitRatio: 1,
      windowMs: 10_000,
    });
  });

  it('reads figures back from a heartbeat, dropping anything malformed', () => {
    expect(readFigures({ verificationsPerSecond: 3.5, cacheHitRatio: null, windowMs: 10_000 })).toEqual({ verificationsPerSecond: 3.5, cacheHitRatio: null, windowMs: 10_000 });
    for (const bad of [null, 'x', {}, { verificationsPerSecond: -1, cacheHitRatio: 0, windowMs: 1 }, { verificationsPerSecond: 1, cacheHitRatio: 2, windowMs: 1 }, { verificationsPerSecond: '1', cacheHitRatio: 0, windowMs: 1 }]) {
      expect(readFigures(bad)).toBeUndefined();
    }
  });
});

/** A stand-in for an ioredis connection: a status and the events metrics listen to. */
const fakeRedis = (status: string) => Object.assign(new EventEmitter(), { status });

async function observed() {
  const state = await loadedHolder(T0);
  const metrics = new NodeMetrics({ nodeId: 'node-1', role: 'auto', rotationIntervalMs: 24 * HOUR, clock: state.clock, defaultMetrics: false });
  const lease = { held: true };
  const redis = { main: fakeRedis('ready'), sub: fakeRedis('ready') };
  metrics.observe({ holder: state.holder, lease, redis });
  return { ...state, metrics, lease, redis };
}

describe('NodeMetrics', () => {
  it('reads the ring held at scrape time: version, keys, key ages, due times, completeness', async () => {
    const { metrics, clock } = await observed();
    clock.advance(2 * HOUR);
    expect(await valueOf(metrics, 'keyfleet_ring_version')).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_ring_complete')).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_keys', { purpose: 'sign', state: 'active' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_keys', { purpose: 'sign', state: 'revoked' })).toBe(0);
    expect(await valueOf(metrics, 'keyfleet_active_key_age_seconds', { purpose: 'cookie' })).toBe(7200);
    expect(await valueOf(metrics, 'keyfleet_rotation_due_in_seconds', { purpose: 'cookie' })).toBe(22 * 3600);
    expect(await valueOf(metrics, 'keyfleet_ring_loaded_age_seconds')).toBe(7200);
    expect(await valueOf(metrics, 'keyfleet_staged_key_age_seconds', { purpose: 'sign' })).toBeUndefined();
    expect(await valueOf(metrics, 'keyfleet_rotation_interval_seconds')).toBe(24 * 3600);
    expect(await valueOf(metrics, 'keyfleet_node_info', { node: 'node-1', role: 'auto' })).toBe(1);
  });

  it('counts rotations and revocations from ring changes, and times their propagation', async () => {
    const { metrics, clock, store, holder, masterKey, doc } = await observed();
    expect(await valueOf(metrics, 'keyfleet_rotations_total', { purpose: 'sign' })).toBe(0);
    expect(await valueOf(metrics, 'keyfleet_ring_propagation_seconds_count')).toBe(0);

    clock.advance(HOUR);
    store.doc = await rotateKey(doc, 'sign', clock.now(), masterKey); // committed now...
    clock.advance(40); // ...loaded 40 ms later
    await holder.reload('announced');
    store.doc = revokeActive(store.doc, 'cookie', clock.now());
    clock.advance(10);
    await holder.reload('announced');

    expect(await valueOf(metrics, 'keyfleet_rotations_total', { purpose: 'sign' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_rotations_total', { purpose: 'encrypt' })).toBe(0);
    expect(await valueOf(metrics, 'keyfleet_revocations_total', { purpose: 'cookie' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_ring_propagation_seconds_count')).toBe(2);
    expect(await valueOf(metrics, 'keyfleet_ring_propagation_seconds_sum')).toBeCloseTo(0.05, 5);
    expect(await valueOf(metrics, 'keyfleet_ring_propagation_seconds_bucket', { le: '0.025' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_ring_version')).toBe(3);
    expect(await valueOf(metrics, 'keyfleet_ring_complete')).toBe(0); // the revoked cookie key had no replacement here
    expect(await valueOf(metrics, 'keyfleet_ring_loaded_age_seconds')).toBe(0);
  });

  it('counts unknown-kid reloads, done and rate-limited', async () => {
    const { metrics, holder } = await observed();
    await holder.reloadForUnknownKid();
    await holder.reloadForUnknownKid(); // same instant: refused by the rate limit
    expect(await valueOf(metrics, 'keyfleet_unknown_kid_reloads_total', { result: 'reloaded' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_unknown_kid_reloads_total', { result: 'rate_limited' })).toBe(1);
  });

  it('reports the lease, Redis and the session store as they are at scrape time', async () => {
    const { metrics, lease, redis } = await observed();
    expect(await valueOf(metrics, 'keyfleet_primary_lease_held')).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_redis_connected', { connection: 'main' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_session_store_up')).toBe(1);
    lease.held = false;
    redis.main.status = 'reconnecting';
    redis.main.emit('reconnecting');
    expect(await valueOf(metrics, 'keyfleet_primary_lease_held')).toBe(0);
    expect(await valueOf(metrics, 'keyfleet_redis_connected', { connection: 'main' })).toBe(0);
    expect(await valueOf(metrics, 'keyfleet_redis_connected', { connection: 'sub' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_session_store_up')).toBe(0);
    expect(await valueOf(metrics, 'keyfleet_redis_reconnects_total', { connection: 'main' })).toBe(1);
  });

  it('keeps outcome codes bounded: anything that is not one of ours is folded into ERR_OTHER', async () => {
    const { metrics } = await observed();
    metrics.verification('sign', 'OK', 'hit');
    metrics.verification('sign', 'ERR_TOKEN_INVALID', 'miss');
    metrics.verification('sign', 'eyJhbGciOi.user-chosen text', 'miss');
    metrics.verification('cookie', 'ERR_SESSION_INVALID', 'none');
    expect(await valueOf(metrics, 'keyfleet_verifications_total', { purpose: 'sign', code: 'OK', cache: 'hit' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_verifications_total', { purpose: 'sign', code: 'ERR_OTHER', cache: 'miss' })).toBe(1);
    const text = await metrics.text();
    expect(text).not.toContain('eyJhbGciOi');
    // Three token checks, one of them answered by the cache; the session check is not cacheable.
    expect(metrics.figures().cacheHitRatio).toBeCloseTo(1 / 3, 3);
  });

  it('counts lease changes and the primary’s rotation runs', async () => {
    const { metrics } = await observed();
    metrics.leaseChanged(true);
    metrics.leaseChanged(false);
    metrics.leaseChanged(true);
    metrics.rotationRun('sign', true);
    metrics.rotationRun('sign', false);
    metrics.refreshTokenReuse();
    expect(await valueOf(metrics, 'keyfleet_primary_lease_changes_total', { change: 'acquired' })).toBe(2);
    expect(await valueOf(metrics, 'keyfleet_primary_lease_changes_total', { change: 'lost' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_rotation_runs_total', { purpose: 'sign', outcome: 'blocked' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_refresh_token_reuse_total')).toBe(1);
  });
});

describe('the /metrics listener', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  });

  it('answers GET /metrics in the Prometheus text format, and nothing else', async () => {
    const { metrics } = await observed();
    const server = await startMetricsServer(metrics.registry, 0, '127.0.0.1');
    servers.push(server);
    const base = `http://127.0.0.1:${server.port}`;
    const scrape = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5_000) });
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await scrape.text();
    expect(text).toMatch(/^# TYPE keyfleet_ring_version gauge$/m);
    expect(text).toMatch(/^keyfleet_ring_version 1$/m);

    const other = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5_000) });
    expect(other.status).toBe(404);
    expect(await other.json()).toEqual({ error: 'not found (only /metrics here)', code: 'ERR_NOT_FOUND' });
    const post = await fetch(`${base}/metrics`, { method: 'POST', signal: AbortSignal.timeout(5_000) });
    expect(post.status).toBe(405);
    expect((await post.json()).code).toBe('ERR_METHOD_NOT_ALLOWED');
  });

  it('names METRICS_PORT when its port is taken', async () => {
    const { metrics } = await observed();
    const first = await startMetricsServer(metrics.registry, 0, '127.0.0.1');
    servers.push(first);
    await expect(startMetricsServer(metrics.registry, first.port, '127.0.0.1')).rejects.toThrow(`METRICS_PORT: cannot listen on 127.0.0.1:${first.port} (EADDRINUSE)`);
  });
});
