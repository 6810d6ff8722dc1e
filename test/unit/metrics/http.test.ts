import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword, parsePasswordHash } from '../../../app/src/auth/password.js';
import { createApp, KIT_DEFAULTS } from '../support/app.js';
import { NodeMetrics } from '../../../app/src/metrics/nodeMetrics.js';
import { loginOutcome } from '../../../app/src/metrics/http.js';
import { loadedHolder, silentLog, T0 } from '../support/ring.js';
import { valueOf } from './nodeMetrics.test.js';

// The app with metrics attached, in process: what a request does to the counters. A real
// ring and real credentials; no Redis (the session middleware is a stand-in that finds none).

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function start() {
  const state = await loadedHolder(T0);
  const metrics = new NodeMetrics({ nodeId: 'node-1', role: 'auto', rotationIntervalMs: 86_400_000, clock: state.clock, defaultMetrics: false });
  const app = createApp({
    ...KIT_DEFAULTS,
    holder: state.holder,
    users: new Map([['demo', parsePasswordHash(await hashPassword('demo-password'))!]]),
    session: (req, _res, next) => {
      (req as unknown as { session: object }).session = {};
      next();
    },
    clock: state.clock,
    log: silentLog,
    isDraining: () => false,
    metrics,
  });
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call = (path: string, init: RequestInit = {}) => fetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(5_000) });
  const login = (password: string) =>
    call('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password }) });
  return { metrics, call, login };
}

describe('metrics of the HTTP app', () => {
  it('counts token checks by outcome and cache hit or miss, and auth cookie and session checks', async () => {
    const { metrics, call, login } = await start();
    const response = await login('demo-password');
    const { token } = (await response.json()) as { token: string };
    const authCookie = /auth=([^;]+)/.exec(response.headers.get('set-cookie') ?? '')![1]!;
    const bearer = { authorization: `Bearer ${token}` };

    expect((await call('/me', { headers: bearer })).status).toBe(200); // verified in full, cached
    expect((await call('/me', { headers: bearer })).status).toBe(200); // from the cache
    expect((await call('/me', { headers: { authorization: 'Bearer not.a.jwt' } })).status).toBe(401);
    expect((await call('/me', { headers: { cookie: `auth=${authCookie}` } })).status).toBe(200);
    expect((await call('/me', { headers: { cookie: 'sid=s%3Anobody.sig' } })).status).toBe(401);

    const count = (labels: Record<string, string>) => valueOf(metrics, 'keyfleet_verifications_total', labels);
    expect(await count({ purpose: 'sign', code: 'OK', cache: 'miss' })).toBe(1);
    expect(await count({ purpose: 'sign', code: 'OK', cache: 'hit' })).toBe(1);
    expect(await count({ purpose: 'sign', code: 'ERR_TOKEN_MALFORMED', cache: 'miss' })).toBe(1);
    expect(await count({ purpose: 'encrypt', code: 'OK', cache: 'miss' })).toBe(1);
    expect(await count({ purpose: 'cookie', code: 'ERR_SESSION_INVALID', cache: 'none' })).toBe(1);
    // The dashboard's figures: 4 token/cookie checks, one answered by the cache.
    expect(metrics.figures().cacheHitRatio).toBe(0.25);
  });

  it('counts logins by outcome and times requests by route pattern, never by raw path', async () => {
    const { metrics, call, login } = await start();
    expect((await login('demo-password')).status).toBe(200);
    expect((await login('wrong')).status).toBe(401);
    expect((await call('/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(400);
    expect((await call('/no/such/user-chosen/path')).status).toBe(404);
    expect((await call('/healthz')).status).toBe(200);

    expect(await valueOf(metrics, 'keyfleet_logins_total', { outcome: 'ok' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_logins_total', { outcome: 'refused' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_logins_total', { outcome: 'invalid' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_http_request_duration_seconds_count', { method: 'GET', route: '/healthz', status: '200' })).toBe(1);
    expect(await valueOf(metrics, 'keyfleet_http_request_duration_seconds_count', { method: 'GET', route: '(unmatched)', status: '404' })).toBe(1);
    expect(await metrics.text()).not.toContain('user-chosen');
  });

  it('maps /login statuses to outcomes, 429 being the throttle', () => {
    expect([200, 401, 429, 400, 413, 503].map(loginOutcome)).toEqual(['ok', 'refused', 'throttled', 'invalid', 'invalid', 'unavailable']);
  });
});
