import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { credentialHeaders, login, request } from '../support/http.js';
import { startTraffic } from '../support/traffic.js';

// Issue 3: rotation, revocation and failover, through the real balancer and the real CLI.

const kidOf = (token: string) => decodeProtectedHeader(token).kid;

interface StatusKey {
  kid: string;
  purpose: string;
  state: string;
}
async function status(cluster: Cluster, nodeId?: string) {
  const result = await cluster.cli(['--json', 'status'], nodeId);
  expect(result.exitCode, result.output).toBe(0);
  return JSON.parse(result.stdout) as { version: number; primary: string | null; keys: StatusKey[]; nodes: { id: string; ringVersion: number }[] };
}
const active = (keys: StatusKey[], purpose: string) => keys.filter((key) => key.purpose === purpose && key.state === 'active');

/** Every node answers 401 for these headers (each node reached at least once). */
async function rejectedEverywhere(cluster: Cluster, headers: Record<string, string>) {
  const nodes = new Set<string>();
  for (let i = 0; i < 3 * cluster.nodes.size; i++) {
    const reply = await request(`${cluster.url}/me`, { headers });
    expect(reply.status, `${reply.node}: ${JSON.stringify(reply.body)}`).toBe(401);
    nodes.add(reply.node!);
  }
  expect(nodes.size).toBe(cluster.nodes.size);
}

describe('key lifecycle on a running cluster', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, env: { HEARTBEAT_INTERVAL: '1s' } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('rotates every purpose under continuous traffic with zero failed requests', async () => {
    const before = await login(cluster.url);
    const initial = await status(cluster);
    const traffic = startTraffic(cluster.url);
    await waitUntil(() => traffic.report.sent >= 100, { what: '100 requests before rotating' });

    const started = Date.now();
    const rotation = await cluster.cli(['rotate', '--purpose', 'all']);
    const rotationMs = Date.now() - started;
    await waitUntil(() => traffic.report.sent >= 200 + 100, { what: 'traffic after rotating' });
    const report = await traffic.stop();

    expect(rotation.exitCode, rotation.output).toBe(0);
    expect(rotation.stdout).toMatch(/sign: 3\/3 nodes confirmed/);
    for (const purpose of ['sign', 'encrypt', 'cookie']) expect(rotation.stdout).toMatch(new RegExp(`${purpose}: rotated to ${purpose}-`));
    console.log(`[figures] rotate --purpose all with 3 nodes: ${rotationMs} ms wall (CLI exec included)\n${rotation.stdout}`);
    console.log(`[figures] traffic during rotation: ${report.sent} requests, ${report.failed} failed, nodes ${[...report.nodes].join(',')}`);
    expect(report.failures).toEqual([]);
    expect(report.failed).toBe(0);
    expect(report.nodes.size).toBe(3);

    const after = await status(cluster);
    for (const purpose of ['sign', 'encrypt', 'cookie']) {
      expect(active(after.keys, purpose)).toHaveLength(1);
      expect(active(after.keys, purpose)[0]!.kid).not.toBe(active(initial.keys, purpose)[0]!.kid);
      // The old key only verifies now.
      const previous = after.keys.find((key) => key.kid === active(initial.keys, purpose)[0]!.kid);
      expect(previous?.state).toBe('retired');
    }
    // Minted before the rotation: still good everywhere.
    for (const headers of (['token', 'cookie', 'session'] as const).map((kind) => credentialHeaders(kind, before))) {
      for (let i = 0; i < 6; i++) expect((await request(`${cluster.url}/me`, { headers })).status).toBe(200);
    }
    // Minted after: the new key id.
    const fresh = await login(cluster.url);
    expect(kidOf(fresh.token)).toBe(active(after.keys, 'sign')[0]!.kid);
    expect(kidOf(fresh.authCookie.slice('auth='.length))).toBe(active(after.keys, 'encrypt')[0]!.kid);
  });

  it('revokes a key on every node by the time the command returns', async () => {
    const victim = await login(cluster.url);
    const kid = kidOf(victim.token)!;
    // Verified on every node first, so each node has it in its verified-credential cache:
    // revocation must reach cached credentials too.
    const warmed = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const reply = await request(`${cluster.url}/me`, { headers: credentialHeaders('token', victim) });
      expect(reply.status).toBe(200);
      warmed.add(reply.node!);
    }
    expect(warmed.size).toBe(3);
    const started = Date.now();
    const revoked = await cluster.cli(['revoke', kid]);
    const elapsed = Date.now() - started;
    expect(revoked.exitCode, revoked.output).toBe(0);
    expect(revoked.stdout).toMatch(/loaded by all 3 nodes in \d+ ms/);
    console.log(`[figures] revoke: ${revoked.stdout.trim()} (${elapsed} ms wall, CLI exec included)`);
    await rejectedEverywhere(cluster, { authorization: `Bearer ${victim.token}` });
    // The revoked key was the active one: it was replaced at once, so logins go on.
    const next = await login(cluster.url);
    expect(kidOf(next.token)).not.toBe(kid);
    expect((await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${next.token}` } })).status).toBe(200);
    // The auth cookie of the same login used another key: unaffected.
    expect((await request(`${cluster.url}/me`, { headers: { cookie: victim.authCookie } })).status).toBe(200);
    const after = await status(cluster);
    expect(after.keys.find((key) => key.kid === kid)?.state).toBe('revoked');
    expect(active(after.keys, 'sign')).toHaveLength(1);
  });

  it('names a node that never confirms and leaves the new key staged', async () => {
    const [victimId, victim] = [...cluster.nodes.entries()].find(([id]) => id !== 'node-1')!;
    const client = victim.getId();
    const { getContainerRuntimeClient } = await import('testcontainers');
    const docker = (await getContainerRuntimeClient()).container.dockerode;
    await docker.getContainer(client).pause();
    try {
      // Its heartbeat (TTL 3 s) still says it is alive; it cannot load anything.
      const blocked = await cluster.cli(['rotate', '--purpose', 'encrypt', '--timeout', '1s'], 'node-1');
      expect(blocked.exitCode, blocked.output).toBe(3);
      expect(blocked.stdout).toContain(`encrypt: BLOCKED`);
      expect(blocked.stdout).toContain(victimId);
      const mid = await status(cluster, 'node-1');
      expect(mid.keys.filter((key) => key.purpose === 'encrypt' && key.state === 'staged')).toHaveLength(1);
    } finally {
      await docker.getContainer(client).unpause();
    }
    // Back in the ring: the same staged key is confirmed and activated.
    await waitUntil(async () => (await status(cluster, 'node-1')).nodes.length === 3, { what: 'the paused node to beat again' });
    const resumed = await cluster.cli(['rotate', '--purpose', 'encrypt'], 'node-1');
    expect(resumed.exitCode, resumed.output).toBe(0);
    const after = await status(cluster);
    expect(after.keys.filter((key) => key.purpose === 'encrypt' && key.state === 'staged')).toHaveLength(0);
    expect(active(after.keys, 'encrypt')).toHaveLength(1);
  });
});
