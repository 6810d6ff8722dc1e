import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { connectNetwork, disconnect } from '../support/docker.js';
import { login, request, type LoginResult } from '../support/http.js';
import { startTraffic } from '../support/traffic.js';

// Issue 16: a node must never answer 401 to a credential only because its own ring may be
// behind. Two ways a node can be behind, each measured through the balancer with valid
// credentials in flight:
// - cut off from Redis but not from the balancer: a rotation goes ahead without it (its
//   heartbeat expired), and it is asked about tokens signed with the new key;
// - joining: the balancer reaches a server it has just found through DNS before that server
//   has passed a health check.

/** HAProxy's count of requests it retried on another server (backend `app`, column wretr). */
async function balancerRetries(cluster: Cluster): Promise<number> {
  const csv = await fetch(`${cluster.statsUrl}/;csv`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.text());
  const header = csv.split('\n')[0]!.replace(/^# /, '').split(',');
  const row = csv.split('\n').find((line) => line.startsWith('app,BACKEND,'))!.split(',');
  return Number(row[header.indexOf('wretr')]);
}

/**
 * A login that lands on a node that cannot store sessions (cut off, or just reconnected) gets
 * a token and an auth cookie but no session, and no sid for it: log in until one has all three.
 */
async function loginWithSession(url: string): Promise<LoginResult> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const who = await login(url).catch(() => undefined);
    if (who) return who;
  }
  throw new Error('no login with a session in 10 attempts');
}

describe('a node cut off from Redis while a rotation goes ahead without it', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, env: { HEARTBEAT_INTERVAL: '500ms', LEASE_TTL: '3s' } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses no valid credential: what it cannot vouch for goes to another node', async () => {
    const c = cluster;
    const status = JSON.parse((await c.cli(['--json', 'status'])).stdout) as { primary: string };
    const victimId = [...c.nodes.keys()].find((id) => id !== status.primary)!;
    const victim = c.nodes.get(victimId)!;
    const before = await login(c.url);

    await disconnect(victim, c.backNetwork.getName());
    try {
      // The rotation waits for the victim until its heartbeat expires, then goes ahead.
      const rotated = await c.cli(['rotate', '--purpose', 'all'], status.primary);
      expect(rotated.exitCode, rotated.output).toBe(0);
      expect(rotated.stdout).toMatch(/2\/2 nodes confirmed/);

      const fresh = await loginWithSession(c.url);
      const retriesBefore = await balancerRetries(c);
      const traffic = startTraffic(c.url, { workers: 4, maxMs: 60_000, credentials: fresh, kinds: ['token', 'cookie', 'session'] });
      await waitUntil(() => traffic.report.sent >= 1_500, { timeoutMs: 60_000, what: '1,500 requests with fresh credentials' });
      const report = await traffic.stop();
      const retried = (await balancerRetries(c)) - retriesBefore;

      // Old credentials are still served by every node, the cut-off one included.
      const served = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const reply = await request(`${c.url}/me`, { headers: { authorization: `Bearer ${before.token}` } });
        expect(reply.status).toBe(200);
        served.add(reply.node!);
      }
      expect(served).toContain(victimId);

      console.log(
        `[figures] node cut from Redis, rotation without it: ${report.sent} requests with fresh credentials (${JSON.stringify(report.byKind)}), ${report.failed} failed; the balancer retried ${retried} on another node`,
      );
      expect(report.failures).toEqual([]);
      expect(report.sent).toBeGreaterThan(100);
      expect(retried).toBeGreaterThan(0); // the victim was asked, and passed the request on
    } finally {
      await connectNetwork(victim, c.backNetwork.getName(), [victimId]);
    }
    // Reconnected, it serves the new key itself again.
    const fresh = await loginWithSession(c.url);
    await waitUntil(
      async () => {
        for (let i = 0; i < 6; i++) {
          const reply = await request(`${c.url}/me`, { headers: { authorization: `Bearer ${fresh.token}` } });
          if (reply.node === victimId && reply.status === 200) return true;
        }
        return false;
      },
      { timeoutMs: 20_000, what: 'the reconnected node to accept new-key tokens itself' },
    );
  });
});

describe('nodes joining under traffic', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('3 -> 6 nodes, each reachable by the balancer from its first moment: no credential refused', async () => {
    const who = await login(cluster.url);
    const traffic = startTraffic(cluster.url, { workers: 4, maxMs: 60_000, credentials: who, kinds: ['token', 'cookie'] });
    // 'nothing': the new node joins the balancer's network as soon as its process starts,
    // before its ring is loaded and before any health check (what DNS discovery allows).
    for (let i = 0; i < 3; i++) await cluster.addNode({}, 'nothing');
    await cluster.waitForBalancer(6);
    const nodesSeen = new Set<string>();
    await waitUntil(
      () => {
        for (const node of traffic.report.nodes) nodesSeen.add(node);
        return nodesSeen.size === 6;
      },
      { timeoutMs: 20_000, what: 'traffic to reach all six nodes' },
    );
    const report = await traffic.stop();
    console.log(`[figures] 3 -> 6 nodes under traffic: ${report.sent} requests, ${report.failed} failed`);
    expect(report.failures).toEqual([]);
  });
});
