import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type RequestHandler } from 'express';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { parseCookie } from 'cookie';
import { z } from 'zod';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_CLAIMS_BYTES } from '../../../app/src/auth/appClaims.js';
import { createKit } from '../../../app/src/http/kit.js';
import { caught, loadedHolder, silentLog, T0 } from '../support/ring.js';
import { KIT_DEFAULTS } from '../support/app.js';

// The request side of the library (http/kit.ts) as an app uses it: its own login route calls
// login() with the app's claims, its routes are guarded by requireUser()/authenticate(), and
// the claims come back typed from whichever credential the request carried. No Redis: a ring
// held in memory, sessions in a Map.

function fakeSessions() {
  const records = new Map<string, Record<string, unknown>>();
  let next = 0;
  const handler: RequestHandler = (req, res, done) => {
    const sid = parseCookie(req.headers.cookie ?? '').sid;
    const session = Object.assign({ ...(sid !== undefined ? records.get(sid) : undefined) }, {
      regenerate(cb: (error?: unknown) => void) {
        cb();
      },
      save(cb: (error?: unknown) => void) {
        const id = `s${++next}`;
        const { regenerate: _r, save: _s, destroy: _d, ...data } = session as Record<string, unknown>;
        records.set(id, data);
        res.cookie('sid', id);
        cb();
      },
      destroy(cb: (error?: unknown) => void) {
        cb();
      },
    });
    (req as unknown as { session: unknown }).session = session;
    done();
  };
  return { records, handler };
}

