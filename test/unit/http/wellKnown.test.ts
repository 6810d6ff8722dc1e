import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { RequestHandler } from 'express';
import { decodeJwt } from 'jose';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configureIssuer } from '../../../app/src/auth/claims.js';
import { hashPassword, type PasswordHash } from '../../../app/src/auth/password.js';
import { parsePasswordHash } from '../../../app/src/auth/password.js';
import { jwksMaxAgeSeconds } from '../../../app/src/http/kit.js';
import { createApp, KIT_DEFAULTS } from '../support/app.js';
import { generateKey } from '../../../app/src/keyring/generate.js';
import { activeKey, revoke, stage } from '../../../app/src/keyring/lifecycle.js';
import { LIFETIMES, loadedHolder, silentLog, T0 } from '../support/ring.js';

// The routes other services configure themselves from: the JWKS (with the next signing key,
// its caching headers and conditional requests), discovery, and tokens for registered
// audiences. In process, a real ring, no Redis.

const servers: Server[] = [];
afterEach(async () => {
  configureIssuer();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

let demoHash: PasswordHash;
beforeAll(async () => {
  demoHash = parsePasswordHash(await hashPassword('demo-password'))!;
});

/** No session store: login goes on without one (session: false), as when Redis is down. */
const noSessions: RequestHandler = (req, _res, next) => {
  (req as unknown as { session: object }).session = {};
  next();
};

async function start(options: { jwksPrepublishMs?: number; publicIssuer?: string; audiences?: string[] } = {}) {
  const ringState = await loadedHolder(T0);
  const app = createApp({
    ...KIT_DEFAULTS,
    holder: ringState.holder,
    users: new Map([['demo', demoHash]]),
    session: noSessions,
    clock: ringState.clock,
    log: silentLog,
    isDraining: () => false,
    ...options,
  });
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(5_000) });
    const text = await response.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      // empty (304) or not JSON
    }
    return { status: response.status, headers: response.headers, body };
  };
  const login = (body: Record<string, unknown>) =>
    call('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { ...ringState, base, call, login };
}

describe('jwksMaxAgeSeconds', () => {
  it('is half the pre-publication window, at most 5 minutes', () => {
    expect(jwksMaxAgeSeconds(30 * 60_000)).toBe(300);
    expect(jwksMaxAgeSeconds(12 * 3_600_000)).toBe(300);
    expect(jwksMaxAgeSeconds(5_000)).toBe(2);
    expect(jwksMaxAgeSeconds(0)).toBe(0);
  });
});

