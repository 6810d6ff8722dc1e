import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unwrapMaterial } from '../../app/src/keyring/wrap.js';
import type { RingDocument } from '../../app/src/keyring/types.js';
import { Cluster } from '../support/cluster.js';
import { containerLogs } from '../support/docker.js';
import { login, type LoginResult, postLogin, request } from '../support/http.js';

// Issue 4, hostile input through the real balancer, and what must never reach a log.

describe('hostile clients, through HAProxy', () => {
  let cluster: Cluster;
  const minted: LoginResult[] = [];

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, env: { LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOG_LEVEL: 'debug' } });
    minted.push(await login(cluster.url));
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses oversized headers and bodies with a 4xx', async () => {
    const big = await request(`${cluster.url}/me`, { headers: { 'x-filler': 'a'.repeat(20_000) } });
    expect([400, 431]).toContain(big.status);
    const huge = await request(`${cluster.url}/me`, { headers: { 'x-filler': 'a'.repeat(40_000) } });
    expect(huge.status).toBe(400); // HAProxy: beyond its buffer, never reaches a node
    const body = await postLogin(cluster.url, { username: 'demo', password: 'x'.repeat(100_000) });
    expect(body.status).toBe(413);
    expect(body.body.code).toBe('ERR_BODY_TOO_LARGE');
  });

  it('cuts off a slow client that never finishes its request head', async () => {
    const { hostname, port } = new URL(cluster.url);
    const started = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => socket.write('GET /me HTTP/1.1\r\nHost: x\r\nX-Slow: '));
      let text = '';
      socket.on('data', (chunk) => (text += chunk));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.setTimeout(20_000, () => socket.destroy(new Error('not cut off within 20 s')));
    });
    const elapsed = Date.now() - started;
    expect(answer).toMatch(/^HTTP\/1\.[01] 408/);
    expect(elapsed).toBeLessThan(15_000);
    console.log(`[figures] slow client cut off after ${elapsed} ms (HAProxy timeout http-request 5s)`);
  });

  it('throttles failed logins per account across nodes: 429 with Retry-After', async () => {
    const attempt = (password: string) => postLogin(cluster.url, { username: 'mallory', password });
    const nodes = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const reply = await attempt(`guess-${i}`);
      expect(reply.status).toBe(401);
      nodes.add(reply.node!);
    }
    expect(nodes.size).toBe(3); // the count is shared: each failure was on another node
    const blocked = await attempt('guess-3');
    expect(blocked.status).toBe(429);
    expect(blocked.body.code).toBe('ERR_TOO_MANY_ATTEMPTS');
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    // Other accounts are not affected.
    minted.push(await login(cluster.url));
  });

  it('limits the nodes\' Redis user to its own keys and to safe commands', async () => {
    const redis = new Redis(cluster.redis.hostUrl, { maxRetriesPerRequest: 1 });
    try {
      await expect(redis.get('keyfleet:ring')).resolves.toEqual(expect.any(String));
      await expect(redis.get('other:key')).rejects.toThrow(/NOPERM/);
      await expect(redis.set('other:key', '1')).rejects.toThrow(/NOPERM/);
      for (const command of [['flushall'], ['keys', 'keyfleet:*'], ['config', 'get', 'requirepass'], ['debug', 'sleep', '0'], ['acl', 'list']]) {
        await expect(redis.call(command[0]!, ...command.slice(1)), command.join(' ')).rejects.toThrow(/NOPERM|not allowed/);
      }
      // Issue 11: nothing the nodes do not use. Scripts by EVAL only; no key dumped out.
      for (const command of [
        ['script', 'flush'], ['script', 'kill'], ['script', 'load', 'return 1'], ['function', 'flush'], ['function', 'list'],
        ['function', 'load', '#!lua name=x\nredis.register_function("f", function() return 1 end)'], ['fcall', 'f', '0'],
        ['dump', 'keyfleet:ring'], ['move', 'keyfleet:ring', '1'], ['copy', 'keyfleet:ring', 'keyfleet:ring-copy'],
        ['randomkey'], ['object', 'encoding', 'keyfleet:ring'], ['memory', 'usage', 'keyfleet:ring'],
      ]) {
        await expect(redis.call(command[0]!, ...command.slice(1)), command.join(' ')).rejects.toThrow(/NOPERM/);
      }
      // What the nodes do use still works: EVAL (lease, ring writes, throttle), SCAN (heartbeats), WAIT.
      await expect(redis.eval("return redis.call('GET', KEYS[1]) ~= false", 1, 'keyfleet:ring')).resolves.toBe(1);
      const nodes: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', 'keyfleet:node:*', 'COUNT', 100);
        nodes.push(...batch);
        cursor = next;
      } while (cursor !== '0');
      expect(nodes.length).toBeGreaterThan(0);
      await expect(redis.call('wait', '0', '0')).resolves.toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('never writes a secret to any container log', async () => {
    // Exercise every path that handles secrets: logins good and bad, every credential kind,
    // bad tokens, a rotation and a revocation.
    const who = minted[0]!;
    for (let i = 0; i < 6; i++) {
      await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${who.token}` } });
      await request(`${cluster.url}/me`, { headers: { cookie: `${who.authCookie}; ${who.sidCookie}` } });
      await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${who.token.slice(0, -3)}xyz` } });
    }
    await request(`${cluster.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"demo","password":"demo-passwort"}' });
    expect((await cluster.cli(['rotate', '--purpose', 'all'])).exitCode).toBe(0);
    const admin = cluster.redis.admin();
    let ring: RingDocument;
    try {
      ring = JSON.parse((await admin.get('keyfleet:ring'))!);
    } finally {
      admin.disconnect();
    }
    const retired = ring.keys.find((key) => key.state === 'retired' && key.purpose === 'sign')!;
    expect((await cluster.cli(['revoke', retired.kid])).exitCode).toBe(0);

    const masterKey = Buffer.from(cluster.masterKey, 'base64');
    const secrets: Record<string, string> = {
      'master key (base64)': cluster.masterKey,
      'master key (hex)': masterKey.toString('hex'),
      'demo password': 'demo-password',
      'wrong password tried': 'demo-passwort',
      'redis password': cluster.redis.password,
      'redis admin password': cluster.redis.adminPassword,
    };
    for (const [index, login] of minted.entries()) {
      secrets[`token ${index}`] = login.token;
      secrets[`token ${index} signature`] = login.token.split('.')[2]!;
      secrets[`auth cookie ${index}`] = login.authCookie.slice('auth='.length);
      secrets[`sid ${index}`] = decodeURIComponent(login.sidCookie.slice('sid='.length)).slice(2).split('.')[0]!;
    }
    for (const key of ring.keys) {
      const plain = unwrapMaterial(masterKey, key.kid, key.purpose, key.material);
      if (key.purpose === 'sign') secrets[`${key.kid} d`] = JSON.parse(plain.toString('utf8')).d;
      else {
        secrets[`${key.kid} base64url`] = plain.toString('base64url');
        secrets[`${key.kid} base64`] = plain.toString('base64');
        secrets[`${key.kid} hex`] = plain.toString('hex');
      }
    }
    const logs: Record<string, string> = {};
    for (const [id, container] of cluster.nodes) logs[id] = await containerLogs(container);
    logs.redis = await containerLogs(cluster.redis.container);
    logs.lb = await containerLogs(cluster.lb);
    expect(Object.values(logs).join('').length).toBeGreaterThan(1000); // there are logs to search
    const leaks: string[] = [];
    for (const [where, text] of Object.entries(logs)) {
      for (const [what, secret] of Object.entries(secrets)) if (text.includes(secret)) leaks.push(`${what} in ${where}`);
    }
    expect(leaks).toEqual([]);
  });
});