const Role = z.object({ role: z.enum(['admin', 'member']), teams: z.array(z.string()).optional() });

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function start() {
  const ringState = await loadedHolder(T0);
  const sessions = fakeSessions();
  const kit = createKit<z.infer<typeof Role>>({
    ...KIT_DEFAULTS,
    holder: ringState.holder,
    session: sessions.handler,
    clock: ringState.clock,
    log: silentLog,
    isDraining: () => false,
    claims: Role,
    audiences: ['notes'],
  });
  const app = express();
  app.use(kit.routes());
  app.post('/login', express.json(), async (req, res) => {
    res.json(await kit.login(req, res, { user: req.body.user, claims: req.body.claims }));
  });
  app.get('/who', kit.requireUser(), (req, res) => {
    const principal = kit.principal(req)!;
    res.json({ user: principal.user, via: principal.via, role: principal.claims.role, claims: principal.claims, raw: req.principal?.claims });
  });
  app.get('/maybe', kit.authenticate(), (req, res) => res.json({ principal: req.principal ?? null }));
  app.use(kit.notFound());
  app.use(kit.errorHandler());
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${base}${path}`, init);
    return { status: response.status, body: (await response.json()) as any, cookies: response.headers.getSetCookie() };
  };
  const login = (user: string, claims?: unknown) =>
    call('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, claims }) });
  return { kit, call, login, sessions };
}

const cookieOf = (cookies: string[], name: string) => cookies.find((cookie) => cookie.startsWith(`${name}=`))?.split(';')[0];

describe('the library: login() and the claims it carries', () => {
  it('carries the claims in the token, the auth cookie and the session, and reads them back typed', async () => {
    const { call, login } = await start();
    const reply = await login('ann', { role: 'admin', teams: ['ops'] });
    expect(reply.status).toBe(200);
    expect(reply.body).toMatchObject({ tokenType: 'Bearer', expiresIn: 900, node: 'node-1', session: true });
    expect(decodeJwt(reply.body.token)).toMatchObject({ sub: 'ann', role: 'admin', teams: ['ops'] });
    const auth = cookieOf(reply.cookies, 'auth')!;
    expect(decodeProtectedHeader(auth.slice('auth='.length))).toMatchObject({ kf_claims: { role: 'admin', teams: ['ops'] } });
    const sid = cookieOf(reply.cookies, 'sid')!;

    const expected = { user: 'ann', role: 'admin', claims: { role: 'admin', teams: ['ops'] }, raw: { role: 'admin', teams: ['ops'] } };
    expect((await call('/who', { headers: { authorization: `Bearer ${reply.body.token}` } })).body).toEqual({ ...expected, via: 'token' });
    expect((await call('/who', { headers: { cookie: auth } })).body).toEqual({ ...expected, via: 'cookie' });
    expect((await call('/who', { headers: { cookie: sid } })).body).toEqual({ ...expected, via: 'session' });
  });

  it("writes only its own fields into the app's session: user, loginAt and the claims (no demo counters)", async () => {
    const { login, sessions } = await start();
    const reply = await login('ann', { role: 'member' });
    const sid = cookieOf(reply.cookies, 'sid')!.slice('sid='.length);
    expect(sessions.records.get(sid)).toEqual({ user: 'ann', loginAt: T0, claims: { role: 'member' } });
  });

  it('carries claims up to the limit in every credential (the token and cookie stay under their size limit)', async () => {
    const { call, login } = await start();
    const filler = 'x'.repeat(MAX_CLAIMS_BYTES - JSON.stringify({ role: 'member', teams: [''] }).length);
    const claims = { role: 'member', teams: [filler] };
    expect(Buffer.byteLength(JSON.stringify(claims))).toBe(MAX_CLAIMS_BYTES);
    const reply = await login('ann', claims);
    expect(reply.status).toBe(200);
    const auth = cookieOf(reply.cookies, 'auth')!;
    expect((await call('/who', { headers: { authorization: `Bearer ${reply.body.token}` } })).body.claims).toEqual(claims);
    expect((await call('/who', { headers: { cookie: auth } })).body.claims).toEqual(claims);
  });

  it('refuses reserved names, oversized claims and claims its schema refuses, with ERR_BAD_CLAIMS (a 500: the app is wrong)', async () => {
    const { kit } = await start();
    for (const claims of [{ sub: 'mallory' }, { kf_iat: 1 }, { exp: 1 }, { kid: 'x' }, { role: 'admin', teams: ['x'.repeat(MAX_CLAIMS_BYTES)] }, { role: 'root' }]) {
      const error = await caught(() => kit.mintToken('ann', { claims: claims as never }));
      expect(error.code).toBe('ERR_BAD_CLAIMS');
      expect(error.status).toBe(500);
    }
    const { login } = await start();
    const reply = await login('ann', { role: 'admin', iss: 'evil' });
    expect(reply).toMatchObject({ status: 500, body: { code: 'ERR_INTERNAL' } });
  });

  it('refuses a credential whose claims no longer fit the schema (401 ERR_CLAIMS_REJECTED)', async () => {
    const ringState = await loadedHolder(T0);
    const deps = {
      ...KIT_DEFAULTS,
      holder: ringState.holder,
      session: fakeSessions().handler,
      clock: ringState.clock,
      log: silentLog,
      isDraining: () => false,
    };
    // Minted by a deployment without the schema, read by one with it.
    const before = createKit(deps);
    const after = createKit<z.infer<typeof Role>>({ ...deps, claims: Role });
    const { token } = await before.mintToken('ann', { claims: { role: 'root' } });
    expect(await before.verifyToken(token)).toEqual({ user: 'ann', via: 'token', claims: { role: 'root' } });
    const refused = await caught(() => after.verifyToken(token));
    expect([refused.code, refused.status]).toEqual(['ERR_CLAIMS_REJECTED', 401]);
  });

  it('authenticate() leaves a request without credentials alone; requireUser() refuses it; a bad one is refused by both', async () => {
    const { call } = await start();
    expect(await call('/maybe')).toMatchObject({ status: 200, body: { principal: null } });
    expect(await call('/who')).toMatchObject({ status: 401, body: { code: 'ERR_NO_CREDENTIALS' } });
    expect(await call('/maybe', { headers: { authorization: 'Bearer nope' } })).toMatchObject({ status: 401, body: { code: 'ERR_TOKEN_MALFORMED' } });
    expect(await call('/maybe', { headers: { authorization: 'Basic x' } })).toMatchObject({ status: 401, body: { code: 'ERR_BAD_AUTHORIZATION' } });
  });

  it('verifyToken() reads a token as requireUser() does; checkAudience() refuses unknown audiences', async () => {
    const { kit } = await start();
    const { token } = await kit.mintToken('ann', { claims: { role: 'member' } });
    expect(await kit.verifyToken(token)).toEqual({ user: 'ann', via: 'token', claims: { role: 'member' } });
    expect(() => kit.checkAudience('notes')).not.toThrow();
    expect(() => kit.checkAudience(undefined)).not.toThrow();
    expect(() => kit.checkAudience('payroll')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_AUDIENCE', status: 400 }));
    const forNotes = await kit.mintToken('ann', { claims: { role: 'member' }, audience: 'notes' });
    expect((await caught(() => kit.verifyToken(forNotes.token))).code).toBe('ERR_TOKEN_CLAIMS');
  });

  it('mounts the kit routes: /healthz answers 200 with the ring, X-Node-Id on everything', async () => {
    const { call } = await start();
    const health = await call('/healthz');
    expect(health).toMatchObject({ status: 200, body: { status: 'ok', node: 'node-1', ring: { version: 1 } } });
    expect((await call('/nowhere')).body).toEqual({ error: 'not found', code: 'ERR_NOT_FOUND' });
  });
});
