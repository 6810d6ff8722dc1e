import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { login, request } from '../support/http.js';
import { startTraffic } from '../support/traffic.js';

// Issue 3: the primary lease under failure and under misconfiguration.

const LEASE_TTL_MS = 10_000; // the default
const TICK_MS = 500; // how often a candidate tries for a free lease (app/src/node.ts leaseTickMs)

describe('primary election', () => {
  let cluster: Cluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  const leaseHolder = async (c: Cluster) => {
    const admin = c.redis.admin();
    try {
      const token = await admin.get('keyfleet:lease');
      return token?.slice(0, token.lastIndexOf('/'));
    } finally {
      admin.disconnect();
    }
  };

  it('another node takes the lease within the TTL when the primary is killed, and rotation goes on', async () => {
    cluster = await Cluster.start({ nodes: 3 });
    const c = cluster;
    const primary = (await leaseHolder(c))!;
    expect(c.nodes.has(primary)).toBe(true);
    const before = await login(c.url);

    const killedAt = Date.now();
    await c.killNode(primary);
    let next: string | undefined;
    await waitUntil(async () => {
      next = await leaseHolder(c);
      return next !== undefined && next !== primary;
    }, { timeoutMs: LEASE_TTL_MS + 5_000, intervalMs: 100, what: 'a new lease holder' });
    const failoverMs = Date.now() - killedAt;
    console.log(`[figures] primary ${primary} killed; ${next} took the lease after ${failoverMs} ms (lease TTL ${LEASE_TTL_MS} ms)`);
    expect(failoverMs).toBeLessThanOrEqual(LEASE_TTL_MS + TICK_MS);

    const rotated = await c.cli(['rotate', '--purpose', 'sign'], next);
    expect(rotated.exitCode, rotated.output).toBe(0);
    expect(rotated.stdout).toMatch(/2\/2 nodes confirmed/);
    for (let i = 0; i < 6; i++) {
      const reply = await request(`${c.url}/me`, { headers: { authorization: `Bearer ${before.token}` } });
      expect(reply.status).toBe(200);
    }
  });

  it('rotates on schedule and deletes retired keys once nothing they minted can be valid', async () => {
    cluster = await Cluster.start({
      nodes: 2,
      env: { KEY_ROTATION_INTERVAL: '2s', TOKEN_TTL: '2s', SESSION_TTL: '3s', CLOCK_SKEW: '1s' },
    });
    const c = cluster;
    const before = await login(c.url);
    const admin = c.redis.admin();
    const actions = async () => (await admin.xrange('keyfleet:audit', '-', '+')).map(([, f]) => `${f[f.indexOf('actor') + 1]}:${f[f.indexOf('action') + 1]}`);
    try {
      await waitUntil(async () => (await actions()).filter((a) => a === 'schedule:activate').length >= 3, { what: 'a scheduled rotation of every purpose' });
      // Still valid: minted before the rotation, not yet expired.
      expect((await request(`${c.url}/me`, { headers: { cookie: before.authCookie } })).status).toBe(200);
      await waitUntil(async () => (await actions()).some((a) => a.endsWith(':delete')), { timeoutMs: 30_000, what: 'a retired key to be deleted' });
      const ring = JSON.parse((await admin.get('keyfleet:ring'))!);
      for (const key of ring.keys) if (key.state === 'retired') expect(key.deleteAfter).toBeGreaterThan(Date.now() - 2_000);
    } finally {
      admin.disconnect();
    }
  });

  it('two nodes forced to primary keep one consistent ring and fail no request', async () => {
    cluster = await Cluster.start({ nodes: 2, env: { NODE_ROLE: 'primary' } });
    const c = cluster;
    const traffic = startTraffic(c.url, { workers: 3 });
    // Both ask for rotations at once, through both nodes' CLIs.
    const results = await Promise.all([
      c.cli(['rotate', '--purpose', 'all'], 'node-1'),
      c.cli(['rotate', '--purpose', 'all'], 'node-2'),
      c.cli(['rotate', '--purpose', 'sign'], 'node-1'),
    ]);
    await waitUntil(() => traffic.report.sent >= 300, { what: 'traffic' });
    const report = await traffic.stop();
    for (const result of results) expect(result.exitCode, result.output).toBe(0);
    expect(report.failures).toEqual([]);
    expect(report.nodes.size).toBe(2);

    const status = JSON.parse((await c.cli(['--json', 'status'])).stdout) as { keys: { purpose: string; state: string }[] };
    for (const purpose of ['sign', 'encrypt', 'cookie']) {
      expect(status.keys.filter((key) => key.purpose === purpose && key.state === 'active'), purpose).toHaveLength(1);
      // Nothing left half-rotated; sign keeps exactly one next key staged (pre-published).
      expect(status.keys.filter((key) => key.purpose === purpose && key.state === 'staged'), purpose).toHaveLength(purpose === 'sign' ? 1 : 0);
    }
    // Every change was written by the lease holder alone.
    const admin = c.redis.admin();
    try {
      const writers = new Set((await admin.xrange('keyfleet:audit', '-', '+')).map(([, f]) => f[f.indexOf('actor') + 1]));
      const holder = await leaseHolder(c);
      for (const writer of writers) expect([holder, expect.stringMatching(/^cli@/)]).toContainEqual(writer);
    } finally {
      admin.disconnect();
    }
  });
});
