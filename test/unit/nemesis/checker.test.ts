import { describe, expect, it } from 'vitest';
import { check, DEFAULT_CHECK_OPTIONS, type InvariantResult } from '../../support/nemesis/checker.js';
import { History } from '../../support/nemesis/history.js';
import { Rng } from '../../support/nemesis/rng.js';

// The nemesis's checker over hand-made histories: each invariant passes a clean history and
// catches the counterexample it exists for (so a green chaos run means something).

const T0 = 1_800_000_000_000;
const result = (history: History, name: string): InvariantResult => check(history, DEFAULT_CHECK_OPTIONS).find((r) => r.name === name)!;

function clean(): History {
  const h = new History();
  h.op({ worker: 0, kind: 'login', start: T0, end: T0 + 50, status: 200, node: 'node-1', session: true });
  h.op({ worker: 0, kind: 'me-token', start: T0 + 100, end: T0 + 110, status: 200, node: 'node-2', kid: 'sign-1', loginStart: T0 });
  h.op({ worker: 0, kind: 'me-session', start: T0 + 120, end: T0 + 130, status: 200, node: 'node-3', loginStart: T0 });
  h.faults.push({ kind: 'kill', target: 'node-3', start: T0 + 200, end: T0 + 3_000, activeFrom: T0 + 300, activeUntil: T0 + 300, ok: true });
  h.health.push({ at: T0, node: 'node-1', status: 200, version: 3 }, { at: T0 + 300, node: 'node-1', status: 200, version: 4 });
  h.rings.push(
    { at: T0, version: 3, keys: [{ kid: 'sign-1', purpose: 'sign', state: 'active', activatedAt: T0 - 10 }] },
    { at: T0 + 300, version: 4, keys: [{ kid: 'sign-1', purpose: 'sign', state: 'retired', activatedAt: T0 - 10, deleteAfter: T0 + 1_000 }] },
    { at: T0 + 1_200, version: 5, keys: [] },
  );
  h.beats.push({ node: 'node-1', at: T0, primary: true, ringVersion: 3 }, { node: 'node-1', at: T0 + 500, primary: false, ringVersion: 4 }, { node: 'node-2', at: T0 + 4_000, primary: true, ringVersion: 4 });
  h.leases.push({ at: T0, token: 'node-1/a' }, { at: T0 + 3_500, token: null }, { at: T0 + 4_000, token: 'node-2/b' });
  h.lastFaultEnd = T0 + 3_000;
  h.healthyAt = T0 + 8_000;
  return h;
}

