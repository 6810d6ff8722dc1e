import { describe, expect, it } from 'vitest';
import type { NodeBeat } from '../../../app/src/cluster/heartbeat.js';
import {
  buildDashboard,
  checkDashboardAccess,
  gatherDashboard,
  keySegments,
  sameSecret,
  type AccessVerifiers,
  type DashboardInput,
  type DashboardSource,
} from '../../../app/src/http/dashboard.js';
import type { AuditEvent } from '../../../app/src/keyring/store.js';
import { unauthorized } from '../../../app/src/lib/errors.js';
import { buildRing, newMasterKey, revokeActive, rotateKey, T0 } from '../support/ring.js';

const TOKEN = 'x'.repeat(40);

/** Verifiers that accept `jwt-<user>` tokens and `cookie-<user>` auth cookies. */
const verifiers = (users = ['demo', 'alice'], operators = ['demo']): AccessVerifiers => ({
  async token(jwt) {
    if (!jwt.startsWith('jwt-')) throw unauthorized('ERR_TOKEN_INVALID', 'token invalid');
    return jwt.slice(4);
  },
  async authCookie(value) {
    if (!value.startsWith('cookie-')) throw unauthorized('ERR_COOKIE_INVALID', 'cookie invalid');
    return value.slice(7);
  },
  userExists: (user) => users.includes(user),
  isOperator: (user) => operators.includes(user),
});

describe('checkDashboardAccess', () => {
  const check = (mode: Parameters<typeof checkDashboardAccess>[0], request: { authorization?: string; cookie?: string }, token?: string) =>
    checkDashboardAccess(mode, token, request, verifiers());

  it('off: 404 for everyone, even with credentials', async () => {
    expect(await check('off', {})).toMatchObject({ allowed: false, status: 404, code: 'ERR_NOT_FOUND' });
    expect(await check('off', { authorization: 'Bearer jwt-demo', cookie: 'auth=cookie-demo' })).toMatchObject({ allowed: false, status: 404 });
  });

  it('public: anyone', async () => {
    expect(await check('public', {})).toEqual({ allowed: true, who: 'anyone' });
  });

  it('token: only the exact DASHBOARD_TOKEN as a bearer', async () => {
    expect(await check('token', {}, TOKEN)).toMatchObject({ allowed: false, status: 401, code: 'ERR_DASHBOARD_TOKEN_REQUIRED' });
    expect(await check('token', { authorization: `Bearer ${TOKEN}x` }, TOKEN)).toMatchObject({ allowed: false, status: 401, code: 'ERR_DASHBOARD_TOKEN_INVALID' });
    expect(await check('token', { authorization: 'Bearer short' }, TOKEN)).toMatchObject({ allowed: false, code: 'ERR_DASHBOARD_TOKEN_INVALID' });
    expect(await check('token', { authorization: `Basic ${TOKEN}` }, TOKEN)).toMatchObject({ allowed: false, status: 401, code: 'ERR_BAD_AUTHORIZATION' });
    // A login is not the dashboard token.
    expect(await check('token', { cookie: 'auth=cookie-demo' }, TOKEN)).toMatchObject({ allowed: false, code: 'ERR_DASHBOARD_TOKEN_REQUIRED' });
    expect(await check('token', { authorization: `Bearer ${TOKEN}` }, TOKEN)).toEqual({ allowed: true, who: 'dashboard token' });
    expect(await check('token', { authorization: `  Bearer ${TOKEN}  ` }, TOKEN)).toMatchObject({ allowed: true });
  });

  it('token: refuses everything when no token is configured', async () => {
    expect(await check('token', { authorization: 'Bearer ' }, undefined)).toMatchObject({ allowed: false, status: 401 });
    expect(await check('token', { authorization: 'Bearer anything' }, undefined)).toMatchObject({ allowed: false, code: 'ERR_DASHBOARD_TOKEN_INVALID' });
  });

  it('login: an access token or the auth cookie of an existing account', async () => {
    expect(await check('login', {})).toMatchObject({ allowed: false, status: 401, code: 'ERR_DASHBOARD_LOGIN_REQUIRED' });
    expect(await check('login', { cookie: 'sid=s%3Aabc.def' })).toMatchObject({ allowed: false, code: 'ERR_DASHBOARD_LOGIN_REQUIRED' });
    expect(await check('login', { authorization: 'Bearer jwt-demo' })).toEqual({ allowed: true, who: 'demo' });
    expect(await check('login', { cookie: 'theme=dark; auth=cookie-demo' })).toEqual({ allowed: true, who: 'demo' });
    expect(await check('login', { authorization: 'Bearer nope' })).toMatchObject({ allowed: false, status: 401, code: 'ERR_TOKEN_INVALID' });
    expect(await check('login', { cookie: 'auth=nope' })).toMatchObject({ allowed: false, status: 401, code: 'ERR_COOKIE_INVALID' });
    expect(await check('login', { cookie: 'auth=cookie-mallory' })).toMatchObject({ allowed: false, status: 401, code: 'ERR_DASHBOARD_USER_UNKNOWN' });
    // Logged in is not enough: only the operators of DASHBOARD_USERS.
    expect(await check('login', { authorization: 'Bearer jwt-alice' })).toMatchObject({ allowed: false, status: 403, code: 'ERR_DASHBOARD_NOT_OPERATOR' });
    expect(await check('login', { cookie: 'auth=cookie-alice' })).toMatchObject({ allowed: false, status: 403, code: 'ERR_DASHBOARD_NOT_OPERATOR' });
    // The DASHBOARD_TOKEN means nothing in login mode.
    expect(await check('login', { authorization: `Bearer ${TOKEN}` }, TOKEN)).toMatchObject({ allowed: false, status: 401 });
  });

  it('login: a verifier failing in an unexpected way is still a 401, never a throw', async () => {
    const broken: AccessVerifiers = { ...verifiers(), token: async () => { throw new Error('boom'); } };
    expect(await checkDashboardAccess('login', undefined, { authorization: 'Bearer jwt-demo' }, broken)).toMatchObject({
      allowed: false,
      status: 401,
      code: 'ERR_DASHBOARD_LOGIN_INVALID',
    });
  });

  it('sameSecret compares whole values of any length', () => {
    expect(sameSecret(TOKEN, TOKEN)).toBe(true);
    expect(sameSecret(TOKEN, TOKEN.slice(1))).toBe(false);
    expect(sameSecret('', TOKEN)).toBe(false);
  });
});

