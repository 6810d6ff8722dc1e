import { randomBytes, scryptSync } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import session from 'express-session';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePasswordHash, type PasswordHash } from '../../../app/src/auth/password.js';
import { LoginThrottle, TooManyAttempts, type LoginTicket } from '../../../app/src/auth/throttle.js';
import { createApp, type AppDeps } from '../support/app.js';
import { readPrefixed, writePrefixed } from '../../../app/src/http/cookiePrefix.js';
import { loadedHolder, silentLog } from '../support/ring.js';

// Issue 11 on the request path, in process: the Origin check against the configured
// origins, `__Host-` cookies, and the login route asking the throttle before any scrypt.

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((server) => {
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeAllConnections();
      return closed;
    }),
  );
});

const salt = randomBytes(16);
const demoHash = parsePasswordHash(`scrypt.1024.8.1.${salt.toString('base64url')}.${scryptSync('demo-password', salt, 32, { N: 1024, r: 8, p: 1 }).toString('base64url')}`)!;

/** A Map that counts lookups: authenticate() looks the name up once, right before scrypt. */
class CountingUsers extends Map<string, PasswordHash> {
  lookups = 0;
  override get(name: string) {
    this.lookups++;
    return super.get(name);
  }
}

async function start(extra: Partial<AppDeps> = {}) {
  const { holder, ring } = await loadedHolder(Date.now());
  const users = new CountingUsers([['demo', demoHash]]);
  const app = createApp({
    nodeId: 'node-1',
    tokenTtlMs: 15 * 60_000,
    sessionTtlMs: 3_600_000,
    clockSkewMs: 30_000,
    // As behind the balancer: the scheme comes from X-Forwarded-Proto.
    trustProxy: 'loopback',
    holder,
    users,
    session: session({ name: 'sid', secret: [...ring.cookieSecrets], store: new session.MemoryStore(), resave: false, saveUninitialized: false, cookie: { secure: 'auto' } }),
    clock: { now: () => Date.now() },
    log: silentLog,
    isDraining: () => false,
    ...extra,
  });
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { base, users };
}

const post = (base: string, path: string, headers: Record<string, string>, body?: unknown) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });

describe('the Origin check compares scheme and host', () => {
  it('by default with the request\'s own origin: the same host over another scheme is refused', async () => {
    const { base } = await start();
    const host = new URL(base).host;
    expect((await post(base, '/logout', { origin: `http://${host}` })).status).toBe(200);
    // A page on http:// (which a network attacker can serve) posting to the app over https.
    const downgraded = await post(base, '/logout', { origin: `http://${host}`, 'x-forwarded-proto': 'https' });
    expect(downgraded.status).toBe(403);
    expect((await downgraded.json()).code).toBe('ERR_CROSS_SITE');
    expect((await post(base, '/logout', { origin: `https://${host}`, 'x-forwarded-proto': 'https' })).status).toBe(200);
    expect((await post(base, '/logout', { origin: `https://${host}` })).status).toBe(403);
  });

  it('with PUBLIC_ORIGINS, only those: a rebound DNS name whose Origin matches its own Host is refused', async () => {
    const { base } = await start({ publicOrigins: ['https://keyfleet.example.com'] });
    const proto = { 'x-forwarded-proto': 'https' };
    expect((await post(base, '/logout', { ...proto, origin: 'https://keyfleet.example.com', host: 'keyfleet.example.com' })).status).toBe(200);
    // DNS rebinding: attacker.example now resolves to the app; Origin and Host agree.
    expect((await post(base, '/logout', { ...proto, origin: 'https://attacker.example', host: 'attacker.example' })).status).toBe(403);
    expect((await post(base, '/logout', { ...proto, origin: 'http://keyfleet.example.com', host: 'keyfleet.example.com' })).status).toBe(403);
    expect((await post(base, '/logout', { ...proto, origin: 'https://keyfleet.example.com:8443', host: 'keyfleet.example.com:8443' })).status).toBe(403);
    // Non-browser clients send no Origin and are not affected.
    expect((await post(base, '/logout', {})).status).toBe(200);
  });
});