describe('the nemesis checker', () => {
  it('passes a clean history on every invariant', () => {
    expect(check(clean()).filter((r) => r.violations > 0)).toEqual([]);
  });

  it('catches a valid credential refused, and sets aside one whose key was being revoked', () => {
    const h = clean();
    h.op({ worker: 1, kind: 'me-cookie', start: T0 + 400, end: T0 + 410, status: 401, code: 'ERR_COOKIE_KEY', kid: 'encrypt-1', loginStart: T0 });
    h.op({ worker: 1, kind: 'me-token', start: T0 + 400, end: T0 + 410, status: 401, kid: 'sign-2', loginStart: T0 });
    h.faults.push({ kind: 'revoke', kid: 'sign-2', purpose: 'sign', start: T0 + 390, end: T0 + 600, ok: true, exitCode: 0 });
    const r = result(h, 'no valid credential refused');
    expect(r.violations).toBe(1);
    expect(r.first).toMatch(/me-cookie .* 401 ERR_COOKIE_KEY/);
    expect(r.excluded).toEqual({ 'its key was revoked': 1 });
  });

  it('catches a correct login refused by the throttle', () => {
    const h = clean();
    h.op({ worker: 2, kind: 'login', start: T0 + 400, end: T0 + 410, status: 429, code: 'ERR_TOO_MANY_ATTEMPTS' });
    expect(result(h, 'no valid credential refused').violations).toBe(1);
  });

  it('explains a session 503 while Redis was down, not one outside it', () => {
    const h = clean();
    h.faults.push({ kind: 'restart-redis', target: 'redis', start: T0 + 1_000, end: T0 + 5_000, activeFrom: T0 + 1_100, activeUntil: T0 + 4_000, ok: true });
    h.op({ worker: 0, kind: 'me-session', start: T0 + 2_000, end: T0 + 2_010, status: 503, code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    h.op({ worker: 0, kind: 'me-session', start: T0 + 20_000, end: T0 + 20_010, status: 503, code: 'ERR_SESSION_STORE_UNAVAILABLE' });
    const r = result(h, 'no request failed unexplained');
    expect(r.excluded).toEqual({ 'needs Redis, Redis was down': 1 });
    expect(r.violations).toBe(1);
  });

  it('catches a revoked key accepted after revoke returned', () => {
    const h = clean();
    h.faults.push({ kind: 'revoke', kid: 'sign-1', purpose: 'sign', start: T0 + 1_000, end: T0 + 1_500, ok: true, exitCode: 0 });
    h.op({ worker: -1, kind: 'me-token', start: T0 + 1_400, end: T0 + 1_410, status: 200, kid: 'sign-1' }); // before it returned: allowed
    for (let at = T0 + 500; at <= T0 + 1_600; at += 500) h.beats.push({ node: 'node-2', at, primary: false, ringVersion: 4 });
    h.op({ worker: -1, kind: 'me-token', start: T0 + 1_600, end: T0 + 1_610, status: 200, kid: 'sign-1', node: 'node-2' });
    // node-3 had not heartbeated for 1.5 s when the revoke started: revoke did not wait for it.
    h.op({ worker: -1, kind: 'me-token', start: T0 + 1_620, end: T0 + 1_630, status: 200, kid: 'sign-1', node: 'node-3' });
    const r = result(h, 'revoked key refused after revoke returns');
    expect(r.checked).toBe(2);
    expect(r.violations).toBe(1);
    expect(r.first).toMatch(/node-2/);
    expect(r.excluded).toEqual({ 'answered by a node that was not live throughout the revoke': 1 });
  });

  it('catches a ring version going back on a node', () => {
    const h = clean();
    h.health.push({ at: T0 + 600, node: 'node-1', status: 200, version: 3 });
    expect(result(h, 'ring versions only grow').first).toMatch(/node-1 at v3 .* after v4/);
  });

  it('catches a key dropped before its deleteAfter', () => {
    const h = clean();
    h.rings.splice(2, 1, { at: T0 + 900, version: 5, keys: [] });
    expect(result(h, 'no active-once key gone before deleteAfter').first).toMatch(/sign-1 gone/);
  });

  it('catches two nodes primary at once, and a lease token coming back', () => {
    const h = clean();
    h.beats.push({ node: 'node-3', at: T0 - 100, primary: true, ringVersion: 3 }, { node: 'node-3', at: T0 + 100, primary: true, ringVersion: 3 });
    expect(result(h, 'one primary at a time').violations).toBe(1);
    const l = clean();
    l.leases.push({ at: T0 + 5_000, token: 'node-1/a' });
    expect(result(l, 'one primary at a time').first).toMatch(/lease token of node-1 came back/);
  });

  it('fails a cluster that is not healthy within the bound', () => {
    const h = clean();
    h.healthyAt = T0 + 3_000 + DEFAULT_CHECK_OPTIONS.recoveryBoundMs + 1;
    expect(result(h, 'healthy again after the last fault').violations).toBe(1);
    h.healthyAt = undefined;
    expect(result(h, 'healthy again after the last fault').first).toBe('never healthy again');
  });

  it('deals the same schedule from the same seed', () => {
    const deal = (seed: number) => {
      const rng = new Rng(seed);
      return [rng.shuffle(['a', 'b', 'c', 'd', 'e']), rng.int(1, 100), rng.fork().next()];
    };
    expect(deal(16)).toEqual(deal(16));
    expect(deal(16)).not.toEqual(deal(17));
  });
});
