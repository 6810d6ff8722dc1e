import { randomBytes, scryptSync } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import session from 'express-session';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePasswordHash } from '../../../app/src/auth/password.js';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { sealAuthCookie } from '../../../app/src/auth/authCookie.js';
import { createApp } from '../support/app.js';
import { loadedHolder, silentLog, T0 } from '../support/ring.js';

// Hostile input on the request path, as property tests: thousands of random and mutated
// Authorization headers, cookies and login bodies against the real app, in process. Each
// must get a 4xx with a JSON error code (or, for a mutation that changed nothing that
// matters, a 200 for the right user): never a 5xx, a hang or an exception.

let server: Server;
let base: string;
let token: string;
let authCookie: string;
let sidCookie: string;

beforeAll(async () => {
  const { holder, ring } = await loadedHolder(Date.now());
  const salt = randomBytes(16);
  const hash = scryptSync('demo-password', salt, 32, { N: 1024, r: 8, p: 1 });
  const users = new Map([['demo', parsePasswordHash(`scrypt.1024.8.1.${salt.toString('base64url')}.${hash.toString('base64url')}`)!]]);
  const app = createApp({
    nodeId: 'node-1',
    tokenTtlMs: 15 * 60_000,
    sessionTtlMs: 3_600_000,
    clockSkewMs: 30_000,
    trustProxy: false,
    holder,
    users,
    session: session({ name: 'sid', secret: [...ring.cookieSecrets], store: new session.MemoryStore(), resave: false, saveUninitialized: false }),
    clock: { now: () => Date.now() },
    log: silentLog,
    isDraining: () => false,
  });
  server = app.listen(0);
  await new Promise((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  token = (await mintAccessToken(ring, { user: 'demo', ttlMs: 60_000, now: Date.now() })).token;
  authCookie = await sealAuthCookie(ring, { user: 'demo', ttlMs: 60_000, now: Date.now() });
  const login = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"demo","password":"demo-password"}' });
  expect(login.status).toBe(200);
  sidCookie = login.headers.getSetCookie().find((c) => c.startsWith('sid='))!.split(';')[0]!.slice(4);
  void T0;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
});

/** Sends one request; the answer must be a JSON error with a code, or a 200 for demo. */
async function expectSafe(path: string, init: RequestInit, allowOk: boolean) {
  const response = await fetch(`${base}${path}`, init);
  const text = await response.text();
  expect(response.status, text).toBeLessThan(500);
  if (response.status === 200 && allowOk) {
    expect(JSON.parse(text).user).toBe('demo');
    return;
  }
  expect(response.status, text).toBeGreaterThanOrEqual(400);
  const body = JSON.parse(text);
  expect(body.code, text).toMatch(/^ERR_[A-Z_]+$/);
  expect(text).not.toMatch(/at .*\.[jt]s:\d+/); // no stack trace
}

// Header values fetch will send: printable ASCII without CR/LF.
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 600 });

/** A token or cookie value with random edits: replaced, dropped, inserted characters, cuts. */
const mutated = (value: () => string) =>
  fc
    .array(
      fc.oneof(
        fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), char: fc.constantFrom(...'AZaz09-_.=+/ %') }),
        fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
        fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), char: fc.constantFrom(...'A.-_x') }),
        fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      ),
      { minLength: 1, maxLength: 4 },
    )
    .map((edits) => {
      let text = value();
      for (const edit of edits) {
        const at = text.length === 0 ? 0 : edit.at % text.length;
        if (edit.kind === 'replace') text = text.slice(0, at) + edit.char + text.slice(at + 1);
        if (edit.kind === 'drop') text = text.slice(0, at) + text.slice(at + 1);
        if (edit.kind === 'insert') text = text.slice(0, at) + edit.char + text.slice(at);
        if (edit.kind === 'cut') text = text.slice(0, at);
      }
      return text;
    });

const RUNS = 1_000;

describe('the Authorization header', () => {
  it('random values', async () => {
    await fc.assert(fc.asyncProperty(headerText, (value) => expectSafe('/me', { headers: { authorization: value } }, false)), { numRuns: RUNS });
  });

  it('Bearer plus random text', async () => {
    await fc.assert(fc.asyncProperty(headerText, (value) => expectSafe('/me', { headers: { authorization: `Bearer ${value}` } }, false)), { numRuns: RUNS });
  });

  it('mutated valid tokens', async () => {
    await fc.assert(
      fc.asyncProperty(mutated(() => token), (value) => expectSafe('/me', { headers: { authorization: `Bearer ${value}` } }, true)),
      { numRuns: RUNS },
    );
  });
});

describe('cookies', () => {
  it('random Cookie headers', async () => {
    await fc.assert(fc.asyncProperty(headerText, (value) => expectSafe('/me', { headers: { cookie: value } }, false)), { numRuns: RUNS });
  });

  it('mutated auth cookies', async () => {
    await fc.assert(fc.asyncProperty(mutated(() => authCookie), (value) => expectSafe('/me', { headers: { cookie: `auth=${value}` } }, true)), { numRuns: RUNS });
  });

  it('mutated sid cookies', async () => {
    await fc.assert(fc.asyncProperty(mutated(() => sidCookie), (value) => expectSafe('/me', { headers: { cookie: `sid=${value}` } }, true)), { numRuns: RUNS });
  });
});

describe('the login body', () => {
  const post = (body: string, type = 'application/json') => ({ method: 'POST', headers: { 'content-type': type }, body });

  it('arbitrary JSON values', async () => {
    await fc.assert(fc.asyncProperty(fc.jsonValue(), (value) => expectSafe('/login', post(JSON.stringify(value)), false)), { numRuns: RUNS });
  });

  it('objects shaped almost like a login', async () => {
    const field = fc.oneof(fc.string({ maxLength: 40 }), fc.integer(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.string({ minLength: 1025, maxLength: 1100 }));
    await fc.assert(
      fc.asyncProperty(fc.record({ username: field, password: field }, { requiredKeys: [] }), (value) => expectSafe('/login', post(JSON.stringify(value)), false)),
      { numRuns: 300 },
    );
  });

  it('bytes that are not JSON, and other content types', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded'), (body, type) =>
        expectSafe('/login', post(body, type), false),
      ),
      { numRuns: RUNS },
    );
  });

  it('a body over the limit is a 413', async () => {
    const response = await fetch(`${base}/login`, post(JSON.stringify({ username: 'demo', password: 'x'.repeat(20_000) })));
    expect(response.status).toBe(413);
    expect((await response.json()).code).toBe('ERR_BODY_TOO_LARGE');
  });
});

describe('cross-site requests', () => {
  it('a state-changing request from another origin is refused', async () => {
    const response = await fetch(`${base}/logout`, { method: 'POST', headers: { origin: 'https://evil.example', cookie: `sid=${sidCookie}` } });
    expect(response.status).toBe(403);
    expect((await response.json()).code).toBe('ERR_CROSS_SITE');
  });

  it('Sec-Fetch-Site: cross-site is refused even without an Origin', async () => {
    const response = await fetch(`${base}/login`, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' }, body: '{}' });
    expect(response.status).toBe(403);
  });

  it('the same origin, and clients that send no Origin, pass', async () => {
    const host = new URL(base).host;
    expect((await fetch(`${base}/logout`, { method: 'POST', headers: { origin: `http://${host}` } })).status).toBe(200);
    expect((await fetch(`${base}/logout`, { method: 'POST' })).status).toBe(200);
  });

  it('sets security headers on every response', async () => {
    const response = await fetch(`${base}/me`);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  });
});
