import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { systemClock, type Clock } from '../lib/clock.js';
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
  /**
   * How long an admitted attempt counts as pending (against every limit, like a failure)
   * while its password is checked. Settled by failed() or succeeded(); one nobody settles (its
   * node killed, paused or cut off from Redis) simply expires and counts as nothing.
   */
  pendingMs: number;
}

export const DEFAULT_THROTTLE_OPTIONS: ThrottleOptions = {
  maxFailuresPerAccount: 5,
  maxFailuresPerAddress: 50,
  windowMs: 15 * 60_000,
  slowdownBaseMs: 1_000,
  slowdownMaxMs: 60_000,
  // As long as HAProxy waits for an answer (`timeout server`): no password check outlives it.
  pendingMs: 10_000,
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

/** An admitted attempt, pending until `failed` or `succeeded` settles it (or it expires). */
export interface LoginTicket {
  /** The attempt's id among the pending ones. */
  readonly id: string;
  /** Failure counters (pair, account, address), then the pending sets (the same three). */
  readonly keys: readonly [pair: string, account: string, address: string, pendingPair: string, pendingAccount: string, pendingAddress: string];
}

// Names and addresses are hashed into key names: no credential material lands in Redis.
// The pair key hashes both with a separator no username or address contains.
const hash = (value: string) => createHash('sha256').update(value).digest('base64url').slice(0, 22);
export const throttleKeys = (username: string, address: string) => {
  const pair = hash(`${username}\u0000${address}`);
  const account = hash(username);
  const addr = hash(address);
  return {
    pair: `${PREFIX}throttle:pair:${pair}`,
    account: `${PREFIX}throttle:user:${account}`,
    address: `${PREFIX}throttle:addr:${addr}`,
    gate: `${PREFIX}throttle:gate:${account}`,
    pendingPair: `${PREFIX}throttle:pending:pair:${pair}`,
    pendingAccount: `${PREFIX}throttle:pending:user:${account}`,
    pendingAddress: `${PREFIX}throttle:pending:addr:${addr}`,
  };
};

// Every check and every count of one step runs in one script, so no two concurrent attempts
// can both see a count below the limit (the race a GET-then-INCR had). An admitted attempt is
// *pending*: a member of three sorted sets (pair, account, address), scored by its deadline,
// and counted with the failures against every limit until it is settled. Deadlines are on the
// admitting node's clock (the nodes' ACL user may not run TIME): a skew between nodes only
// moves when another node's attempts stop counting, by that skew. Only FAILED makes it a failure; SUCCEEDED and expiry make it nothing. (It used to count as
// a failure at once, taken back on success: a node that died in between left failures nobody
// made, and the owner got 429: docs/reliability.md, finding 4.) Refused attempts count nothing.
//   KEYS: pair, account, address, pendingPair, pendingAccount, pendingAddress, gate
//   ARGV: maxPerAccount, maxPerAddress, slowdownBaseMs, slowdownMaxMs, pendingMs, ticketId, nowMs
//   -> {1} admitted | {0, waitMs, limit} refused
const ADMIT = `
local now = tonumber(ARGV[7])
local counts, failures = {}, {}
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 3], '-inf', now)
  failures[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  counts[i] = failures[i] + redis.call('ZCARD', KEYS[i + 3])
end
local pair, address = counts[1], counts[3]
-- Under attack is failures only: logins in progress (the owner's, three browsers behind one
-- NAT, or ones a killed node never settled) are no attack.
local account = failures[2]
local maxAccount, maxAddress = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = function(failures, pending)
  local ttl = redis.call('PTTL', failures)
  if ttl < 0 then ttl = redis.call('PTTL', pending) end
  return ttl
end
if address >= maxAddress then return {0, wait(KEYS[3], KEYS[6]), 'address'} end
if pair >= maxAccount then return {0, wait(KEYS[1], KEYS[4]), 'account'} end
if account >= maxAccount and pair > 0 then
  local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(account - maxAccount, 30))
  if not redis.call('SET', KEYS[7], '1', 'PX', math.max(1, math.floor(delay)), 'NX') then
    return {0, redis.call('PTTL', KEYS[7]), 'slowdown'}
  end
end
local pendingMs = tonumber(ARGV[5])
for i = 4, 6 do
  redis.call('ZADD', KEYS[i], now + pendingMs, ARGV[6])
  -- The set goes with its last member (extended, never shortened: another node's clock may be ahead).
  if redis.call('PTTL', KEYS[i]) < pendingMs then redis.call('PEXPIRE', KEYS[i], pendingMs) end
end
return {1}
`;

// Settles a pending attempt, whether or not it is still pending (it may have expired while
// its node was paused: a wrong password still counts).
//   KEYS: pair, account, address, pendingPair, pendingAccount, pendingAddress
//   ARGV: ticketId, outcome ('failed' | 'succeeded' | 'abandoned'), windowMs
// failed: a failure on all three counters. succeeded: this address's failures on the account
// are forgiven (the pair), but the account's and the address's counts stay: the owner logging
// in must not end the slow-down an attacker earned. abandoned: nothing counted (the check
// itself failed, e.g. the app's user store was unreachable).
const SETTLE = `
for i = 4, 6 do redis.call('ZREM', KEYS[i], ARGV[1]) end
if ARGV[2] == 'failed' then
  for i = 1, 3 do
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
  end
elseif ARGV[2] == 'succeeded' then
  -- The right password: this address's failures on the account are forgiven, and so are its
  -- attempts still pending (a node killed mid-login left them; they would block this
  -- address's next concurrent logins until they expired).
  redis.call('DEL', KEYS[1], KEYS[4])
end
return 1
`;

type Outcome = 'failed' | 'succeeded' | 'abandoned';

/**
 * Failed-login limits shared by every node, in Redis (fixed windows):
 *
 * - per account and address: `maxFailuresPerAccount` failures, then that address is
 *   refused for that account until the window ends. An attacker locks out only himself;
 * - per address: `maxFailuresPerAddress` failures over all accounts (password spraying);
 * - per account, from all addresses: once it reaches `maxFailuresPerAccount` the account is
 *   under attack, and an address that has already failed on it gets one attempt per
 *   slow-down delay for the whole account (1 s, doubling, at most `slowdownMaxMs`). An
 *   address with no failure on it is not slowed: the owner, from an address of his own,
 *   still logs in. The price: each new address an attacker brings gets one guess.
 *
 * Attempts in progress count against every limit as pending (`pendingMs`), so concurrent
 * guesses cannot exceed them; a wrong password makes its attempt a failure (`failed`), a
 * right one makes it nothing (`succeeded`), and one never settled expires. `guard` does all
 * three around a password check.
 *
 * While Redis is unreachable logins go through unthrottled: availability over lockout.
 */
export class LoginThrottle {
  private readonly options: ThrottleOptions;

  constructor(
    private readonly redis: Redis,
    options: Partial<ThrottleOptions> = {},
    private readonly log?: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.options = { ...DEFAULT_THROTTLE_OPTIONS, ...options };
  }

  /** A failing script lets logins through: say so (never the name or the address). */
  private unavailable(step: string) {
    return (error: unknown) => {
      this.log?.warn({ err: error instanceof Error ? error.message : String(error), step }, 'login throttle unavailable: attempt not counted');
      return undefined;
    };
  }

  /**
   * Admits the attempt as pending, before any password work; throws TooManyAttempts over a
   * limit. Undefined when Redis cannot be asked (the attempt goes through uncounted).
   */
  async admit(username: string, address: string): Promise<LoginTicket | undefined> {
    if (this.redis.status !== 'ready') return undefined;
    const keys = throttleKeys(username, address);
    const id = randomUUID();
    const { maxFailuresPerAccount, maxFailuresPerAddress, slowdownBaseMs, slowdownMaxMs, pendingMs } = this.options;
    const result = (await this.redis
      .eval(ADMIT, 7, keys.pair, keys.account, keys.address, keys.pendingPair, keys.pendingAccount, keys.pendingAddress, keys.gate,
        maxFailuresPerAccount, maxFailuresPerAddress, slowdownBaseMs, slowdownMaxMs, pendingMs, id, this.clock.now())
      .catch(this.unavailable('admit'))) as [number, number?, ThrottleLimit?] | undefined;
    if (!result) return undefined;
    const [admitted, waitMs = 0, limit = 'account'] = result;
    if (admitted !== 1) throw new TooManyAttempts(retryAfterSeconds(waitMs), limit);
    return { id, keys: [keys.pair, keys.account, keys.address, keys.pendingPair, keys.pendingAccount, keys.pendingAddress] };
  }

  /** The password was wrong: the attempt is a failure. */
  async failed(ticket: LoginTicket | undefined): Promise<void> {
    await this.settle(ticket, 'failed');
  }

  /** The password was right: the attempt was not a failure, and this address's failures on the account are forgiven. */
  async succeeded(ticket: LoginTicket | undefined): Promise<void> {
    await this.settle(ticket, 'succeeded');
  }

  /**
   * Admit, check, settle: `check` runs only once admitted (TooManyAttempts otherwise); a
   * truthy result is a success and is returned, a falsy one a failure (undefined returned),
   * and a `check` that throws counts as nothing and rethrows.
   */
  async guard<T>(username: string, address: string, check: () => T | Promise<T>): Promise<T | undefined> {
    const ticket = await this.admit(username, address);
    let result: T;
    try {
      result = await check();
    } catch (error) {
      await this.settle(ticket, 'abandoned');
      throw error;
    }
    if (result) {
      await this.succeeded(ticket);
      return result;
    }
    await this.failed(ticket);
    return undefined;
  }

  private async settle(ticket: LoginTicket | undefined, outcome: Outcome): Promise<void> {
    if (!ticket || this.redis.status !== 'ready') return;
    await Promise.resolve()
      .then(() => this.redis.eval(SETTLE, 6, ...ticket.keys, ticket.id, outcome, this.options.windowMs))
      .catch(this.unavailable(outcome));
  }
}

/** Whole seconds for Retry-After, at least 1 (a key without a TTL, PTTL < 0, too). */
export const retryAfterSeconds = (waitMs: number) => Math.max(1, Math.ceil(waitMs / 1000));
