import { createHash } from 'node:crypto';
import session, { type SessionData } from 'express-session';
import type { Redis } from 'ioredis';
import { PREFIX } from '../lib/redisKeys.js';

// An in-memory copy of recently read sessions in front of the Redis store, on each node, kept
// honest the way the key ring is: every write and destroy, on any node, is announced on a
// pub/sub channel and every node drops its copy on the message. An unchanged session then
// costs no Redis command at all.
//
// What keeps it from serving a session that changed:
// - writes go to Redis first (SET or DEL), then the announcement (PUBLISH), and the writer
//   drops its own copy before and after; a failed PUBLISH fails the write (a 503);
// - a copy is made only from a read that no invalidation overtook: every invalidation bumps a
//   generation counter, and a read that started under an older generation is not kept (a GET
//   answered before a SET elsewhere, whose message arrived first, would otherwise stick);
// - copies are served only while this node's subscription is live: the moment its pub/sub
//   connection drops, every copy goes, and none is made again until it has resubscribed (a
//   message sent meanwhile is lost, so nothing from before may be trusted);
// - and only while Redis has answered on that connection within `livenessMs` (a PING every
//   `pingIntervalMs`): a connection that silently stops delivering (a network partition
//   between this node and Redis, no reset) would otherwise look live forever, and this node
//   would keep serving copies another node has since changed. After `livenessMs` of silence
//   the node reads from Redis again, which fails (a 503) while it cannot reach it;
// - bounded: `maxEntries` (least recently used first out) and `maxAgeMs` after the read, and
//   never past the session's own cookie expiry. The age bound covers writes that bypass the
//   store (someone editing Redis by hand): they show within `maxAgeMs`.
// While Redis itself is unreachable the session middleware answers 503 before looking here.
//
// Messages carry a SHA-256 digest of the session id, not the id: the channel is readable by
// anything holding the nodes' Redis credentials, and a digest identifies the entry just as well.

export const SESSION_CHANNEL = `${PREFIX}sess:changed`;

export interface SessionCacheOptions {
  maxEntries: number;
  maxAgeMs: number;
  /** Copies are served only if Redis answered on the pub/sub connection this recently. */
  livenessMs: number;
  pingIntervalMs: number;
  now: () => number;
}

export const DEFAULT_SESSION_CACHE_OPTIONS: SessionCacheOptions = {
  maxEntries: 10_000,
  maxAgeMs: 60_000,
  livenessMs: 1_000,
  pingIntervalMs: 250,
  now: Date.now,
};

interface Entry {
  /** The digest the channel names it by. */
  id: string;
  /** The session as JSON: every get() has its own copy (express-session mutates what it gets). */
  text: string;
  /** One deep-frozen copy for read-only callers (getFrozen). */
  frozen: Readonly<SessionData>;
  expiresAt: number;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

type Callback<T = void> = (error?: unknown, value?: T | null) => void;

const digest = (sid: string) => createHash('sha256').update(sid).digest('base64url').slice(0, 32);
/** What a message must be: a digest as `digest` makes it. */
const DIGEST = /^[A-Za-z0-9_-]{32}$/;

export interface SessionCacheStats {
  hits: number;
  misses: number;
  invalidations: number;
  size: number;
  live: boolean;
}

/** A session.Store that answers from memory when it safely can and from `inner` otherwise. */
export class CachedSessionStore extends session.Store {
  /** By session id; `ids` maps the digests that messages carry back to session ids. */
  private readonly entries = new Map<string, Entry>();
  private readonly ids = new Map<string, string>();
  private readonly options: SessionCacheOptions;
  private generation = 0;
  private live = false;
  private closed = false;
  /** When Redis last answered on the pub/sub connection (a message, a pong, a subscribe). */
  private lastContact = Number.NEGATIVE_INFINITY;
  private pinging = false;
  private readonly timer: NodeJS.Timeout;
  readonly stats = { hits: 0, misses: 0, invalidations: 0 };

  /**
   * `inner` does the Redis work; `publisher` announces writes; `subscriber` is a connection of
   * the store's own (it subscribes on every `ready`, and is closed by close()).
   */
  constructor(
    private readonly inner: session.Store,
    private readonly publisher: Pick<Redis, 'publish'>,
    private readonly subscriber: Redis,
    options: Partial<SessionCacheOptions> = {},
  ) {
    super();
    this.options = { ...DEFAULT_SESSION_CACHE_OPTIONS, ...options };
    subscriber.on('message', (channel: string, message: string) => {
      this.lastContact = this.options.now();
      // Anything but a digest (written by whoever holds the password) names no entry: skipped.
      if (channel === SESSION_CHANNEL && DIGEST.test(message)) this.invalidate(message);
    });
    this.timer = setInterval(() => this.ping(), this.options.pingIntervalMs);
    this.timer.unref();
    subscriber.on('ready', () => void this.subscribe());
    for (const event of ['close', 'reconnecting', 'end']) subscriber.on(event, () => this.goDark());
    // A connection error is followed by 'close'; this only keeps ioredis from printing it.
    subscriber.on('error', () => undefined);
    if (subscriber.status === 'ready') void this.subscribe();
  }