describe('keySegments', () => {
  const from = T0;
  const to = T0 + 1000;

  it('an initial key: active from creation to now (no zero-width staged segment)', () => {
    expect(keySegments({ createdAt: T0, activatedAt: T0, retiredAt: null, revokedAt: null }, from, to)).toEqual([
      { state: 'active', from: T0, to, left: 0, width: 100 },
    ]);
  });

  it('a rotated key: staged, active, retired, laid out on the purpose timeline', () => {
    expect(keySegments({ createdAt: T0 + 100, activatedAt: T0 + 200, retiredAt: T0 + 600, revokedAt: null }, from, to)).toEqual([
      { state: 'staged', from: T0 + 100, to: T0 + 200, left: 10, width: 10 },
      { state: 'active', from: T0 + 200, to: T0 + 600, left: 20, width: 40 },
      { state: 'retired', from: T0 + 600, to, left: 60, width: 40 },
    ]);
  });

  it('a key still staged, and one revoked while active', () => {
    expect(keySegments({ createdAt: T0 + 500, activatedAt: null, retiredAt: null, revokedAt: null }, from, to)).toEqual([
      { state: 'staged', from: T0 + 500, to, left: 50, width: 50 },
    ]);
    expect(keySegments({ createdAt: T0, activatedAt: T0, retiredAt: null, revokedAt: T0 + 250 }, from, to)).toEqual([
      { state: 'active', from: T0, to: T0 + 250, left: 0, width: 25 },
      { state: 'revoked', from: T0 + 250, to, left: 25, width: 75 },
    ]);
  });

  it('a retired key revoked later, and a key revoked this very instant (kept visible)', () => {
    expect(keySegments({ createdAt: T0, activatedAt: T0, retiredAt: T0 + 500, revokedAt: T0 + 750 }, from, to).map((s) => [s.state, s.left, s.width])).toEqual([
      ['active', 0, 50],
      ['retired', 50, 25],
      ['revoked', 75, 25],
    ]);
    expect(keySegments({ createdAt: T0, activatedAt: T0, retiredAt: null, revokedAt: to }, from, to).map((s) => [s.state, s.left, s.width])).toEqual([
      ['active', 0, 100],
      ['revoked', 100, 0],
    ]);
  });

  it('never divides by zero when everything happened now', () => {
    const segments = keySegments({ createdAt: to, activatedAt: to, retiredAt: null, revokedAt: null }, to, to);
    expect(segments.every((s) => Number.isFinite(s.left) && Number.isFinite(s.width))).toBe(true);
  });
});

