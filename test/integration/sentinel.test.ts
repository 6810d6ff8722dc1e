import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { killContainer } from '../support/docker.js';
import { credentialHeaders, login, request } from '../support/http.js';
import { startTraffic } from '../support/traffic.js';

// Issue 8: the key ring on Redis Sentinel (a master, two replicas, three Sentinels). Kill
// the master during a rotation and again after one: Sentinel promotes a replica, the nodes
// follow it, and no token or auth cookie request fails, and no key that was ever active is
// lost (asynchronous replication is covered by WAIT before activation and by self-heal).

interface Status {
  version: number;
  keys: { kid: string; purpose: string; state: string }[];
}

describe('the key ring on Redis Sentinel', () => {
  let cluster: Cluster;
  const everActive = new Set<string>();

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, sentinel: true, env: { HEARTBEAT_INTERVAL: '500ms', LEASE_TTL: '3s' } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  const status = async () => {
    for (const id of cluster.nodes.keys()) {
      const result = await cluster.cli(['--json', 'status'], id);
      if (result.exitCode === 0) {
        const parsed = JSON.parse(result.stdout) as Status;
        for (const key of parsed.keys) if (key.state === 'active') everActive.add(key.kid);
        return parsed;
      }
    }
    throw new Error('no node could read the ring');
  };
  const masterAddress = async () => {
    const sentinel = cluster.sentinels!.containers.get('sentinel-1')!;
    const result = await sentinel.exec(['redis-cli', '-p', '26379', 'sentinel', 'get-master-addr-by-name', 'keyfleet']);
    return result.stdout.trim().split('\n')[0]!;
  };
  const containerOf = async (address: string) => {
    const all = [['redis', cluster.redis.container] as const, ...cluster.sentinels!.containers.entries()];
    for (const [name, container] of all) {
      if (name === address || container.getIpAddress(cluster.backNetwork.getName()) === address) return { name, container };
    }
    throw new Error(`no container at ${address}`);
  };
  /** Kills the current master and waits until the Sentinels name another one. */
  const failover = async () => {
    const before = await masterAddress();
    const { name, container } = await containerOf(before);
    const killedAt = Date.now();
    await killContainer(container);
    let after = before;
    await waitUntil(async () => {
      after = await masterAddress().catch(() => before);
      return after !== before;
    // Usually 2-3 s; but when the Sentinels split their votes for a leader, Sentinel tries
    // again only after twice the failover timeout (10 s here): allow for one such retry.
    }, { timeoutMs: 50_000, intervalMs: 200, what: 'Sentinel to promote a replica' });
    return { killed: name, promoted: after, ms: Date.now() - killedAt };
  };

  it('loses no request and no key when the master dies during and after a rotation', async () => {
    const before = await login(cluster.url);
    const initial = await status();
    expect(initial.keys.filter((key) => key.state === 'active')).toHaveLength(3);
    const traffic = startTraffic(cluster.url, { workers: 4, kinds: ['token', 'cookie'], credentials: before });
    await waitUntil(() => traffic.report.sent >= 100, { what: 'traffic before the first failover' });

    // 1. During a rotation: the command may die with the master; the ring must not.
    const rotation = cluster.cli(['rotate', '--purpose', 'all', '--timeout', '10s']);
    const first = await failover();
    const duringResult = await rotation;
    console.log(`[figures] sentinel failover during rotation: ${first.killed} killed, ${first.promoted} promoted in ${first.ms} ms; rotate exited ${duringResult.exitCode}`);

    // The nodes follow the new master: a rotation now completes.
    let rotated = { exitCode: -1, output: '' } as Awaited<ReturnType<Cluster['cli']>>;
    await waitUntil(async () => {
      rotated = await cluster.cli(['rotate', '--purpose', 'all', '--timeout', '10s']);
      return rotated.exitCode === 0;
    }, { timeoutMs: 60_000, intervalMs: 1_000, what: `a rotation on the new master (last: ${rotated.output})` });
    const middle = await status();
    const fresh = await login(cluster.url);
    everActive.add(decodeProtectedHeader(fresh.token).kid!);

    // 2. After the rotation: kill the new master too.
    const second = await failover();
    console.log(`[figures] sentinel failover after rotation: ${second.killed} killed, ${second.promoted} promoted in ${second.ms} ms`);
    await waitUntil(async () => (await cluster.cli(['--json', 'status'])).exitCode === 0, { timeoutMs: 30_000, what: 'the ring readable again' });
    await waitUntil(() => traffic.report.sent >= 2_000, { timeoutMs: 60_000, what: 'traffic after the failovers' });
    const report = await traffic.stop();
    console.log(`[figures] sentinel: ${report.sent} token and auth cookie requests across two failovers, ${report.failed} failed`);
    expect(report.failures).toEqual([]);

    // Every key that was ever active is still in the ring.
    const final = await status();
    const kids = new Set(final.keys.map((key) => key.kid));
    for (const kid of everActive) expect(kids.has(kid), kid).toBe(true);
    expect(final.version).toBeGreaterThanOrEqual(middle.version);
    for (const purpose of ['sign', 'encrypt', 'cookie']) {
      expect(final.keys.filter((key) => key.purpose === purpose && key.state === 'active'), purpose).toHaveLength(1);
    }
    // Tokens from before both failovers and from between them still work on every node.
    for (const who of [before, fresh]) {
      for (let i = 0; i < 6; i++) {
        expect((await request(`${cluster.url}/me`, { headers: credentialHeaders('token', who) })).status).toBe(200);
        expect((await request(`${cluster.url}/me`, { headers: credentialHeaders('cookie', who) })).status).toBe(200);
      }
    }
    // Sessions recover: a new login gets a session that works on every node.
    let afterwards: Awaited<ReturnType<typeof login>> | undefined;
    await waitUntil(async () => {
      afterwards = await login(cluster.url).catch(() => undefined);
      return afterwards !== undefined;
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'a login with a session' });
    // Every answer is 200; and every node answers it itself once its own Redis connection is
    // back (until then the balancer takes its 503 to another node).
    const nodes = new Set<string>();
    await waitUntil(async () => {
      const reply = await request(`${cluster.url}/me`, { headers: credentialHeaders('session', afterwards!) });
      expect(reply.status).toBe(200);
      nodes.add(reply.node!);
      return nodes.size === 3;
    }, { timeoutMs: 30_000, intervalMs: 100, what: 'every node to answer the session itself' });
  }, 240_000);
});
