import { createPrivateKey, createPublicKey } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../app/src/keyring/generate.js';
import { masterKeyId, unwrapMaterial } from '../../app/src/keyring/wrap.js';
import { Cluster, hostCli } from '../support/cluster.js';
import { request } from '../support/http.js';

// keyfleet 0.1 stored the ring as format 1: no MAC, public keys beside the material. An
// upgraded cluster finds such a ring in Redis; the primary upgrades it once to format 2 and
// nothing minted before the upgrade stops working. The format-1 document is written here as
// 0.1 wrote it (same material format, same fields), then the current nodes start on it.

describe('upgrading a format-1 ring', () => {
  let cluster: Cluster;
  let token: string;
  const now = Date.now();

  beforeAll(async () => {
    cluster = await Cluster.start({
      nodes: 2,
      beforeNodes: async (redis, masterKeyText) => {
        const masterKey = Buffer.from(masterKeyText, 'base64');
        const keys = [];
        for (const purpose of ['sign', 'encrypt', 'cookie'] as const) {
          const key = await generateKey(purpose, now - 60_000, masterKey);
          const stored: Record<string, unknown> = { ...key, state: 'active', activatedAt: now - 60_000 };
          if (purpose === 'sign') {
            const privateJwk = JSON.parse(unwrapMaterial(masterKey, key.kid, 'sign', key.material).toString('utf8')) as JWK;
            const publicJwk = createPublicKey(createPrivateKey({ key: privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' })).export({ format: 'jwk' });
            stored.publicJwk = { ...publicJwk, kid: key.kid, alg: 'ES256', use: 'sig' };
            // A token minted by a 0.1 node before the upgrade.
            token = await new SignJWT({})
              .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
              .setSubject('demo')
              .setIssuer('keyfleet')
              .setAudience('keyfleet')
              .setIssuedAt()
              .setExpirationTime('10m')
              .setJti('before-upgrade')
              .sign(await importJWK(privateJwk, 'ES256'));
          }
          keys.push(stored);
        }
        const v1 = { format: 1, version: 4, masterKeyId: masterKeyId(masterKey), updatedAt: now - 60_000, keys };
        const admin = redis.admin();
        try {
          await admin.set('keyfleet:ring', JSON.stringify(v1));
          await admin.set('keyfleet:ring:version', '4');
        } finally {
          admin.disconnect();
        }
      },
    });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('is upgraded once by the primary to an authenticated format-2 ring, and tokens minted before keep working on every node', async () => {
    const admin = cluster.redis.admin();
    try {
      const ring = JSON.parse((await admin.get('keyfleet:ring'))!);
      expect(ring.format).toBe(2);
      expect(ring.mac).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(ring.ringId).not.toBe('legacy');
      expect(JSON.stringify(ring)).not.toContain('publicJwk');
      const audit = await admin.xrange('keyfleet:audit', '-', '+');
      const actions = audit.map(([, fields]) => fields[fields.indexOf('action') + 1]);
      expect(actions.filter((action) => action === 'migrate')).toHaveLength(1);
      expect(actions).not.toContain('create'); // the keys of 0.1 were kept, not replaced
    } finally {
      admin.disconnect();
    }
    const nodes = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const reply = await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${token}` } });
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
      nodes.add(reply.node!);
    }
    expect(nodes.size).toBe(2);
    const status = await hostCli(['--json', 'status'], { REDIS_URL: cluster.redis.hostUrl, KEYRING_MASTER_KEY: cluster.masterKey });
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ format: 2 });
  });

  it('a restarted primary does not migrate again', async () => {
    await cluster.stopNode('node-1');
    await cluster.addNode();
    await cluster.waitForBalancer(2);
    const admin = cluster.redis.admin();
    try {
      const audit = await admin.xrange('keyfleet:audit', '-', '+');
      expect(audit.filter(([, fields]) => fields.includes('migrate'))).toHaveLength(1);
    } finally {
      admin.disconnect();
    }
    expect((await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });
});