  get info(): SessionCacheStats {
    return { ...this.stats, size: this.entries.size, live: this.live };
  }

  private async subscribe(): Promise<void> {
    if (this.closed) return;
    try {
      await this.subscriber.subscribe(SESSION_CHANNEL);
    } catch {
      return; // the connection dropped again: 'close' cleared everything already
    }
    // Anything cached before may have missed a message while the subscription was down.
    this.forgetAll();
    this.live = this.subscriber.status === 'ready' && !this.closed;
    this.lastContact = this.options.now();
  }

  private ping(): void {
    if (!this.live || this.pinging) return;
    this.pinging = true;
    this.subscriber.ping().then(
      () => {
        this.pinging = false;
        this.lastContact = this.options.now();
      },
      () => (this.pinging = false),
    );
  }

  /** Live, and heard from Redis recently enough that no message can be missing. */
  private trusted(now: number): boolean {
    return this.live && now - this.lastContact <= this.options.livenessMs;
  }

  private goDark(): void {
    this.live = false;
    this.forgetAll();
  }

  private forgetAll(): void {
    this.generation++;
    this.entries.clear();
    this.ids.clear();
  }

  private drop(sid: string): void {
    const entry = this.entries.get(sid);
    if (entry === undefined) return;
    this.entries.delete(sid);
    this.ids.delete(entry.id);
  }

  /** `id`: the digest a message carries. */
  private invalidate(id: string): void {
    this.generation++;
    this.stats.invalidations++;
    const sid = this.ids.get(id);
    if (sid !== undefined) this.drop(sid);
  }

  /** The entry for `sid` if it may be served now (and marks it most recently used). */
  private fresh(sid: string, now: number): Entry | undefined {
    const entry = this.entries.get(sid);
    if (entry === undefined) return undefined;
    this.entries.delete(sid);
    if (!this.trusted(now) || now >= entry.expiresAt) {
      this.ids.delete(entry.id);
      return undefined;
    }
    this.entries.set(sid, entry); // most recently used last
    this.stats.hits++;
    return entry;
  }

  override get(sid: string, callback: Callback<SessionData>): void {
    const now = this.options.now();
    const entry = this.fresh(sid, now);
    if (entry !== undefined) {
      callback(null, JSON.parse(entry.text) as SessionData);
      return;
    }
    this.readThrough(sid, now, callback);
  }

  /**
   * Like get(), for callers that only read: a hit answers with one deep-frozen copy shared by
   * every such caller (no parse per request); a miss with the store's own fresh object.
   */
  getFrozen(sid: string, callback: Callback<Readonly<SessionData>>): void {
    const now = this.options.now();
    const entry = this.fresh(sid, now);
    if (entry !== undefined) {
      callback(null, entry.frozen);
      return;
    }
    this.readThrough(sid, now, callback);
  }

  private readThrough(sid: string, now: number, callback: Callback<SessionData>): void {
    this.stats.misses++;
    const generation = this.generation;
    this.inner.get(sid, (error, data) => {
      if (error) return callback(error);
      if (data && this.trusted(now) && generation === this.generation) this.remember(sid, data, now);
      callback(null, data ?? null);
    });
  }

  private remember(sid: string, data: SessionData, now: number): void {
    const { maxEntries, maxAgeMs } = this.options;
    if (maxEntries <= 0) return;
    const cookieExpires = data.cookie?.expires ? new Date(data.cookie.expires).getTime() : Number.POSITIVE_INFINITY;
    const expiresAt = Math.min(now + maxAgeMs, Number.isNaN(cookieExpires) ? now : cookieExpires);
    if (expiresAt <= now) return;
    this.drop(sid);
    while (this.entries.size >= maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.drop(oldest.value);
    }
    const text = JSON.stringify(data);
    const id = digest(sid);
    this.entries.set(sid, { id, text, frozen: deepFreeze(JSON.parse(text) as SessionData), expiresAt });
    this.ids.set(id, sid);
  }

  override set(sid: string, data: SessionData, callback?: Callback): void {
    this.write(sid, (done) => this.inner.set(sid, data, done), callback);
  }

  override destroy(sid: string, callback?: Callback): void {
    this.write(sid, (done) => this.inner.destroy(sid, done), callback);
  }

  override touch(sid: string, data: SessionData, callback?: () => void): void {
    if (this.inner.touch) this.inner.touch(sid, data, callback ?? (() => undefined));
    else callback?.();
  }

  /** Redis first, then the announcement; our own copy dropped before and after. */
  private write(sid: string, run: (done: (error?: unknown) => void) => void, callback: Callback = () => undefined): void {
    const id = digest(sid);
    this.invalidate(id);
    this.drop(sid);
    run((error?: unknown) => {
      this.invalidate(id);
      this.drop(sid);
      if (error) return callback(error);
      this.publisher.publish(SESSION_CHANNEL, id).then(
        () => callback(),
        (publishError: unknown) => callback(publishError),
      );
    });
  }

  /** Stops the subscription connection; the store keeps working without the memory copy. */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.goDark();
    this.subscriber.disconnect();
  }
}