const beat = (id: string, over: Partial<NodeBeat> = {}): NodeBeat => ({
  id,
  role: 'auto',
  primary: false,
  ringVersion: 4,
  startedAt: T0 - 60_000,
  at: T0 + 9_500,
  draining: false,
  ...over,
});

async function input(over: Partial<DashboardInput> = {}): Promise<DashboardInput> {
  const masterKey = newMasterKey();
  let ring = await buildRing(masterKey, T0);
  ring = await rotateKey(ring, 'sign', T0 + 5_000, masterKey);
  ring = revokeActive(ring, 'cookie', T0 + 6_000);
  ring = { ...ring, version: 4 };
  const audit: AuditEvent[] = [
    { id: '2-0', at: T0 + 5_000, version: 3, actor: 'node-1', action: 'activate', purpose: 'sign', kid: 'sign-x' },
    { id: '1-0', at: T0, version: 1, actor: 'node-1', action: 'create' },
  ];
  return {
    now: T0 + 10_000,
    servedBy: 'node-2',
    heartbeatIntervalMs: 1_000,
    redis: true,
    ring,
    ringSource: 'redis',
    nodes: [beat('node-10'), beat('node-2', { ringVersion: 3 }), beat('node-1', { primary: true, at: T0 + 7_000 })],
    primary: 'node-1',
    audit,
    ...over,
  };
}

