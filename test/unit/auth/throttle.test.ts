import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { Logger } from '../../../app/src/lib/log.js';
import { DEFAULT_THROTTLE_OPTIONS, LoginThrottle, TooManyAttempts, retryAfterSeconds, throttleKeys } from '../../../app/src/auth/throttle.js';

// The throttle's own logic without Redis: what it sends, and how it reads the answer. The
// script itself runs against a real Redis in test/integration/throttle.test.ts (50
// concurrent attempts), since only Redis can show it is atomic.

/** Records every EVAL and answers with `reply`. */
function stubRedis(reply: unknown, status = 'ready') {
  const calls: { keys: string[]; args: string[] }[] = [];
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
      expect(key).toMatch(/^keyfleet:throttle:(pair|user|addr|gate):[A-Za-z0-9_-]{22}$/);
      expect(key).not.toContain('alice');
      expect(key).not.toContain('203.0.113');
    }
    // The pair key tells "alice from X" from "alic from eX".
    expect(throttleKeys('alic', 'e\u0000x').pair).not.toBe(throttleKeys('alice', 'x').pair);
    expect(throttleKeys('alice', 'x').account).toBe(throttleKeys('alice', 'y').account);
    expect(throttleKeys('alice', 'x').gate).toBe(throttleKeys('alice', 'y').gate);
  });

  it('asks once, with the pair, account, address and gate keys and every limit', async () => {
    const { redis, calls } = stubRedis([1]);
    const throttle = new LoginThrottle(redis, { maxFailuresPerAccount: 3, slowdownBaseMs: 250 });
    const ticket = await throttle.admit('alice', '10.0.0.1');
    const keys = throttleKeys('alice', '10.0.0.1');
    expect(calls).toEqual([{ keys: [keys.pair, keys.account, keys.address, keys.gate], args: ['3', '50', '900000', '250', '60000'] }]);
    expect(ticket).toEqual({ keys: [keys.pair, keys.account, keys.address] });
    await throttle.succeeded(ticket);
    expect(calls[1]).toEqual({ keys: [keys.pair, keys.account, keys.address], args: [] });
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

  it('defaults: 5 per account and address, 50 per address, 15 min, slow-down 1 s doubling to 1 min', () => {
    expect(DEFAULT_THROTTLE_OPTIONS).toEqual({ maxFailuresPerAccount: 5, maxFailuresPerAddress: 50, windowMs: 900_000, slowdownBaseMs: 1_000, slowdownMaxMs: 60_000 });
  });
});
