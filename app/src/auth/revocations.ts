import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { liveNodes } from '../cluster/heartbeat.js';
import { sleep, type Clock } from '../lib/clock.js';
import { parseStored, reportMalformed } from '../lib/fromRedis.js';
import type { Logger } from '../lib/log.js';
import { subscribeWhenReady } from '../lib/redis.js';
import { PREFIX } from '../lib/redisKeys.js';

// Ended credentials, held in memory by every node, so checking a token or an `auth` cookie
// against them costs a Map lookup and no Redis call (the same shape as the key ring:
// holder.ts). Redis is the source of truth:
//
//   keyfleet:revoked        ZSET  member: credential id (`jti:<jti>`, `fam:<family>`), score: until (ms)
//   keyfleet:revoked:users  ZSET  member: user name, score: not-before (ms, "logged out everywhere at")
//   keyfleet:revoked:seq    INT   bumped by every change
//   keyfleet:revoked:changed      pub/sub: `<seq> <json change>`
//
// A node loads both sets at start, applies each announced change from the message itself
// (no read), reloads when it sees a gap in the sequence, after every reconnection of its
// subscriber, and when the periodic backstop finds another sequence number in Redis. An
// entry lives in memory only until the credential it names would have expired anyway
// (`until`), a not-before only as long as a credential issued before it can live
// (`horizonMs`). While Redis is unreachable the node keeps what it holds; what was revoked
// meanwhile is applied when it reconnects (or at the next backstop read).
// The heartbeat carries `seq`, so `keyfleet revoke-user` can wait for every live node.

export const revocationKeys = {
  ids: `${PREFIX}revoked`,
  users: `${PREFIX}revoked:users`,
  seq: `${PREFIX}revoked:seq`,
  channel: `${PREFIX}revoked:changed`,
} as const;

/** One change: credential ids ended until their own expiry, users logged out everywhere at a time. */
export interface RevocationChange {
  ids?: { id: string; until: number }[];
  users?: { user: string; at: number }[];
}

// Applies one change and announces it, in one step: no node can see the sequence number
// without the change, nor the change without its announcement. Expired entries are pruned on
// the way (ZSETs by score: O(log n) each).
//   KEYS: ids, users, seq      ARGV: change (JSON), channel, now, users horizon (ms)
// The JSON is built by this module from validated values; cjson is Redis's own.
export const REVOKE_LUA = `
local change = cjson.decode(ARGV[1])
local seq = redis.call('INCR', KEYS[3])
for _, entry in ipairs(change.ids or {}) do
  local held = tonumber(redis.call('ZSCORE', KEYS[1], entry.id) or '0')
  if tonumber(entry['until']) > held then redis.call('ZADD', KEYS[1], entry['until'], entry.id) end
end
for _, entry in ipairs(change.users or {}) do
  local held = tonumber(redis.call('ZSCORE', KEYS[2], entry.user) or '0')
  if tonumber(entry.at) > held then redis.call('ZADD', KEYS[2], entry.at, entry.user) end
end
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[4])))
redis.call('PUBLISH', ARGV[2], seq .. ' ' .. ARGV[1])
return seq
`;

export const revokeArgs = (change: RevocationChange, now: number, usersHorizonMs: number) =>
  [REVOKE_LUA, 3, revocationKeys.ids, revocationKeys.users, revocationKeys.seq, JSON.stringify(change), revocationKeys.channel, String(now), String(usersHorizonMs)] as const;

/** Writes a change to Redis and announces it; returns its sequence number. */
export async function publishRevocation(redis: Pick<Redis, 'eval'>, change: RevocationChange, now: number, usersHorizonMs: number): Promise<number> {
  return Number(await redis.eval(...revokeArgs(change, now, usersHorizonMs)));
}

export interface RevocationsOptions {
  redis: Redis;
  /** A connection of its own (a subscribed client runs no other command); may be the ring's. */
  subscriber: Redis;
  clock: Clock;
  log: Logger;
  /** How long a credential can live at most (tokens, cookies, sessions, with the skew): not-befores are held in memory this long. */
  horizonMs: number;
  /** How long Redis keeps a not-before: also as long as a refresh family can live (they are checked there). */
  storeHorizonMs?: number;
  /** The backstop: how often the sequence number in Redis is compared with the one held. */
  reloadIntervalMs: number;
}

/** Why a credential is refused (undefined: it is not). */
export type RevokedReason = 'revoked' | 'logged-out-everywhere';

/**
 * The revocations this node holds. `check` is the hot path: two Map lookups.
 * Emits `change` with the sequence number each time something new is applied.
 */