describe('buildDashboard', () => {
  it('never carries key material or anything but listed metadata', async () => {
    const data = await input();
    const view = buildDashboard(data);
    const json = JSON.stringify(view);
    for (const key of data.ring!.keys) {
      expect(json).not.toContain(key.material);
      expect(json).not.toContain(key.material.slice(8, 40));
    }
    expect(json).not.toMatch(/"material"|"publicJwk"|"masterKeyId"|"d":/);
    for (const purpose of view.purposes) {
      for (const key of purpose.keys) {
        expect(Object.keys(key).sort()).toEqual(['activatedAt', 'createdAt', 'deleteAfter', 'kid', 'retiredAt', 'revokedAt', 'segments', 'state']);
      }
    }
  });

  it('lists nodes in natural order with role, ring version, heartbeat age and flags', async () => {
    const view = buildDashboard(await input());
    expect(view.nodes.map((n) => n.id)).toEqual(['node-1', 'node-2', 'node-10']);
    expect(view.nodes[0]).toMatchObject({ id: 'node-1', primary: true, heartbeatAgeMs: 3_000, late: true, behind: false, self: false, uptimeMs: 70_000 });
    expect(view.nodes[1]).toMatchObject({ id: 'node-2', primary: false, behind: true, ringVersion: 3, heartbeatAgeMs: 500, late: false, self: true });
    expect(view.ring).toEqual({ version: 4, updatedAt: expect.any(Number), source: 'redis' });
    expect(view.primary).toBe('node-1');
    expect(view.servedBy).toBe('node-2');
  });

  it('takes the primary from the lease when known, else from the heartbeats', async () => {
    const byLease = buildDashboard(await input({ primary: 'node-10' }));
    expect(byLease.nodes.filter((n) => n.primary).map((n) => n.id)).toEqual(['node-10']);
    const byBeat = buildDashboard(await input({ primary: null }));
    expect(byBeat.nodes.filter((n) => n.primary).map((n) => n.id)).toEqual(['node-1']);
  });

  it('shows each purpose with its active key, newest first, and a timeline up to now', async () => {
    const view = buildDashboard(await input());
    expect(view.purposes.map((p) => [p.purpose, p.alg])).toEqual([['sign', 'ES256'], ['encrypt', 'A256GCM'], ['cookie', 'HS256']]);
    const sign = view.purposes[0]!;
    expect(sign.keys.map((k) => k.state)).toEqual(['active', 'retired']);
    expect(sign.active).toBe(sign.keys[0]!.kid);
    expect(sign).toMatchObject({ from: T0, to: T0 + 10_000 });
    expect(sign.keys[1]!.segments.map((s) => [s.state, s.left, s.width])).toEqual([['active', 0, 50], ['retired', 50, 50]]);
    // A revoked key (here not yet replaced): no active key for the purpose.
    const cookie = view.purposes[2]!;
    expect(cookie.keys.map((k) => k.state)).toEqual(['revoked']);
    expect(cookie.active).toBeNull();
    expect(cookie.keys[0]!.revokedAt).toBe(T0 + 6_000);
    expect(cookie.keys[0]!.segments.map((s) => s.state)).toEqual(['active', 'revoked']);
  });

  it('copies audit events field by field, optional ones as null', async () => {
    const view = buildDashboard(await input());
    expect(view.audit).toEqual([
      { id: '2-0', at: T0 + 5_000, version: 3, actor: 'node-1', action: 'activate', purpose: 'sign', kid: 'sign-x', detail: null },
      { id: '1-0', at: T0, version: 1, actor: 'node-1', action: 'create', purpose: null, kid: null, detail: null },
    ]);
  });

  it('copes with no ring at all', async () => {
    const view = buildDashboard(await input({ ring: null, ringSource: 'none', nodes: [], audit: [], primary: null }));
    expect(view.ring).toEqual({ version: null, updatedAt: null, source: 'none' });
    expect(view.purposes.every((p) => p.keys.length === 0 && p.active === null)).toBe(true);
  });
});

describe('gatherDashboard', () => {
  const base = { now: T0, servedBy: 'node-1', heartbeatIntervalMs: 1_000 };

  it('reads everything from the source', async () => {
    const ring = await buildRing(newMasterKey());
    const source: DashboardSource = {
      nodes: async () => [beat('node-1')],
      primary: async () => 'node-1',
      ring: async () => ring,
      audit: async (count) => (count > 0 ? [] : [{ id: 'x', at: 0, version: 0, actor: '', action: '' }]),
    };
    const data = await gatherDashboard(source, () => undefined, base);
    expect(data).toMatchObject({ redis: true, ring, ringSource: 'redis', primary: 'node-1', audit: [] });
    expect(data.nodes).toHaveLength(1);
  });

  it('shows what it can when Redis fails, with the ring this node holds', async () => {
    const local = await buildRing(newMasterKey());
    const fail = async () => {
      throw new Error('Connection is closed.');
    };
    const source: DashboardSource = { nodes: fail, primary: fail, ring: fail, audit: fail };
    const data = await gatherDashboard(source, () => local, base);
    expect(data).toMatchObject({ redis: false, ring: local, ringSource: 'node', nodes: [], primary: null, audit: [] });
    const partial = await gatherDashboard({ ...source, nodes: async () => [beat('node-1')] }, () => undefined, base);
    expect(partial).toMatchObject({ redis: false, ring: null, ringSource: 'none' });
    expect(partial.nodes).toHaveLength(1);
  });
});
