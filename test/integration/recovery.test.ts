import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, hostCli, randomMasterKey, waitUntil } from '../support/cluster.js';
import { credentialHeaders, login, request, type LoginResult } from '../support/http.js';

// Issue 3: losing Redis, backup and restore, and rotating the master key. The CLI runs
// from the repository here (what `npx keyfleet` runs), as an operator's laptop would.

async function acceptedEverywhere(cluster: Cluster, who: LoginResult, kinds: ('token' | 'cookie' | 'session')[] = ['token', 'cookie']) {
  for (const kind of kinds) {
    const headers = credentialHeaders(kind, who);
    const nodes = new Set<string>();
    for (let i = 0; i < 3 * cluster.nodes.size; i++) {
      const reply = await request(`${cluster.url}/me`, { headers });
      expect(reply.status, `${kind} on ${reply.node}: ${JSON.stringify(reply.body)}`).toBe(200);
      nodes.add(reply.node!);
    }
    expect(nodes.size).toBe(cluster.nodes.size);
  }
}

describe('recovering the key ring', () => {
  let cluster: Cluster;
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 2 });
    dir = mkdtempSync(join(tmpdir(), 'keyfleet-backup-'));
    env = { REDIS_URL: cluster.redis.hostUrl, KEYRING_MASTER_KEY: cluster.masterKey };
  });
  afterAll(async () => {
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a flushed Redis gets the ring back from the primary\'s memory: nobody is logged out', async () => {
    const before = await login(cluster.url);
    const ringBefore = JSON.parse((await hostCli(['--json', 'status'], env)).stdout);
    const admin = cluster.redis.admin();
    try {
      await admin.flushall();
      await waitUntil(async () => (await admin.exists('keyfleet:ring')) === 1, { what: 'the primary to restore the ring' });
      const audit = await admin.xrange('keyfleet:audit', '-', '+');
      expect(audit.map(([, f]) => f[f.indexOf('action') + 1])).toEqual(['restore-from-memory']);
    } finally {
      admin.disconnect();
    }
    const ringAfter = JSON.parse((await hostCli(['--json', 'status'], env)).stdout);
    expect(ringAfter.keys.map((k: { kid: string }) => k.kid).sort()).toEqual(ringBefore.keys.map((k: { kid: string }) => k.kid).sort());
    expect(ringAfter.version).toBeGreaterThan(ringBefore.version);
    await acceptedEverywhere(cluster, before);
  });

  it('backup, lose Redis and every node, restore: every token minted before still verifies', async () => {
    const before = await login(cluster.url);
    const file = join(dir, 'ring.json');
    const backup = await hostCli(['backup', '--out', file], env);
    expect(backup.exitCode, backup.stderr).toBe(0);
    const saved = readFileSync(file, 'utf8');
    expect(saved).not.toMatch(/"d":/); // still encrypted: no private key in clear

    for (const id of [...cluster.nodes.keys()]) await cluster.stopNode(id);
    const admin = cluster.redis.admin();
    try {
      await admin.flushall();
    } finally {
      admin.disconnect();
    }
    const restored = await hostCli(['restore', file], env);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(restored.stdout).toMatch(/restored ring v\d+: \d+ keys/);

    await Promise.all([cluster.addNode(), cluster.addNode()]);
    await cluster.waitForBalancer(2);
    await acceptedEverywhere(cluster, before);
  });

  it('backup, revoke, restore: the revoked key stays revoked on every node, and no key is lost', async () => {
    const who = await login(cluster.url);
    const kid = JSON.parse(Buffer.from(who.token.split('.')[0]!, 'base64url').toString()).kid as string;
    const file = join(dir, 'before-revoke.json');
    expect((await hostCli(['backup', '--out', file], env)).exitCode).toBe(0);

    const rotated = await hostCli(['rotate', '--purpose', 'sign'], env);
    expect(rotated.exitCode, rotated.stdout + rotated.stderr).toBe(0);
    const revoked = await hostCli(['revoke', kid], env);
    expect(revoked.exitCode, revoked.stdout + revoked.stderr).toBe(0);
    const newKid = (JSON.parse((await hostCli(['--json', 'status'], env)).stdout).keys as { kid: string; purpose: string; state: string }[]).find(
      (key) => key.purpose === 'sign' && key.state === 'active',
    )!.kid;

    const restored = await hostCli(['--json', 'restore', file], env);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ revoked: [kid] });

    const status = JSON.parse((await hostCli(['--json', 'status'], env)).stdout) as { version: number; keys: { kid: string; state: string }[]; nodes: { ringVersion: number }[] };
    expect(status.keys.find((key) => key.kid === kid)!.state).toBe('revoked');
    expect(status.keys.find((key) => key.kid === newKid)!.state).toBe('active');
    await waitUntil(async () => {
      const nodes = JSON.parse((await hostCli(['--json', 'status'], env)).stdout).nodes as { ringVersion: number }[];
      return nodes.every((node) => node.ringVersion === status.version);
    }, { what: 'every node to load the restored ring' });
    for (let i = 0; i < 3 * cluster.nodes.size; i++) {
      const reply = await request(`${cluster.url}/me`, { headers: credentialHeaders('token', who) });
      expect(reply.status, `revoked-key token on ${reply.node}`).toBe(401);
    }
    await acceptedEverywhere(cluster, await login(cluster.url));
  });

  it('rewraps the ring under a new master key; nodes restarted with it serve old tokens', async () => {
    const before = await login(cluster.url);
    const oldKey = cluster.masterKey;
    const newKey = randomMasterKey();
    const wrong = await hostCli(['rewrap'], { ...env, KEYRING_MASTER_KEY: randomMasterKey(), KEYRING_NEW_MASTER_KEY: newKey });
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/ERR_MASTER_KEY_MISMATCH/);

    const rewrap = await hostCli(['rewrap'], { ...env, KEYRING_MASTER_KEY: oldKey, KEYRING_NEW_MASTER_KEY: newKey });
    expect(rewrap.exitCode, rewrap.stderr).toBe(0);
    // Nodes still on the old key keep serving from memory meanwhile.
    await acceptedEverywhere(cluster, before);

    const old = [...cluster.nodes.keys()];
    await cluster.addNode({}, 'ready', newKey);
    await cluster.addNode({}, 'ready', newKey);
    for (const id of old) await cluster.stopNode(id);
    await cluster.waitForBalancer(2);
    await acceptedEverywhere(cluster, before);
    const rotate = await hostCli(['rotate', '--purpose', 'sign'], env);
    expect(rotate.exitCode, rotate.stdout + rotate.stderr).toBe(0);
  });
});
