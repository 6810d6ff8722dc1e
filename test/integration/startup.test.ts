import { Network, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomMasterKey, runNodeToExit, startAppNode, startRedis, waitUntil, type StartedRedis, DEMO_USERS } from '../support/cluster.js';
import { postLogin, request } from '../support/http.js';

// How nodes start: who may create the ring, and what stops a node at once.

describe('node start-up', () => {
  let network: StartedNetwork;
  let redis: StartedRedis;
  let admin: Redis;
  const masterKey = randomMasterKey();
  const started: StartedTestContainer[] = [];

  beforeAll(async () => {
    network = await new Network().start();
    redis = await startRedis(network);
    admin = redis.admin();
  });
  afterAll(async () => {
    admin?.disconnect();
    await Promise.allSettled(started.map((container) => container.stop({ timeout: 0 })));
    await redis?.container.stop({ timeout: 0 });
    await network?.stop();
  });

  const url = (container: StartedTestContainer) => `http://${container.getHost()}:${container.getMappedPort(3000)}`;

  it('a secondary facing an empty ring generates nothing and stays not ready', async () => {
    const secondary = await startAppNode(network, {
      nodeId: 'secondary-1',
      redisUrl: redis.internalUrl,
      masterKey,
      env: { NODE_ROLE: 'secondary', HEARTBEAT_INTERVAL: '200ms', LEASE_TTL: '1s' },
      waitFor: 'listening',
    });
    started.push(secondary);
    // Watch it through several heartbeats (each a chance to misbehave): still no ring.
    const beats = new Set<number>();
    await waitUntil(async () => {
      const beat = await admin.get('keyfleet:node:secondary-1');
      if (beat) beats.add(JSON.parse(beat).at);
      return beats.size >= 5;
    }, { what: 'five heartbeats from the secondary' });
    expect(await admin.exists('keyfleet:ring', 'keyfleet:lease')).toBe(0);
    const health = await request(`${url(secondary)}/healthz`);
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'starting', node: 'secondary-1', ring: null });
    const loginReply = await postLogin(url(secondary), { username: 'demo', password: 'demo-password' });
    expect(loginReply.status).toBe(503);
    expect(loginReply.body.code).toBe('ERR_NOT_READY');
  });

  it('an auto node creates the ring and the waiting secondary loads it', async () => {
    const primary = await startAppNode(network, { nodeId: 'auto-1', redisUrl: redis.internalUrl, masterKey });
    started.push(primary);
    const secondary = started[0]!;
    await waitUntil(async () => (await request(`${url(secondary)}/healthz`)).status === 200, { what: 'the secondary to become ready' });
    const ring = JSON.parse((await admin.get('keyfleet:ring'))!);
    // One active key per purpose, and the next signing key, published ahead of its use.
    expect(ring.keys.map((key: { purpose: string; state: string }) => `${key.purpose}:${key.state}`).sort()).toEqual([
      'cookie:active',
      'encrypt:active',
      'sign:active',
      'sign:staged',
    ]);
    const audit = await admin.xrange('keyfleet:audit', '-', '+');
    expect(audit.map(([, fields]) => fields[fields.indexOf('actor') + 1])).toEqual(['auto-1']);
    expect(await admin.get('keyfleet:lease')).toMatch(/^auto-1\//);
  });

  it('keeps key material encrypted in Redis', async () => {
    const raw = (await admin.get('keyfleet:ring'))!;
    const ring = JSON.parse(raw);
    for (const key of ring.keys) {
      expect(key.material).toMatch(/^v1\.[A-Za-z0-9_-]+$/);
      if (key.publicJwk) expect(key.publicJwk).not.toHaveProperty('d');
    }
    expect(raw).not.toMatch(/"d":/);
  });

  it('a node given the wrong master key refuses to start and says why', async () => {
    const { exitCode, logs } = await runNodeToExit(network, {
      NODE_ID: 'wrong-key',
      REDIS_URL: redis.internalUrl,
      KEYRING_MASTER_KEY: randomMasterKey(),
      USERS: DEMO_USERS,
    });
    expect(exitCode).toBe(1);
    expect(logs).toMatch(/refusing to start: .*another master key.*KEYRING_MASTER_KEY/);
    // It wrote nothing: the ring is as the primary left it.
    expect(await admin.xlen('keyfleet:audit')).toBe(1);
  });

  it('bad configuration stops the node with a message naming each variable', async () => {
    const { exitCode, logs } = await runNodeToExit(network, {
      REDIS_URL: 'http://nope',
      KEYRING_MASTER_KEY: 'c2hvcnQ=',
      PORT: 'eighty',
      TOKEN_TTL: 'soon',
      NODE_ROLE: 'boss',
    });
    expect(exitCode).toBe(1);
    for (const variable of ['REDIS_URL', 'KEYRING_MASTER_KEY', 'PORT', 'TOKEN_TTL', 'NODE_ROLE']) {
      expect(logs).toMatch(new RegExp(`^\\s*${variable}: `, 'm'));
    }
    expect(logs).not.toMatch(/at .*\.js:\d+/); // no stack trace
    expect(logs).not.toContain('c2hvcnQ='); // nor the secret it was given
  });
});
