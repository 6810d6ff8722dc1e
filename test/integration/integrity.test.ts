import type { StartedTestContainer } from 'testcontainers';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { generateKey } from '../../app/src/keyring/generate.js';
import { Cluster, hostCli, waitUntil } from '../support/cluster.js';
import { mappedPort, pauseContainer, unpauseContainer } from '../support/docker.js';
import { login, request } from '../support/http.js';

// Issue 11: someone with the nodes' Redis password (Redis is a shared service; the password
// sits in every REDIS_URL) but not the master key edits the stored ring. Each attack must be
// refused by a running node, by a node that starts while the edit is in Redis, and by
// `keyfleet status`. The attacks edit JSON fields, so the same test runs against keyfleet 0.1
// (format 1), where the first two were reproduced: a fresh node accepted a token for `admin`
// signed by the attacker, and a revoked key verified again.
//
// The primary writes a good ring back within a tick when it sees a tampered one, which would
// hide what the other nodes do; so it is paused while the attacks run, and node-2 (a
// secondary) is the running node under test.

interface Ring {
  format: number;
  version: number;
  keys: { kid: string; purpose: string; state: string; publicJwk?: unknown; [field: string]: unknown }[];
  [field: string]: unknown;
}

describe('a Redis writer without the master key', () => {
  let cluster: Cluster;
  let admin: Redis;
  let primary: StartedTestContainer;
  let beforeRevoke: string;
  let good: string;
  let revokedToken: string;
  let revokedKid: string;
  let forged: { token: string; kid: string; jwk: Record<string, unknown> };
  let cliEnv: Record<string, string>;

  const node2 = () => cluster.nodes.get('node-2')!;
  const nodeUrl = async (container: StartedTestContainer) => `http://${container.getHost()}:${await mappedPort(container, 3000)}`;
  const health = async (container: StartedTestContainer) => (await request(`${await nodeUrl(container)}/healthz`)).body;

  /** Writes `raw` as the ring and announces it, as an attacker can (PUBLISH is in the nodes' ACL too). */
  async function plant(raw: string) {
    const version = (JSON.parse(raw) as Ring).version;
    await admin.set('keyfleet:ring', raw);
    await admin.set('keyfleet:ring:version', String(version));
    await admin.publish('keyfleet:ring:changed', String(version));
  }

  /** Every way the attack could pay off, checked on the running node and through the balancer. */
  async function expectNothingAccepted(container: StartedTestContainer) {
    const url = await nodeUrl(container);
    const forgedReply = await request(`${url}/me`, { headers: { authorization: `Bearer ${forged.token}` } });
    expect(forgedReply.status, `forged token: ${JSON.stringify(forgedReply.body)}`).not.toBe(200);
    const revokedReply = await request(`${url}/me`, { headers: { authorization: `Bearer ${revokedToken}` } });
    expect(revokedReply.status, `revoked-key token: ${JSON.stringify(revokedReply.body)}`).not.toBe(200);
    const jwks = await request(`${url}/.well-known/jwks.json`);
    expect(JSON.stringify(jwks.body)).not.toContain(String(forged.jwk.x));
    if (jwks.status === 200) expect((jwks.body.keys as { kid: string }[]).map((key) => key.kid)).not.toContain(revokedKid);
  }

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 1 });
    primary = cluster.nodes.get('node-1')!;
    await cluster.addNode({ NODE_ROLE: 'secondary' });
    await cluster.waitForBalancer(2);
    admin = cluster.redis.admin();
    cliEnv = { REDIS_URL: cluster.redis.hostUrl, KEYRING_MASTER_KEY: cluster.masterKey };

    // A token from a key that is then rotated out and revoked.
    revokedToken = (await login(cluster.url)).token;
    revokedKid = JSON.parse(Buffer.from(revokedToken.split('.')[0]!, 'base64url').toString()).kid;
    expect((await cluster.cli(['rotate', '--purpose', 'sign'])).exitCode).toBe(0);
    beforeRevoke = (await admin.get('keyfleet:ring'))!;
    const revoked = await cluster.cli(['revoke', revokedKid]);
    expect(revoked.exitCode, revoked.stdout + revoked.stderr).toBe(0);
    good = (await admin.get('keyfleet:ring'))!;

    // The attacker's own key pair, and a token for `admin` under the active sign key's kid.
    const active = (JSON.parse(good) as Ring).keys.find((key) => key.purpose === 'sign' && key.state === 'active')!;
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: active.kid, alg: 'ES256', use: 'sig' };
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: active.kid, typ: 'JWT' })
      .setSubject('admin')
      .setIssuer('keyfleet')
      .setAudience('keyfleet')
      .setIssuedAt()
      .setExpirationTime('10m')
      .setJti('forged')
      .sign(privateKey);
    forged = { token, kid: active.kid, jwk };
    expect((await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);

    await pauseContainer(primary);
  });

  afterAll(async () => {
    if (primary) await unpauseContainer(primary).catch(() => undefined);
    admin?.disconnect();
    await cluster?.stop();
  });

  const edit = (raw: string, change: (ring: Ring) => void) => {
    const ring = JSON.parse(raw) as Ring;
    change(ring);
    return JSON.stringify(ring);
  };

  const attacks: [string, () => Promise<string> | string, string][] = [
    [
      'replace the public key of the active sign key with the attacker\'s',
      () => edit(good, (ring) => {
        ring.keys.find((key) => key.kid === forged.kid)!.publicJwk = forged.jwk;
        ring.version += 1;
      }),
      'ERR_RING_FORMAT',
    ],
    [
      'plant the attacker\'s public key in an unauthenticated format-1 ring (a downgrade)',
      () => edit(good, (ring) => {
        ring.format = 1;
        delete ring.mac;
        delete ring.ringId;
        ring.keys.find((key) => key.kid === forged.kid)!.publicJwk = forged.jwk;
        ring.version += 1;
      }),
      'ERR_RING_DOWNGRADE',
    ],
    [
      'flip the revoked key back to retired',
      () => edit(good, (ring) => {
        const key = ring.keys.find((candidate) => candidate.kid === revokedKid)!;
        key.state = 'retired';
        delete key.revokedAt;
        ring.version += 1;
      }),
      'ERR_RING_INTEGRITY',
    ],
    ['drop the revoked key', () => edit(good, (ring) => ((ring.keys = ring.keys.filter((key) => key.kid !== revokedKid)), (ring.version += 1))), 'ERR_RING_INTEGRITY'],
    ['roll the version back', () => edit(good, (ring) => (ring.version -= 1)), 'ERR_RING_INTEGRITY'],
    ['replay the ring from before the revocation (a valid MAC, an older version)', () => beforeRevoke, 'ERR_RING_ROLLBACK'],
    [
      'splice in a key from another ring under the same master key',
      async () => {
        const foreign = await generateKey('sign', Date.now(), Buffer.from(cluster.masterKey, 'base64'));
        return edit(good, (ring) => {
          ring.keys.push({ ...foreign, state: 'active', activatedAt: Date.now() });
          ring.version += 1;
        });
      },
      'ERR_RING_INTEGRITY',
    ],
  ];

  it.each(attacks)('%s: refused by a running node, a starting node and keyfleet status', async (_name, make, code) => {
    await plant(await make());

    // A node that starts now has no good ring to fall back on: it must not trust this one. It
    // stays not ready and says why. (Against keyfleet 0.1 this is where the attacks succeed.)
    const fresh = await cluster.addNode({ NODE_ROLE: 'secondary' }, 'listening');
    try {
      await expectNothingAccepted(fresh.container);
      expect(await health(fresh.container)).toMatchObject({ status: 'starting', ring: null, alarm: code });
    } finally {
      await cluster.stopNode(fresh.id);
    }

    // The running node keeps its last good ring and turns its health detail to an alarm.
    await waitUntil(async () => (await health(node2())).alarm === code, { what: `node-2 to raise ${code}`, timeoutMs: 10_000 });
    expect((await health(node2())).status).toBe('ok');
    await expectNothingAccepted(node2());

    // The operator's view: the CLI authenticates the ring before it shows anything.
    const status = await hostCli(['status'], cliEnv);
    expect(status.exitCode).toBe(1);
    expect(status.stderr).toContain(code);

    // Every refusal is in the audit stream, with its code and no key material.
    const audit = await admin.xrange('keyfleet:audit', '-', '+');
    const alarms = audit.map(([, fields]) => fields.join(' ')).filter((line) => line.includes('integrity-alarm') && line.includes(code));
    expect(alarms.length).toBeGreaterThan(0);
    expect(alarms.join('\n')).not.toMatch(/v1\.[A-Za-z0-9_-]{20}/);

    await plant(good);
    await waitUntil(async () => (await health(node2())).alarm === undefined, { what: 'the alarm to clear', timeoutMs: 10_000 });
  });

  it('the primary, once running again, writes its good ring back over a tampered one', async () => {
    await plant(edit(good, (ring) => ((ring.keys = ring.keys.filter((key) => key.kid !== revokedKid)), (ring.version += 1))));
    await waitUntil(async () => (await health(node2())).alarm === 'ERR_RING_INTEGRITY', { what: 'node-2 to raise the alarm' });
    await unpauseContainer(primary);
    await waitUntil(async () => (await health(node2())).alarm === undefined, { what: 'the primary to write the good ring back', timeoutMs: 20_000 });
    const audit = await admin.xrange('keyfleet:audit', '-', '+');
    expect(audit.some(([, fields]) => fields.includes('integrity-restore'))).toBe(true);
    expect((await hostCli(['status'], cliEnv)).exitCode).toBe(0);
    await expectNothingAccepted(node2());
  });

  it('the primary skips what is not a command on the operators\' list, and keeps serving commands', async () => {
    await admin.rpush('keyfleet:commands', 'not json', '{"action":"rotate"}', JSON.stringify({ action: 'revoke', id: 'x', kid: 42, actor: 'evil' }));
    const rotated = await cluster.cli(['rotate', '--purpose', 'encrypt'], 'node-1');
    expect(rotated.exitCode, rotated.output).toBe(0);
    expect(await admin.llen('keyfleet:commands')).toBe(0);
  });
});
