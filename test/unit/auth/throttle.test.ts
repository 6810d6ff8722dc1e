import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../../app/src/lib/log.js';
import { DEFAULT_THROTTLE_OPTIONS, LoginThrottle, TooManyAttempts, retryAfterSeconds, throttleKeys } from '../../../app/src/auth/throttle.js';

// The throttle's own logic without Redis: what it sends, and how it reads the answer. The
// scripts themselves (pending attempts, their expiry, the counts) run against a real Redis in
// test/integration/throttle.test.ts (50 concurrent attempts), since only Redis runs Lua and
// can show a script is atomic.

/** Records every EVAL and answers with `reply`. */
function stubRedis(reply: unknown, status = 'ready') {
  const calls: { keys: string[]; args: string[]; script?: string }[] = [];
  const redis = {
    status,
    async eval(_script: string, count: number, ...rest: (string | number)[]) {
      calls.push({ keys: rest.slice(0, count).map(String), args: rest.slice(count).map(String) });
      if (reply instanceof Error) throw reply;
      return reply;
    },
  };
  return { redis: redis as unknown as Redis, calls };
}

describe('LoginThrottle', () => {
  it('keeps names and addresses out of Redis: every key is a hash under keyfleet:throttle:', () => {
    const keys = throttleKeys('alice@example.com', '203.0.113.9');
    for (const key of Object.values(keys)) {
      expect(key).toMatch(/^keyfleet:throttle:(pending:)?(pair|user|addr|gate):[A-Za-z0-9_-]{22}$/);
      expect(key).not.toContain('alice');
      expect(key).not.toContain('203.0.113');
    }
    // The pair key tells "alice from X" from "alic from eX".
    expect(throttleKeys('alic', 'e\u0000x').pair).not.toBe(throttleKeys('alice', 'x').pair);
    expect(throttleKeys('alice', 'x').account).toBe(throttleKeys('alice', 'y').account);
    expect(throttleKeys('alice', 'x').gate).toBe(throttleKeys('alice', 'y').gate);
  });

  it('admits once, with the failure counters, the pending sets, the gate, every limit and a fresh ticket id', async () => {
    const { redis, calls } = stubRedis([1]);
    const throttle = new LoginThrottle(redis, { maxFailuresPerAccount: 3, slowdownBaseMs: 250, pendingMs: 2_000 }, undefined, { now: () => 1_700_000_000_000 });
    const ticket = await throttle.admit('alice', '10.0.0.1');
    const again = await throttle.admit('alice', '10.0.0.1');
    const k = throttleKeys('alice', '10.0.0.1');
    const all = [k.pair, k.account, k.address, k.pendingPair, k.pendingAccount, k.pendingAddress];
    expect(calls[0]).toEqual({ keys: [...all, k.gate], args: ['3', '50', '250', '60000', '2000', ticket!.id, '1700000000000'] });
    expect(ticket).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), keys: all });
    expect(again!.id).not.toBe(ticket!.id);
    // Each settlement is one script: the ticket's keys, its id, the outcome, the window.
    await throttle.failed(ticket);
    await throttle.succeeded(again);
    expect(calls.slice(2)).toEqual([
      { keys: all, args: [ticket!.id, 'failed', '900000'] },
      { keys: all, args: [again!.id, 'succeeded', '900000'] },
    ]);
  });

  it('guard(): checks only once admitted; a falsy check is a failure, a truthy one a success, a throwing one counts nothing', async () => {
    const { redis, calls } = stubRedis([1]);
    const throttle = new LoginThrottle(redis);
    const outcomes = () => calls.filter((call) => call.args.length === 3).map((call) => call.args[1]);
    expect(await throttle.guard('alice', '10.0.0.1', async () => ({ name: 'alice' }))).toEqual({ name: 'alice' });
    expect(await throttle.guard('alice', '10.0.0.1', () => false)).toBeUndefined();
    expect(await throttle.guard('alice', '10.0.0.1', async () => undefined)).toBeUndefined();
    await expect(throttle.guard('alice', '10.0.0.1', async () => { throw new Error('user store down'); })).rejects.toThrow('user store down');
    expect(outcomes()).toEqual(['succeeded', 'failed', 'failed', 'abandoned']);

    let checked = false;
    const refusing = new LoginThrottle(stubRedis([0, 5_000, 'account']).redis);
    const refused = await refusing.guard('alice', '10.0.0.1', () => (checked = true)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(TooManyAttempts);
    expect(checked).toBe(false);
  });

  it('turns a refusal into TooManyAttempts with whole seconds to wait and the limit that refused', async () => {
    for (const [waitMs, limit, seconds] of [[1, 'account', 1], [14_001, 'address', 15], [-1, 'slowdown', 1]] as const) {
      const throttle = new LoginThrottle(stubRedis([0, waitMs, limit]).redis);
      const error = await throttle.admit('alice', '10.0.0.1').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TooManyAttempts);
      expect(error).toMatchObject({ status: 429, code: 'ERR_TOO_MANY_ATTEMPTS', retryAfterS: seconds, limit });
    }
    expect(retryAfterSeconds(0)).toBe(1);
    expect(retryAfterSeconds(60_000)).toBe(60);
  });

  it('lets a login through uncounted while Redis is away or failing, and then asks nothing back', async () => {
    const down = stubRedis([0, 1000, 'account'], 'reconnecting');
    const throttle = new LoginThrottle(down.redis);
    expect(await throttle.admit('alice', '10.0.0.1')).toBeUndefined();
    await throttle.succeeded(undefined);
    await throttle.failed(undefined);
    expect(await throttle.guard('alice', '10.0.0.1', () => 'checked')).toBe('checked');
    expect(down.calls).toEqual([]);
    const failing = stubRedis(new Error('Command timed out'));
    const warnings: unknown[] = [];
    const log = { warn: (...args: unknown[]) => warnings.push(args) } as unknown as Logger;
    expect(await new LoginThrottle(failing.redis, {}, log).admit('alice', '10.0.0.1')).toBeUndefined();
    // Said in the log, without the name or the address.
    expect(warnings).toHaveLength(1);
    expect(JSON.stringify(warnings)).toContain('Command timed out');
    expect(JSON.stringify(warnings)).not.toMatch(/alice|10\.0\.0\.1/);
  });

  it('defaults: 5 per account and address, 50 per address, 15 min, slow-down 1 s doubling to 1 min, pending 10 s', () => {
    expect(DEFAULT_THROTTLE_OPTIONS).toEqual({ maxFailuresPerAccount: 5, maxFailuresPerAddress: 50, windowMs: 900_000, slowdownBaseMs: 1_000, slowdownMaxMs: 60_000, pendingMs: 10_000 });
  });
});
