import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys, PREFIX } from '../lib/redisKeys.js';
import { unauthorized, unavailable } from '../lib/errors.js';
import { credentialId, revocationKeys } from './revocations.js';

// Refresh tokens for API clients: opaque, rotated on every use, in families.
//
// A token is `<family>.<secret>`: 16 random bytes naming the family, and 32 secret bytes.
// Redis holds only SHA-256 hashes of tokens (never a token), in one hash per family:
//   keyfleet:refresh:<family>  user, created, last (ms), gen, current (hash of the live
//                              token), prev (hash of its predecessor), rotatedAt (ms),
//                              h:<hash> -> generation of every token already redeemed
// Each successor is derived from the token it replaces, HMAC-SHA256 under a key derived from
// the master key: a retry with the predecessor (within the grace window) computes the very
// same successor again, so retries are idempotent without keeping any token in clear.
//
// Redemption is one Lua script, so no two nodes can both redeem one token:
//   current            -> rotate: successor becomes current (generation + 1)
//   prev, within grace -> the same successor again (a retry, or a concurrent double submit)
//   any older one      -> reuse: the family is deleted, its id revoked on every node (every
//                         access token it issued carries it), an audit event is written
// A family ends after `idleMs` without use and `absoluteMs` after the login, when its user
// logs out everywhere after it began, and when it is revoked (logout with its access token).

export interface RefreshOptions {
  /** Unused this long, a family ends. */
  idleMs: number;
  /** This long after the login, a family ends whatever happens. */
  absoluteMs: number;
  /** A redeemed token presented again within this long returns the same successor (at most 30 s). */
  graceMs: number;
}

export const DEFAULT_REFRESH_OPTIONS: RefreshOptions = { idleMs: 14 * 86_400_000, absoluteMs: 30 * 86_400_000, graceMs: 10_000 };

export const familyKey = (family: string) => `${PREFIX}refresh:${family}`;

const TOKEN_PATTERN = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

export const hashToken = (token: string) => createHash('sha256').update(token).digest('base64url');

/** The outcome of a redemption the caller acts on. */
export type Redemption =
  | { status: 'ok' | 'retry'; user: string; family: string; generation: number; refreshToken: string; claims?: Record<string, unknown> }
  | { status: 'reuse'; user: string; family: string; generation: number };

// KEYS: family, users not-before, revoked ids, revocation seq, audit stream, ring version
// ARGV: presented hash, successor hash, now, grace, idle, absolute, family revoked-id,
//       revoke until (ms), revocation channel, actor
// -> {'ok'|'retry', user, gen, claims JSON or ''} | {'reuse', user, gen} | {'invalid'} | {'expired'} | {'revoked'}
// A family is kept a minute past its end, so a late redemption is told "expired", not "unknown".
const KEEP_MS = 60_000;

export const REDEEM_LUA = `
local KEEP_MS = ${KEEP_MS}
local f = KEYS[1]
local d = redis.call('HMGET', f, 'user', 'created', 'last', 'current', 'prev', 'rotatedAt', 'gen', 'claims')
if not d[1] then return {'invalid'} end
local user, created, last, current, prev = d[1], tonumber(d[2]), tonumber(d[3]), d[4], d[5]
local rotatedAt, gen = tonumber(d[6] or '0'), tonumber(d[7])
local now, grace, idle, absolute = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if not created or not last or not gen then redis.call('DEL', f) return {'invalid'} end
if now >= created + absolute or now >= last + idle then redis.call('DEL', f) return {'expired'} end
local notBefore = tonumber(redis.call('ZSCORE', KEYS[2], user) or '0')
local revokedUntil = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[7]) or '0')
if created < notBefore or revokedUntil > now then redis.call('DEL', f) return {'revoked'} end
if ARGV[1] == current then
  local nextGen = gen + 1
  redis.call('HSET', f, 'current', ARGV[2], 'prev', ARGV[1], 'rotatedAt', now, 'last', now, 'gen', nextGen, 'h:' .. ARGV[1], gen)
  redis.call('PEXPIRE', f, math.max(1, math.min(created + absolute, now + idle) - now) + KEEP_MS)
  return {'ok', user, nextGen, d[8] or ''}
end
if ARGV[1] == prev and now - rotatedAt <= grace and ARGV[2] == current then
  return {'retry', user, gen, d[8] or ''}
end
local used = redis.call('HGET', f, 'h:' .. ARGV[1])
if not used then return {'invalid'} end
redis.call('DEL', f)
local seq = redis.call('INCR', KEYS[4])
local untilMs = tonumber(ARGV[8])
local held = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[7]) or '0')
if untilMs > held then redis.call('ZADD', KEYS[3], untilMs, ARGV[7]) end
redis.call('PUBLISH', ARGV[9], seq .. ' ' .. cjson.encode({ids = {{id = ARGV[7], ['until'] = untilMs}}}))
local version = redis.call('GET', KEYS[6]) or '0'
redis.call('XADD', KEYS[5], 'MAXLEN', '~', '10000', '*', 'version', version, 'at', ARGV[3], 'actor', ARGV[10], 'action', 'refresh-reuse',
  'detail', 'refresh token of generation ' .. used .. ' presented again (family at ' .. gen .. '): family of ' .. user .. ' revoked with every access token it issued')
return {'reuse', user, tonumber(used)}
`;

