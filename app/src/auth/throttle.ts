import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { KeyfleetError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { PREFIX } from '../lib/redisKeys.js';

export interface ThrottleOptions {
  /**
   * Failed logins for one account from one client address within the window before that
   * address is refused for that account; the same number of failures for the account from
   * all addresses puts the account under attack (the slow-down below).
   */
  maxFailuresPerAccount: number;
  /** Failed logins from one client address, all accounts together, before it is refused. */
  maxFailuresPerAddress: number;
  windowMs: number;
  /** Under attack: the account admits one attempt from an address that already failed on it per this delay, doubling with each further failure. */
  slowdownBaseMs: number;
  /** The longest that delay grows to. */
  slowdownMaxMs: number;
}

export const DEFAULT_THROTTLE_OPTIONS: ThrottleOptions = {
  maxFailuresPerAccount: 5,
  maxFailuresPerAddress: 50,
  windowMs: 15 * 60_000,
  slowdownBaseMs: 1_000,
  slowdownMaxMs: 60_000,
};

/** Which limit refused an attempt (logged and tested; the client sees only the 429). */
export type ThrottleLimit = 'address' | 'account' | 'slowdown';

/** 429 with the seconds to wait, which the HTTP layer sends as Retry-After. */
export class TooManyAttempts extends KeyfleetError {
  constructor(
    readonly retryAfterS: number,
    readonly limit: ThrottleLimit = 'account',
  ) {
    super('ERR_TOO_MANY_ATTEMPTS', 'too many failed logins; try again later');
  }
}

/** An admitted attempt, counted as a failure until `succeeded` takes it back. */
export interface LoginTicket {
  readonly keys: readonly [pair: string, account: string, address: string];
}

// Names and addresses are hashed into key names: no credential material lands in Redis.
// The pair key hashes both with a separator no username or address contains.
const hash = (value: string) => createHash('sha256').update(value).digest('base64url').slice(0, 22);
export const throttleKeys = (username: string, address: string) => ({
  pair: `${PREFIX}throttle:pair:${hash(`${username}\u0000${address}`)}`,
  account: `${PREFIX}throttle:user:${hash(username)}`,
  address: `${PREFIX}throttle:addr:${hash(address)}`,
  gate: `${PREFIX}throttle:gate:${hash(username)}`,
});

// Count first, in one step: every check and every increment runs in one script, so no two
// concurrent attempts can both see a count below the limit (the race a GET-then-INCR had).
// An admitted attempt is counted as a failure before the password is checked; a correct
// password takes it back (SUCCEEDED). Refused attempts count nothing.
//   KEYS: pair, account, address, gate
//   ARGV: maxPerAccount, maxPerAddress, windowMs, slowdownBaseMs, slowdownMaxMs
//   -> {1} admitted | {0, waitMs, limit} refused
const ADMIT = `
local pair = tonumber(redis.call('GET', KEYS[1]) or '0')
local account = tonumber(redis.call('GET', KEYS[2]) or '0')
local address = tonumber(redis.call('GET', KEYS[3]) or '0')
local maxAccount, maxAddress = tonumber(ARGV[1]), tonumber(ARGV[2])
if address >= maxAddress then return {0, redis.call('PTTL', KEYS[3]), 'address'} end
if pair >= maxAccount then return {0, redis.call('PTTL', KEYS[1]), 'account'} end
if account >= maxAccount and pair > 0 then
  local delay = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ math.min(account - maxAccount, 30))
  if not redis.call('SET', KEYS[4], '1', 'PX', math.max(1, math.floor(delay)), 'NX') then
    return {0, redis.call('PTTL', KEYS[4]), 'slowdown'}
  end
end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
end
return {1}
`;

// A correct password: this address's failures on the account are forgiven, and the attempt
// is taken back from the account's and the address's counts (not reset: the owner logging
// in must not end the slow-down an attacker earned).
const SUCCEEDED = `
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
`;

/**
 * Failed-login limits shared by every node, in Redis (fixed windows):
 *
 * - per account and address: `maxFailuresPerAccount` failures, then that address is
 *   refused for that account until the window ends. An attacker locks out only himself;
 * - per address: `maxFailuresPerAddress` failures over all accounts (password spraying);
 * - per account, from all addresses: once it reaches `maxFailuresPerAccount` the account is
 *   under attack, and an address that has already failed on it gets one attempt per
 *   slow-down delay for the whole account (1 s, doubling, at most `slowdownMaxMs`). An
 *   address with no failure on the account is not slowed: the owner, from an address of
 *   his own, still logs in. The price: each new address an attacker brings gets one guess.
 *
 * While Redis is unreachable logins go through unthrottled: availability over lockout.
 */
export class LoginThrottle {
  private readonly options: ThrottleOptions;

  constructor(
    private readonly redis: Redis,
    options: Partial<ThrottleOptions> = {},
    private readonly log?: Logger,
  ) {
    this.options = { ...DEFAULT_THROTTLE_OPTIONS, ...options };
  }

  /** A failing script lets logins through: say so (never the name or the address). */
  private failed(step: string) {
    return (error: unknown) => {
      this.log?.warn({ err: error instanceof Error ? error.message : String(error), step }, 'login throttle unavailable: attempt not counted');
      return undefined;
    };
  }

  /**
   * Counts the attempt and admits it, before any password work; throws TooManyAttempts over
   * a limit. Undefined when Redis cannot be asked (the attempt goes through uncounted).
   */
  async admit(username: string, address: string): Promise<LoginTicket | undefined> {
    if (this.redis.status !== 'ready') return undefined;
    const keys = throttleKeys(username, address);
    const { maxFailuresPerAccount, maxFailuresPerAddress, windowMs, slowdownBaseMs, slowdownMaxMs } = this.options;
    const result = (await this.redis
      .eval(ADMIT, 4, keys.pair, keys.account, keys.address, keys.gate, maxFailuresPerAccount, maxFailuresPerAddress, windowMs, slowdownBaseMs, slowdownMaxMs)
      .catch(this.failed('admit'))) as [number, number?, ThrottleLimit?] | undefined;
    if (!result) return undefined;
    const [admitted, waitMs = 0, limit = 'account'] = result;
    if (admitted !== 1) throw new TooManyAttempts(retryAfterSeconds(waitMs), limit);
    return { keys: [keys.pair, keys.account, keys.address] };
  }

  /** The password was right: the attempt was not a failure. */
  async succeeded(ticket: LoginTicket | undefined): Promise<void> {
    if (!ticket || this.redis.status !== 'ready') return;
    await this.redis.eval(SUCCEEDED, 3, ...ticket.keys).catch(this.failed('succeeded'));
  }
}

/** Whole seconds for Retry-After, at least 1 (a key without a TTL, PTTL < 0, too). */
export const retryAfterSeconds = (waitMs: number) => Math.max(1, Math.ceil(waitMs / 1000));