export class CredentialRevocations extends EventEmitter<{ change: [number] }> {
  private readonly ids = new Map<string, number>();
  private readonly users = new Map<string, number>();
  private held = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private readonly onMessage = (channel: string, message: string) => {
    if (channel === revocationKeys.channel) this.receive(message);
  };
  private readonly onReady = () => void this.reload('resubscribed').catch(() => undefined);

  constructor(private readonly options: RevocationsOptions) {
    super();
  }

  /** The sequence number of the last change this node applied (heartbeats carry it). */
  get seq(): number {
    return this.held;
  }

  /** Entries held now (ids, users): bounded by the credentials still alive. */
  get size(): { ids: number; users: number } {
    return { ids: this.ids.size, users: this.users.size };
  }

  async start(): Promise<void> {
    const { subscriber, reloadIntervalMs } = this.options;
    subscriber.on('message', this.onMessage);
    subscriber.on('ready', this.onReady);
    // Subscribed before the first read, so nothing announced in between is missed; bounded, so
    // a node without Redis (KEYRING_MODE local or static) still starts (the backstop catches up).
    const subscribed = subscribeWhenReady(subscriber, revocationKeys.channel).then(
      () => true,
      (error: unknown) => this.options.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'revocation channel not subscribed yet'),
    );
    await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
    await this.reload('start');
    this.timer = setInterval(() => void this.backstop().catch(() => undefined), reloadIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.options.subscriber.off('message', this.onMessage);
    this.options.subscriber.off('ready', this.onReady);
  }

  /**
   * Whether a credential is still good: `ids` are the ids it carries (its jti, its refresh
   * family), `issuedAtMs` when it was issued. Never reads Redis.
   */
  check(user: string, ids: readonly (string | undefined)[], issuedAtMs: number): RevokedReason | undefined {
    const now = this.options.clock.now();
    for (const id of ids) {
      if (id === undefined) continue;
      const until = this.ids.get(id);
      if (until !== undefined && until > now) return 'revoked';
    }
    const notBefore = this.users.get(user);
    if (notBefore !== undefined && issuedAtMs < notBefore) return 'logged-out-everywhere';
    return undefined;
  }

  /** Applies a change here at once (this node refuses at once), then writes and announces it. */
  async revoke(change: RevocationChange): Promise<number> {
    const now = this.options.clock.now();
    this.apply(change, now);
    return publishRevocation(this.options.redis, change, now, Math.max(this.options.horizonMs, this.options.storeHorizonMs ?? 0));
  }

  /**
   * Waits (at most `timeoutMs`) until every live node's heartbeat reports change `seq`
   * applied: how many did, of how many.
   */
  async confirmed(seq: number, timeoutMs: number): Promise<{ confirmed: number; live: number }> {
    const { confirmed, pending } = await waitForRevocation(this.options.redis, seq, { clock: this.options.clock, timeoutMs, pollMs: 5 });
    return { confirmed: confirmed.length, live: confirmed.length + pending.length };
  }

  /** An announcement: `<seq> <json>`. Applied from the message; a gap triggers a reload. */
  receive(message: string): void {
    const space = message.indexOf(' ');
    const seq = Number(message.slice(0, space));
    const parsed = space > 0 ? parseStored(ChangeSchema, message.slice(space + 1)) : ({ ok: false, code: 'ERR_BAD_SHAPE' } as const);
    if (!parsed.ok) {
      // Its code, not its content (it names users and credential ids); what it said is read again.
      reportMalformed(this.options.log, revocationKeys.channel, parsed.code);
      void this.reload('unreadable announcement').catch(() => undefined);
      return;
    }
    const change: RevocationChange = parsed.value;
    if (!Number.isSafeInteger(seq) || seq <= 0) return;
    this.apply(change, this.options.clock.now());
    if (seq === this.held + 1 || seq <= this.held) {
      this.held = Math.max(this.held, seq);
      this.emit('change', this.held);
    } else {
      // Something was missed (a message lost while reconnecting): read everything again.
      void this.reload('gap').catch(() => undefined);
    }
  }

  /** The backstop: one GET; everything is read again only when the sequence number moved. */
  async backstop(): Promise<void> {
    this.prune(this.options.clock.now());
    const seq = Number((await this.options.redis.get(revocationKeys.seq)) ?? '0');
    if (seq !== this.held) await this.reload('periodic');
  }

  /** Reads both sets (concurrent callers share one read) and merges them into what is held. */
  reload(reason: string): Promise<void> {
    this.inFlight ??= this.load(reason).finally(() => (this.inFlight = undefined));
    return this.inFlight.catch((error: unknown) => {
      // At start too: the backstop reads again within one interval.
      this.options.log.warn({ err: error instanceof Error ? error.message : String(error), reason }, 'revocations reload failed; keeping those held in memory');
    });
  }

