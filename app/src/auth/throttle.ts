import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { KeyfleetError } from '../lib/errors.js';
import { PREFIX } from '../lib/redisKeys.js';

export interface ThrottleOptions {
  /** Failed logins for one account name within the window before it is refused. */
  maxFailuresPerAccount: number;
  /** Failed logins from one client address within the window before it is refused. */
  maxFailuresPerAddress: number;
  windowMs: number;
}

export const DEFAULT_THROTTLE_OPTIONS: ThrottleOptions = {
  maxFailuresPerAccount: 5,
  maxFailuresPerAddress: 50,
  windowMs: 15 * 60_000,
};

/** 429 with the seconds to wait, which the HTTP layer sends as Retry-After. */
export class TooManyAttempts extends KeyfleetError {
  constructor(readonly retryAfterS: number) {
    super('ERR_TOO_MANY_ATTEMPTS', 'too many failed logins; try again later', 429);
  }
}

// Names and addresses are hashed into key names: no credential material lands in Redis.
const keyOf = (kind: 'user' | 'addr', value: string) => `${PREFIX}throttle:${kind}:${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;

/**
 * Counts failed logins per account and per client address in Redis, shared by every node
 * (fixed windows). Only failures count, so busy clients that log in correctly are never
 * slowed. While Redis is unreachable it lets logins through: availability over lockout.
 */
export class LoginThrottle {
  constructor(
    private readonly redis: Redis,
    private readonly options: ThrottleOptions = DEFAULT_THROTTLE_OPTIONS,
  ) {}

  /** Throws TooManyAttempts when either counter is at its limit. */
  async check(username: string, address: string): Promise<void> {
    if (this.redis.status !== 'ready') return;
    const keys = [keyOf('user', username), keyOf('addr', address)];
    const result = await this.redis
      .multi()
      .get(keys[0]!)
      .pttl(keys[0]!)
      .get(keys[1]!)
      .pttl(keys[1]!)
      .exec()
      .catch(() => null);
    if (!result) return;
    const [user, userTtl, addr, addrTtl] = result.map(([, value]) => value) as [string | null, number, string | null, number];
    const waits: number[] = [];
    if (Number(user ?? 0) >= this.options.maxFailuresPerAccount) waits.push(userTtl);
    if (Number(addr ?? 0) >= this.options.maxFailuresPerAddress) waits.push(addrTtl);
    if (waits.length > 0) throw new TooManyAttempts(Math.max(1, Math.ceil(Math.max(...waits) / 1000)));
  }

  async failed(username: string, address: string): Promise<void> {
    if (this.redis.status !== 'ready') return;
    const pipeline = this.redis.multi();
    for (const key of [keyOf('user', username), keyOf('addr', address)]) {
      pipeline.incr(key).pexpire(key, this.options.windowMs, 'NX');
    }
    await pipeline.exec().catch(() => undefined);
  }

  /** A correct password clears the account's count (not the address's). */
  async succeeded(username: string): Promise<void> {
    if (this.redis.status !== 'ready') return;
    await this.redis.del(keyOf('user', username)).catch(() => undefined);
  }
}