describe('GET /.well-known/jwks.json', () => {
  it('lists the active and the next signing key, never a revoked one, with Cache-Control from the window', async () => {
    const { call, store, holder, doc, masterKey } = await start({ jwksPrepublishMs: 30 * 60_000 });
    const next = await generateKey('sign', T0, masterKey);
    store.doc = { ...stage(doc, next, T0), version: 2 };
    await holder.reload('test', { throwOnError: true });
    const reply = await call('/.well-known/jwks.json');
    expect(reply.status).toBe(200);
    expect(reply.headers.get('cache-control')).toBe('public, max-age=300');
    expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
    expect(reply.body.keys.map((key: { kid: string }) => key.kid)).toEqual([activeKey(doc, 'sign')!.kid, next.kid]);
    expect(JSON.stringify(reply.body)).not.toMatch(/"d"/);

    store.doc = { ...revoke(store.doc, next.kid, T0, LIFETIMES), version: 3 };
    await holder.reload('test', { throwOnError: true });
    expect((await call('/.well-known/jwks.json')).body.keys.map((key: { kid: string }) => key.kid)).toEqual([activeKey(doc, 'sign')!.kid]);
  });

  it('answers If-None-Match with 304 while the key set is unchanged, and changes its ETag with it', async () => {
    const { call, store, holder, doc, masterKey } = await start();
    const first = await call('/.well-known/jwks.json');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    expect(first.headers.get('cache-control')).toBe('public, max-age=0');

    const conditional = await call('/.well-known/jwks.json', { headers: { 'if-none-match': etag } });
    expect(conditional.status).toBe(304);
    expect(conditional.body).toBe('');
    expect(conditional.headers.get('etag')).toBe(etag);
    expect((await call('/.well-known/jwks.json', { headers: { 'if-none-match': `"x", ${etag}` } })).status).toBe(304);
    expect((await call('/.well-known/jwks.json', { headers: { 'if-none-match': '"other"' } })).status).toBe(200);

    // A new ring version without a new sign key (an encrypt rotation): same key set, same ETag.
    store.doc = { ...stage(doc, await generateKey('encrypt', T0, masterKey), T0), version: 2 };
    await holder.reload('test', { throwOnError: true });
    expect((await call('/.well-known/jwks.json', { headers: { 'if-none-match': etag } })).status).toBe(304);
    // A new signing key: a new ETag, and the old one gets the whole set.
    store.doc = { ...stage(store.doc, await generateKey('sign', T0, masterKey), T0), version: 3 };
    await holder.reload('test', { throwOnError: true });
    const changed = await call('/.well-known/jwks.json', { headers: { 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    expect(changed.body.keys).toHaveLength(2);
  });
});

describe('GET /.well-known/openid-configuration', () => {
  it('without PUBLIC_ISSUER: issuer keyfleet, the JWKS at the request origin, not shared by caches', async () => {
    const { call, base } = await start();
    const reply = await call('/.well-known/openid-configuration');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({
      issuer: 'keyfleet',
      jwks_uri: `${base}/.well-known/jwks.json`,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
      claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'],
    });
    expect(reply.headers.get('cache-control')).toBe('no-store');
  });

  it('with PUBLIC_ISSUER: that issuer in discovery and in the tokens, which keyfleet still accepts', async () => {
    configureIssuer('https://auth.example.com');
    const { call, login } = await start({ publicIssuer: 'https://auth.example.com' });
    const reply = await call('/.well-known/openid-configuration', { headers: { host: 'evil.example' } });
    expect(reply.body).toMatchObject({ issuer: 'https://auth.example.com', jwks_uri: 'https://auth.example.com/.well-known/jwks.json' });
    expect(reply.headers.get('cache-control')).toBe('public, max-age=300');
    const { token } = (await login({ username: 'demo', password: 'demo-password' })).body;
    expect(decodeJwt(token).iss).toBe('https://auth.example.com');
    expect((await call('/me', { headers: { authorization: `Bearer ${token}` } })).body).toMatchObject({ user: 'demo', via: 'token' });
  });
});

describe('POST /login with an audience', () => {
  it('mints a token for a registered resource server, which keyfleet itself refuses', async () => {
    const { call, login } = await start({ audiences: ['notes', 'reports'] });
    const reply = await login({ username: 'demo', password: 'demo-password', audience: 'notes' });
    expect(reply.status).toBe(200);
    expect(reply.body.audience).toBe('notes');
    expect(decodeJwt(reply.body.token)).toMatchObject({ aud: 'notes', iss: 'keyfleet', sub: 'demo' });
    const refused = await call('/me', { headers: { authorization: `Bearer ${reply.body.token}` } });
    expect(refused.status).toBe(401);
    expect(refused.body.code).toBe('ERR_TOKEN_CLAIMS');

    for (const body of [{ username: 'demo', password: 'demo-password' }, { username: 'demo', password: 'demo-password', audience: 'keyfleet' }]) {
      const own = await login(body);
      expect(decodeJwt(own.body.token).aud).toBe('keyfleet');
      expect((await call('/me', { headers: { authorization: `Bearer ${own.body.token}` } })).status).toBe(200);
    }
  });

  it('answers an unknown or malformed audience with 400 and a code, before checking the password', async () => {
    const { login } = await start({ audiences: ['notes'] });
    for (const password of ['demo-password', 'wrong']) {
      const reply = await login({ username: 'demo', password, audience: 'payroll' });
      expect(reply.status).toBe(400);
      expect(reply.body).toEqual({ error: expect.any(String), code: 'ERR_UNKNOWN_AUDIENCE' });
      expect(reply.body.error).not.toContain('payroll');
    }
    for (const audience of ['', 42, 'x'.repeat(129), ['notes']]) {
      const reply = await login({ username: 'demo', password: 'demo-password', audience });
      expect(reply.status).toBe(400);
      expect(reply.body.code).toBe('ERR_BAD_LOGIN_BODY');
    }
  });
});