describe('COOKIE_HOST_PREFIX', () => {
  it('rewrites names both ways, and only ours', () => {
    const ours = new Set(['auth', 'sid']);
    expect(readPrefixed('theme=dark; __Host-auth=A; sid=planted; __Host-sid=S', ours)).toBe('theme=dark; auth=A; sid=S');
    expect(readPrefixed('auth=planted', ours)).toBe('');
    expect(writePrefixed('auth=A; Path=/; HttpOnly; SameSite=Lax', ours)).toBe('__Host-auth=A; Path=/; HttpOnly; SameSite=Lax; Secure');
    expect(writePrefixed('sid=S; Path=/; Secure; HttpOnly', ours)).toBe('__Host-sid=S; Path=/; Secure; HttpOnly');
    expect(writePrefixed('theme=dark; Path=/', ours)).toBe('theme=dark; Path=/');
  });

  it('login sets __Host-auth and __Host-sid (Secure), which authenticate; a planted unprefixed cookie does not', async () => {
    const { base } = await start({ cookieHostPrefix: true });
    const proto = { 'x-forwarded-proto': 'https' };
    const login = await post(base, '/login', proto, { username: 'demo', password: 'demo-password' });
    expect(login.status).toBe(200);
    const cookies = login.headers.getSetCookie();
    expect(cookies.map((c) => c.split('=')[0]).sort()).toEqual(['__Host-auth', '__Host-sid']);
    for (const cookie of cookies) expect(cookie).toMatch(/; Secure/i);
    for (const cookie of cookies) expect(cookie).toMatch(/; Path=\//);
    for (const cookie of cookies) expect(cookie).not.toMatch(/Domain=/i);
    const jar = Object.fromEntries(cookies.map((c) => c.split(';')[0]!.split(/=(.*)/s).slice(0, 2) as [string, string]));
    const me = (cookie: string) => fetch(`${base}/me`, { headers: { ...proto, cookie }, signal: AbortSignal.timeout(10_000) }).then(async (r) => ({ status: r.status, body: await r.json() }));
    expect(await me(`__Host-auth=${jar['__Host-auth']}`)).toMatchObject({ status: 200, body: { user: 'demo', via: 'cookie' } });
    expect(await me(`__Host-sid=${jar['__Host-sid']}`)).toMatchObject({ status: 200, body: { user: 'demo', via: 'session' } });
    // The same values under the old names were set by someone else: not read at all.
    expect(await me(`auth=${jar['__Host-auth']}`)).toMatchObject({ status: 401, body: { code: 'ERR_NO_CREDENTIALS' } });
    // Logout clears the prefixed names.
    const logout = await post(base, '/logout', { ...proto, cookie: `__Host-sid=${jar['__Host-sid']}` });
    expect(logout.headers.getSetCookie().map((c) => c.split('=')[0]).sort()).toEqual(['__Host-auth', '__Host-sid']);
  });

  it('is off by default: the contract names auth and sid', async () => {
    const { base } = await start();
    const login = await post(base, '/login', {}, { username: 'demo', password: 'demo-password' });
    expect(login.headers.getSetCookie().map((c) => c.split('=')[0]).sort()).toEqual(['auth', 'sid']);
  });
});

/** A throttle whose answers the test decides, recording what the route asked. */
class ScriptedThrottle extends LoginThrottle {
  admitted: string[] = [];
  settled: [outcome: string, ticket: LoginTicket | undefined][] = [];
  private next = 0;
  constructor(private readonly refuse: boolean) {
    super({ status: 'ready' } as unknown as Redis);
  }
  override async admit(username: string): Promise<LoginTicket | undefined> {
    this.admitted.push(username);
    if (this.refuse) throw new TooManyAttempts(7, 'account');
    return { id: `t${++this.next}`, keys: ['p', 'u', 'a', 'pp', 'pu', 'pa'] };
  }
  override async failed(ticket: LoginTicket | undefined): Promise<void> {
    this.settled.push(['failed', ticket]);
  }
  override async succeeded(ticket: LoginTicket | undefined): Promise<void> {
    this.settled.push(['succeeded', ticket]);
  }
}

describe('POST /login asks the throttle first', () => {
  it('over the limit: 429 with Retry-After, and the password is never looked at (no scrypt)', async () => {
    const throttle = new ScriptedThrottle(true);
    const { base, users } = await start({ throttle });
    const replies = await Promise.all(Array.from({ length: 50 }, () => post(base, '/login', {}, { username: 'demo', password: 'demo-password' })));
    expect(replies.map((r) => r.status)).toEqual(Array(50).fill(429));
    expect(replies[0]!.headers.get('retry-after')).toBe('7');
    expect(await replies[0]!.json()).toEqual({ error: expect.any(String), code: 'ERR_TOO_MANY_ATTEMPTS' });
    expect(throttle.admitted).toHaveLength(50);
    expect(users.lookups).toBe(0);
  });

  it('admitted: a wrong password settles its ticket as failed, a right one as succeeded', async () => {
    const throttle = new ScriptedThrottle(false);
    const { base } = await start({ throttle });
    expect((await post(base, '/login', {}, { username: 'demo', password: 'wrong' })).status).toBe(401);
    expect(throttle.settled.map(([outcome, ticket]) => [outcome, ticket?.id])).toEqual([['failed', 't1']]);
    expect((await post(base, '/login', {}, { username: 'demo', password: 'demo-password' })).status).toBe(200);
    expect(throttle.settled.map(([outcome, ticket]) => [outcome, ticket?.id])).toEqual([['failed', 't1'], ['succeeded', 't2']]);
  });
});