/** Claims stored with a family; anything but a JSON object reads as none. */
function parseStoredClaims(json: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Refresh-token families in Redis. Holds no state but the chain key; every call needs Redis
 * (a 503 ERR_REFRESH_UNAVAILABLE when it cannot be reached).
 */
export class RefreshTokens {
  private readonly chainKey: Buffer;
  readonly options: RefreshOptions;

  constructor(
    private readonly redis: Redis,
    masterKey: Buffer,
    options: Partial<RefreshOptions> = {},
  ) {
    this.options = { ...DEFAULT_REFRESH_OPTIONS, ...options };
    this.chainKey = Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'keyfleet refresh-token chain v1', 32));
  }

  /** The token that replaces `token` (the same every time: retries are idempotent). */
  successor(token: string): string {
    const [family] = token.split('.', 1);
    return `${family}.${createHmac('sha256', this.chainKey).update(token).digest('base64url')}`;
  }

  /**
   * Starts a family at login; returns its first token and its id (access tokens carry it).
   * The app's claims (checked at login) are kept with the family: each refreshed token carries them.
   */
  async issue(user: string, now: number, claims?: Record<string, unknown>): Promise<{ refreshToken: string; family: string }> {
    this.ensureReady();
    const family = randomBytes(16).toString('base64url');
    const refreshToken = `${family}.${randomBytes(32).toString('base64url')}`;
    const key = familyKey(family);
    const { idleMs, absoluteMs } = this.options;
    const result = await this.redis
      .multi()
      .hset(key, { user, created: now, last: now, gen: 1, current: hashToken(refreshToken), prev: '', rotatedAt: 0, ...(claims && Object.keys(claims).length > 0 ? { claims: JSON.stringify(claims) } : {}) })
      .pexpire(key, Math.min(idleMs, absoluteMs) + KEEP_MS)
      .exec()
      .catch(() => {
        throw unavailable('ERR_REFRESH_UNAVAILABLE', 'the refresh-token store is unavailable');
      });
    if (!result || result.some(([error]) => error)) throw unavailable('ERR_REFRESH_UNAVAILABLE', 'the refresh-token store is unavailable');
    return { refreshToken, family };
  }

  /**
   * Redeems `token` atomically. Throws 401 for anything that is not a live token of a live
   * family (malformed, unknown, expired, revoked), and 503 while Redis is unreachable.
   */
  async redeem(token: string, { now, actor, revokeForMs }: { now: number; actor: string; revokeForMs: number }): Promise<Redemption> {
    const match = TOKEN_PATTERN.exec(token);
    if (!match) throw unauthorized('ERR_REFRESH_INVALID', 'refresh token unknown, expired or revoked');
    this.ensureReady();
    const family = match[1]!;
    const successor = this.successor(token);
    const { graceMs, idleMs, absoluteMs } = this.options;
    let reply: [string, string?, number?, string?];
    try {
      reply = (await this.redis.eval(
        REDEEM_LUA,
        6,
        familyKey(family),
        revocationKeys.users,
        revocationKeys.ids,
        revocationKeys.seq,
        redisKeys.audit,
        redisKeys.ringVersion,
        hashToken(token),
        hashToken(successor),
        String(now),
        String(graceMs),
        String(idleMs),
        String(absoluteMs),
        credentialId.family(family),
        String(now + revokeForMs),
        revocationKeys.channel,
        actor,
      )) as [string, string?, number?, string?];
    } catch {
      throw unavailable('ERR_REFRESH_UNAVAILABLE', 'the refresh-token store is unavailable');
    }
    const [status, user, generation, claims] = reply;
    if (status === 'ok' || status === 'retry') return { status, user: user!, family, generation: Number(generation), refreshToken: successor, ...(claims ? { claims: parseStoredClaims(claims) } : {}) };
    if (status === 'reuse') return { status, user: user!, family, generation: Number(generation) };
    if (status === 'expired') throw unauthorized('ERR_REFRESH_EXPIRED', 'refresh token expired');
    if (status === 'revoked') throw unauthorized('ERR_REFRESH_REVOKED', 'refresh token revoked');
    throw unauthorized('ERR_REFRESH_INVALID', 'refresh token unknown, expired or revoked');
  }

  /** Deletes a family (logout with one of its access tokens): none of its tokens redeems again. */
  async end(family: string): Promise<void> {
    await this.redis.del(familyKey(family));
  }

  private ensureReady(): void {
    // While Redis is away, say so at once rather than queue behind reconnection attempts.
    if (this.redis.status !== 'ready') throw unavailable('ERR_REFRESH_UNAVAILABLE', 'the refresh-token store is unavailable');
  }
}
