import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../support/cluster.js';
import { credentialHeaders, login, postLogin, probeAcrossNodes, request, type LoginResult } from '../support/http.js';

// Issue 2's acceptance: credentials minted on one node are accepted by every node, through
// the real balancer, and bad ones are refused everywhere with a 401 and a JSON code.

const ROUNDS = 120;

describe('a three-node cluster behind HAProxy', () => {
  let cluster: Cluster;
  let session: LoginResult;

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3 });
    session = await login(cluster.url);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  for (const via of ['token', 'cookie', 'session'] as const) {
    it(`accepts a ${via} minted on one node on every node (${ROUNDS} requests)`, async () => {
      const result = await probeAcrossNodes(cluster.url, via, session, ROUNDS);
      expect(result.rejected).toBe(0);
      expect(result.accepted).toBe(ROUNDS);
      expect(result.byNode.size).toBeGreaterThanOrEqual(3);
      expect([...result.byNode.keys()]).toContain(session.node);
    });
  }

  it('counts page views in the session on whichever node serves them', async () => {
    const before = await request(`${cluster.url}/me`, { headers: credentialHeaders('session', session) });
    const pages = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const page = await request(`${cluster.url}/`, { headers: credentialHeaders('session', session) });
      expect(page.status).toBe(200);
      expect(page.body).toMatch(new RegExp(`id="visits">${before.body.visits + i + 1}<`));
      pages.add(page.node!);
    }
    expect(pages.size).toBe(3);
    const after = await request(`${cluster.url}/me`, { headers: credentialHeaders('session', session) });
    expect(after.body.visits).toBe(before.body.visits + 6);
    expect(after.body.nodesSeen).toHaveLength(3);
  });

  it('answers every route with X-Node-Id, including errors', async () => {
    for (const path of ['/healthz', '/', '/.well-known/jwks.json', '/me', '/nope']) {
      const reply = await request(`${cluster.url}${path}`);
      expect(reply.node, path).toMatch(/^node-\d+$/);
    }
  });

  it('refuses wrong credentials with 401', async () => {
    const reply = await postLogin(cluster.url, { username: 'demo', password: 'wrong' });
    expect(reply.status).toBe(401);
    expect(reply.body.code).toBe('ERR_BAD_CREDENTIALS');
  });

  it('refuses a malformed login body with 400, never 5xx', async () => {
    for (const body of ['{', '[]', '{"username":1}', 'null', '"x"', JSON.stringify({ username: 'demo' })]) {
      const reply = await postLogin(cluster.url, body);
      expect(reply.status, body).toBe(400);
      expect(reply.body.code, body).toMatch(/^ERR_/);
    }
  });

  describe('bad tokens and cookies get 401 on every node', () => {
    const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const forged = () => {
      const [header, payload, signature] = session.token.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
      const kid = JSON.parse(Buffer.from(header, 'base64url').toString()).kid;
      return {
        tampered: `${header}.${b64({ ...claims, sub: 'admin' })}.${signature}`,
        truncated: session.token.slice(0, -10),
        'bad signature': `${header}.${payload}.${signature.slice(0, -4)}AAAA`,
        'alg none': `${b64({ alg: 'none', typ: 'JWT', kid })}.${payload}.`,
        'alg HS256 with the public key': `${b64({ alg: 'HS256', typ: 'JWT', kid })}.${payload}.${signature}`,
        'unknown kid': `${b64({ alg: 'ES256', typ: 'JWT', kid: 'sign-nope' })}.${payload}.${signature}`,
        garbage: 'not-a-token',
        empty: '',
        huge: 'a'.repeat(5000),
      };
    };

    it('for bearer tokens', async () => {
      for (const [name, token] of Object.entries(forged())) {
        const nodes = new Set<string>();
        for (let i = 0; i < 6; i++) {
          const reply = await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${token}` } });
          expect(reply.status, name).toBe(401);
          expect(reply.body.code, name).toMatch(/^ERR_/);
          nodes.add(reply.node!);
        }
        expect(nodes.size, name).toBe(3);
      }
    });

    it('for auth and sid cookies', async () => {
      const authValue = session.authCookie.slice('auth='.length);
      const sidValue = session.sidCookie.slice('sid='.length);
      const cookies = {
        'tampered auth': `auth=${authValue.slice(0, 60)}A${authValue.slice(61)}`,
        'truncated auth': `auth=${authValue.slice(0, -8)}`,
        'garbage auth': 'auth=hello',
        'token as auth': `auth=${session.token}`,
        'tampered sid': `sid=${sidValue.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))}`,
        'unsigned sid': `sid=${decodeURIComponent(sidValue).slice(2).split('.')[0]}`,
        'garbage sid': 'sid=s%3Anope.nope',
        'malformed encoding': 'sid=%E0%A4%A',
      };
      for (const [name, cookie] of Object.entries(cookies)) {
        const nodes = new Set<string>();
        for (let i = 0; i < 6; i++) {
          const reply = await request(`${cluster.url}/me`, { headers: { cookie } });
          expect(reply.status, name).toBe(401);
          expect(reply.body.code, name).toMatch(/^ERR_/);
          nodes.add(reply.node!);
        }
        expect(nodes.size, name).toBe(3);
      }
    });
  });

  it('publishes a JWKS that verifies a live token with public keys only', async () => {
    const jwks = await request(`${cluster.url}/.well-known/jwks.json`);
    expect(jwks.status).toBe(200);
    for (const key of jwks.body.keys) expect(key).not.toHaveProperty('d');
    const { payload, protectedHeader } = await jwtVerify(session.token, createLocalJWKSet(jwks.body), {
      issuer: 'keyfleet',
      audience: 'keyfleet',
    });
    expect(payload.sub).toBe('demo');
    expect(protectedHeader.alg).toBe('ES256');
  });

  it('logs out everywhere: the session is gone on every node', async () => {
    const mine = await login(cluster.url);
    const out = await request(`${cluster.url}/logout`, { method: 'POST', headers: { cookie: mine.sidCookie } });
    expect(out.status).toBe(200);
    expect(out.headers.getSetCookie().join(';')).toMatch(/auth=;.*Expires=Thu, 01 Jan 1970/);
    const nodes = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const reply = await request(`${cluster.url}/me`, { headers: { cookie: mine.sidCookie } });
      expect(reply.status).toBe(401);
      nodes.add(reply.node!);
    }
    expect(nodes.size).toBe(3);
  });

  it('sets HttpOnly, SameSite=Lax cookies (not Secure over plain HTTP)', async () => {
    const response = await postLogin(cluster.url, { username: 'demo', password: 'demo-password' });
    const cookies = response.headers.getSetCookie();
    expect(cookies).toHaveLength(2);
    for (const cookie of cookies) {
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Lax/i);
      expect(cookie).not.toMatch(/Secure/);
    }
  });
});
