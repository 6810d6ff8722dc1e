import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { RequestHandler } from 'express';
import { parseCookie } from 'cookie';
import { afterEach, describe, expect, it } from 'vitest';
import { sealAuthCookie } from '../../../app/src/auth/authCookie.js';
import type { PasswordHash } from '../../../app/src/auth/password.js';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { createApp, KIT_DEFAULTS } from '../support/app.js';
import type { DashboardMode, DashboardSource } from '../../../app/src/http/dashboard.js';
import { unavailable } from '../../../app/src/lib/errors.js';
import { loadedHolder, silentLog, T0 } from '../support/ring.js';

// The HTTP side of the page, /me and the dashboard, in process: a real ring and real
// credentials, a stand-in session store that counts how often it is asked, no Redis.

interface SessionRecord {
  user?: string;
  visits?: number;
  nodesSeen?: string[];
}

/** A session middleware over a Map, keyed by the raw `sid` value; counts its calls. */
function fakeSessions() {
  const records = new Map<string, SessionRecord>();
  const state = { calls: 0, failing: false };
  const handler: RequestHandler = (req, _res, next) => {
    state.calls++;
    if (state.failing) return next(unavailable('ERR_SESSION_STORE_UNAVAILABLE', 'the session store is unavailable'));
    const sid = parseCookie(req.headers.cookie ?? '').sid;
    (req as unknown as { session: SessionRecord }).session = (sid !== undefined && records.get(sid)) || {};
    next();
  };
  return { records, state, handler };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function start(options: { dashboard?: DashboardMode; dashboardToken?: string; operators?: string[]; source?: Partial<DashboardSource> } = {}) {
  const ringState = await loadedHolder(T0);
  const sessions = fakeSessions();
  const source: DashboardSource = {
    nodes: async () => [{ id: 'node-1', role: 'auto', primary: true, ringVersion: 1, startedAt: T0 - 1000, at: T0, draining: false }],
    primary: async () => 'node-1',
    ring: async () => ringState.doc,
    audit: async () => [{ id: '1-0', at: T0, version: 1, actor: 'node-1', action: 'create' }],
    ...options.source,
  };
  const app = createApp({
    ...KIT_DEFAULTS,
    holder: ringState.holder,
    users: new Map([['demo', {} as PasswordHash], ['alice', {} as PasswordHash]]),
    session: sessions.handler,
    clock: ringState.clock,
    log: silentLog,
    isDraining: () => false,
    ...(options.dashboard ? { dashboard: { mode: options.dashboard, token: options.dashboardToken, operators: new Set(options.operators ?? ['demo']), source, heartbeatIntervalMs: 1_000 } } : {}),
  });
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${base}${path}`, { headers });
    const text = await response.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      // HTML
    }
    return { status: response.status, headers: response.headers, body, text };
  };
  const token = (await mintAccessToken(ringState.ring, { user: 'demo', ttlMs: 15 * 60_000, now: T0 })).token;
  const auth = `auth=${await sealAuthCookie(ringState.ring, { user: 'demo', ttlMs: 3_600_000, now: T0 })}`;
  const aliceToken = (await mintAccessToken(ringState.ring, { user: 'alice', ttlMs: 15 * 60_000, now: T0 })).token;
  return { get, sessions, token, auth, aliceToken, doc: ringState.doc };
}

describe('GET /me', () => {
  it('never asks the session store for a bearer token or an auth cookie alone', async () => {
    const { get, sessions, token, auth } = await start();
    expect((await get('/me', { authorization: `Bearer ${token}` })).body).toEqual({ user: 'demo', via: 'token', node: 'node-1' });
    expect((await get('/me', { authorization: `Bearer ${token}`, cookie: 'sid=s1' })).body).toEqual({ user: 'demo', via: 'token', node: 'node-1' });
    expect((await get('/me', { cookie: auth })).body).toEqual({ user: 'demo', via: 'cookie', node: 'node-1' });
    expect(sessions.state.calls).toBe(0);
  });

  it('answers a browser sending its auth cookie and sid by the cookie alone, without the store', async () => {
    const { get, sessions, auth } = await start();
    sessions.records.set('s1', { user: 'demo', visits: 0, nodesSeen: ['node-3'] });
    expect((await get('/me', { cookie: `${auth}; sid=s1` })).body).toEqual({ user: 'demo', via: 'cookie', node: 'node-1' });
    expect(sessions.state.calls).toBe(0);
  });

  it('counts page views in the session a browser sends with its auth cookie, still via cookie', async () => {
    const { get, sessions, auth } = await start();
    sessions.records.set('s1', { user: 'demo', visits: 0, nodesSeen: ['node-3'] });
    const first = await get('/', { cookie: `${auth}; sid=s1` });
    const second = await get('/', { cookie: `sid=s1; ${auth}` });
    expect(first.text).toMatch(/id="visits">1</);
    expect(second.text).toMatch(/id="visits">2</);
    expect(second.text).toMatch(/id="via" data-via="cookie"/);
    expect(sessions.records.get('s1')).toMatchObject({ visits: 2, nodesSeen: ['node-3', 'node-1'] });
  });

  it('leaves a session that belongs to someone else alone', async () => {
    const { get, sessions, auth } = await start();
    sessions.records.set('s2', { user: 'mallory', visits: 5 });
    await get('/', { cookie: `${auth}; sid=s2` });
    expect(sessions.records.get('s2')!.visits).toBe(5);
  });

  it('answers by the auth cookie when the session store is down, only without the counter', async () => {
    const { get, sessions, auth } = await start();
    sessions.state.failing = true;
    const reply = await get('/me', { cookie: `${auth}; sid=s1` });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ user: 'demo', via: 'cookie', node: 'node-1' });
    // The sid alone still needs the store: 503, as before.
    expect((await get('/me', { cookie: 'sid=s1' })).status).toBe(503);
  });

  it('reads sid-only sessions on /me (one store read, no count) and counts them on the page', async () => {
    const { get, sessions } = await start();
    sessions.records.set('s3', { user: 'demo', visits: 2, nodesSeen: ['node-1'] });
    expect((await get('/me', { cookie: 'sid=s3' })).body).toEqual({ user: 'demo', via: 'session', node: 'node-1', visits: 2, nodesSeen: ['node-1'] });
    expect(sessions.state.calls).toBe(1);
    expect((await get('/', { cookie: 'sid=s3' })).text).toMatch(/id="visits">3</);
  });
});

describe('GET / (the page)', () => {
  it('offers the login form, prefilled with the demo account, under a nonce CSP', async () => {
    const { get, sessions } = await start();
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('cache-control')).toBe('no-store');
    const nonce = /script-src 'nonce-([^']+)'/.exec(page.headers.get('content-security-policy') ?? '')?.[1];
    expect(nonce).toBeDefined();
    expect(page.text).toContain(`<script nonce="${nonce}">`);
    expect(page.text).toMatch(/id="node"[^>]*>node-1</);
    expect(page.text).toContain('id="login-form"');
    expect(page.text).toContain('value="demo"');
    expect(page.text).not.toContain('href="/dashboard"');
    expect(sessions.state.calls).toBe(0);
  });

  it('shows who you are, how, the visit count and the nodes seen, without secrets', async () => {
    const { get, sessions, auth, token } = await start({ dashboard: 'login' });
    sessions.records.set('s1', { user: 'demo', visits: 3, nodesSeen: ['node-2', 'node-3'] });
    const page = await get('/', { cookie: `${auth}; sid=s1` });
    expect(page.text).toMatch(/id="user">demo</);
    expect(page.text).toMatch(/id="via" data-via="cookie"/);
    expect(page.text).toMatch(/id="visits">4</);
    expect(page.text).toMatch(/<ul class="chips" id="nodes-seen"[^>]*><li[^>]*>node-2<\/li><li[^>]*>node-3<\/li><li[^>]*aria-current="true">node-1<\/li><\/ul>/);
    expect(page.text).toContain('href="/dashboard"');
    expect(page.text).not.toContain('id="login-form"');
    expect(page.text).not.toContain(auth.slice(5, 60));
    expect(page.text).not.toContain(token.slice(0, 30));
  });

  it('turns a refused credential into a notice and the login form, never an error', async () => {
    const { get } = await start();
    const page = await get('/', { cookie: 'auth=eyJhbGciOiJkaXIifQ.x.y.z.w' });
    expect(page.status).toBe(200);
    expect(page.text).toContain('id="notice"');
    expect(page.text).toMatch(/<code>ERR_COOKIE_[A-Z_]+<\/code>/);
    expect(page.text).toContain('id="login-form"');
  });
});

describe('the dashboard routes', () => {
  const html = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };

  it('do not exist when off (or not configured)', async () => {
    for (const app of [await start(), await start({ dashboard: 'off' })]) {
      for (const path of ['/dashboard', '/dashboard/data']) {
        const reply = await app.get(path, html);
        expect(reply.status, path).toBe(404);
        expect(reply.body).toEqual({ error: 'not found', code: 'ERR_NOT_FOUND' });
      }
    }
  });

  it('login: 401 with a code without a login; the page for a browser; the data with one', async () => {
    const { get, auth, token, doc } = await start({ dashboard: 'login' });
    const refused = await get('/dashboard/data');
    expect(refused.status).toBe(401);
    expect(refused.body).toEqual({ error: expect.any(String), code: 'ERR_DASHBOARD_LOGIN_REQUIRED' });
    expect((await get('/dashboard')).body.code).toBe('ERR_DASHBOARD_LOGIN_REQUIRED');
    const shell = await get('/dashboard', html);
    expect(shell.status).toBe(401);
    expect(shell.text).toContain('data-access="login"');
    expect((await get('/dashboard/data', { cookie: 'auth=garbage' })).status).toBe(401);

    for (const headers of [{ cookie: auth }, { authorization: `Bearer ${token}` }] as Record<string, string>[]) {
      const data = await get('/dashboard/data', headers);
      expect(data.status).toBe(200);
      expect(data.headers.get('cache-control')).toBe('no-store');
      expect(data.body).toMatchObject({ servedBy: 'node-1', redis: true, ring: { version: 1, source: 'redis' }, primary: 'node-1' });
      expect(data.body.purposes.map((p: { active: string }) => p.active)).toEqual(doc.keys.map((k) => k.kid));
      for (const key of doc.keys) expect(data.text).not.toContain(key.material);
      expect(data.text).not.toContain('material');
    }
    expect((await get('/dashboard', { ...html, cookie: auth })).status).toBe(200);
  });

  it('login: an account that is not in DASHBOARD_USERS gets a 403, whatever it presents', async () => {
    const { get, aliceToken, token } = await start({ dashboard: 'login', operators: ['demo'] });
    const refused = await get('/dashboard/data', { authorization: `Bearer ${aliceToken}` });
    expect(refused.status).toBe(403);
    expect(refused.body).toEqual({ error: expect.any(String), code: 'ERR_DASHBOARD_NOT_OPERATOR' });
    expect(refused.text).not.toContain('purposes');
    expect((await get('/dashboard', { ...html, authorization: `Bearer ${aliceToken}` })).status).toBe(403);
    expect((await get('/dashboard/data', { authorization: `Bearer ${token}` })).status).toBe(200);
    // No operators configured: nobody at all (fail closed).
    const none = await start({ dashboard: 'login', operators: [] });
    expect((await none.get('/dashboard/data', { authorization: `Bearer ${none.token}` })).status).toBe(403);
  });

  it('token: only with the dashboard token, and says how to authenticate', async () => {
    const secret = 'dashboard-token-0123456789-abcdefghij';
    const { get, token } = await start({ dashboard: 'token', dashboardToken: secret });
    const refused = await get('/dashboard/data', { authorization: `Bearer ${token}` });
    expect(refused.status).toBe(401);
    expect(refused.body.code).toBe('ERR_DASHBOARD_TOKEN_INVALID');
    expect(refused.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
    expect((await get('/dashboard/data')).body.code).toBe('ERR_DASHBOARD_TOKEN_REQUIRED');
    expect((await get('/dashboard/data', { authorization: `Bearer ${secret}` })).status).toBe(200);
    const shell = await get('/dashboard', html);
    expect(shell.status).toBe(401);
    expect(shell.text).toContain('id="token-form"');
    expect(shell.text).not.toContain(secret);
  });

  it('public: answers partial data, never a 5xx, when Redis fails', async () => {
    const fail = async () => {
      throw new Error('Connection is closed.');
    };
    const { get, doc } = await start({ dashboard: 'public', source: { nodes: fail, ring: fail, audit: fail, primary: fail } });
    const data = await get('/dashboard/data');
    expect(data.status).toBe(200);
    expect(data.body).toMatchObject({ redis: false, nodes: [], primary: null, ring: { version: doc.version, source: 'node' } });
    expect((await get('/dashboard', html)).status).toBe(200);
  });
});