  private async load(reason: string): Promise<void> {
    const { redis, clock, log, horizonMs } = this.options;
    const now = clock.now();
    const heldAtStart = this.held;
    const replies = await redis
      .multi()
      .get(revocationKeys.seq)
      .zrangebyscore(revocationKeys.ids, now, '+inf', 'WITHSCORES')
      .zrangebyscore(revocationKeys.users, now - horizonMs, '+inf', 'WITHSCORES')
      .exec();
    if (!replies) throw new Error('revocations read aborted');
    for (const [error] of replies) if (error) throw error;
    const seq = Number(replies[0]![1] ?? '0');
    const ids = pairs(replies[1]![1]);
    const users = pairs(replies[2]![1]);
    let skipped = 0;
    const change: RevocationChange = { ids: [], users: [] };
    for (const [id, until] of ids) (Number.isFinite(until) && id.length <= MAX_MEMBER ? change.ids!.push({ id, until }) : skipped++);
    for (const [user, at] of users) (Number.isFinite(at) && user.length <= MAX_MEMBER ? change.users!.push({ user, at }) : skipped++);
    if (skipped > 0) log.warn({ code: 'ERR_BAD_SHAPE', source: 'revocations', skipped }, 'malformed revocation entries in Redis skipped');
    // A union: what Redis lost (a restart without its data) is still refused here until it expires.
    this.apply(change, now);
    this.prune(now);
    const before = this.held;
    // Redis's number (lower after it lost its data), unless announcements applied during this read went further.
    if (Number.isSafeInteger(seq) && seq >= 0) this.held = this.held > heldAtStart ? Math.max(seq, this.held) : seq;
    if (reason !== 'periodic' || before !== this.held) log.info({ seq: this.held, previous: before, reason, ids: this.ids.size, users: this.users.size }, 'revocations loaded');
    this.emit('change', this.held);
  }

  private apply(change: RevocationChange, now: number): void {
    for (const { id, until } of change.ids ?? []) {
      if (until > now && until > (this.ids.get(id) ?? 0)) this.ids.set(id, until);
    }
    for (const { user, at } of change.users ?? []) {
      if (at + this.options.horizonMs > now && at > (this.users.get(user) ?? 0)) this.users.set(user, at);
    }
  }

  /** Drops entries that can no longer refuse anything: memory stays bounded by live credentials. */
  prune(now: number): void {
    for (const [id, until] of this.ids) if (until <= now) this.ids.delete(id);
    for (const [user, at] of this.users) if (at + this.options.horizonMs <= now) this.users.delete(user);
  }
}

/** [member, score] pairs from a WITHSCORES reply. */
function pairs(reply: unknown): [string, number][] {
  const flat = Array.isArray(reply) ? (reply as unknown[]) : [];
  const out: [string, number][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([String(flat[i]), Number(flat[i + 1])]);
  return out;
}

/** The longest credential id or user name held (a jti, a family id, a configured user name). */
const MAX_MEMBER = 512;

// A change as announced on the channel (JSON built by this module or by REDEEM_LUA's cjson).
const ChangeSchema = z.object({
  ids: z.array(z.object({ id: z.string().max(MAX_MEMBER), until: z.number().finite() })).max(10_000).optional(),
  users: z.array(z.object({ user: z.string().max(MAX_MEMBER), at: z.number().finite() })).max(10_000).optional(),
});

/** A change as announced; anything else throws (the caller logs and reloads). */
export function parseChange(value: unknown): RevocationChange {
  const parsed = ChangeSchema.safeParse(value);
  if (!parsed.success) throw new Error(`not a revocation change (${parsed.error.issues[0]?.path.join('.') || 'value'}: ${parsed.error.issues[0]?.message})`);
  return { ids: parsed.data.ids ?? [], users: parsed.data.users ?? [] };
}

/** Credential ids as held in the set: a token's or cookie's jti, a refresh family. */
export const credentialId = {
  jti: (jti: string) => `jti:${jti}`,
  family: (family: string) => `fam:${family}`,
};

/** Live nodes' confirmations, from their heartbeats (like waitForNodes for the ring). */
export async function waitForRevocation(
  redis: Redis,
  seq: number,
  { clock, timeoutMs, pollMs = 25 }: { clock: Clock; timeoutMs: number; pollMs?: number },
): Promise<{ confirmed: string[]; pending: string[] }> {
  const deadline = clock.now() + timeoutMs;
  for (;;) {
    const nodes = await liveNodes(redis);
    const confirmed = nodes.filter((node) => (node.revocationSeq ?? 0) >= seq).map((node) => node.id);
    const pending = nodes.filter((node) => (node.revocationSeq ?? 0) < seq).map((node) => node.id);
    if (pending.length === 0 || clock.now() >= deadline) return { confirmed, pending };
    await sleep(clock, pollMs);
  }
}
