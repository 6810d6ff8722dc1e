import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { redisKeys } from '../lib/redisKeys.js';
import { RingSnapshot } from './snapshot.js';
import type { RingStore } from './store.js';
import type { Purpose } from './types.js';

export interface RingHolderOptions {
  store: RingStore;
  /** A connection of its own: a subscribed ioredis client can run no other command. */
  subscriber: Redis;
  masterKey: Buffer;
  clock: Clock;
  log: Logger;
  reloadIntervalMs: number;
  /** At most one reload per this interval is triggered by tokens with an unknown key id. */
  unknownKidReloadIntervalMs?: number;
}

/**
 * Holds the ring this node serves from. Reloads when a change is announced (pub/sub),
 * periodically as a backstop, and at most once a second for a token with an unknown kid.
 * When Redis is unreachable, or has lost the ring, it keeps serving what it holds.
 */
export class RingHolder extends EventEmitter<{ change: [RingSnapshot]; unknownKid: [reloaded: boolean] }> {
  private snapshot: RingSnapshot | undefined;
  private inFlight: Promise<RingSnapshot | undefined> | undefined;
  private lastUnknownKidReload = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private readonly onMessage = (channel: string, message: string) => {
    if (channel !== redisKeys.ringChannel || Number(message) === this.snapshot?.version) return;
    void this.reload('announced').catch(() => undefined);
  };

  constructor(private readonly options: RingHolderOptions) {
    super();
  }

  get current(): RingSnapshot | undefined {
    return this.snapshot;
  }

  /** Loads the ring once (a wrong master key throws here, so the node refuses to start). */
  async start(): Promise<void> {
    const { subscriber, reloadIntervalMs } = this.options;
    subscriber.on('message', this.onMessage);
    // After a reconnection ioredis resubscribes; a reload covers what was missed meanwhile.
    subscriber.on('ready', () => void this.reload('resubscribed').catch(() => undefined));
    await subscriber.subscribe(redisKeys.ringChannel);
    await this.reload('start', { throwOnError: true });
    this.timer = setInterval(() => void this.reloadIfChanged().catch(() => undefined), reloadIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.options.subscriber.off('message', this.onMessage);
  }

  /** The periodic backstop: one cheap GET of the version, the document only if it moved. */
  async reloadIfChanged(): Promise<void> {
    const version = await this.options.store.readVersion();
    if (version !== this.snapshot?.version) await this.reload('periodic');
  }

  /** Called for a token whose kid this node has never seen: it may be newer than our ring. */
  async reloadForUnknownKid(): Promise<boolean> {
    const now = this.options.clock.now();
    const reloaded = now - this.lastUnknownKidReload >= (this.options.unknownKidReloadIntervalMs ?? 1000);
    this.emit('unknownKid', reloaded); // observed by metrics
    if (!reloaded) return false;
    this.lastUnknownKidReload = now;
    await this.reload('unknown kid').catch(() => undefined);
    return true;
  }

  /** Reads the ring from Redis; concurrent callers share one read. */
  reload(reason: string, { throwOnError = false } = {}): Promise<RingSnapshot | undefined> {
    this.inFlight ??= this.load(reason).finally(() => (this.inFlight = undefined));
    return this.inFlight.catch((error: unknown) => {
      if (throwOnError) throw error;
      this.options.log.warn({ err: error, reason }, 'ring reload failed; serving the ring held in memory');
      return this.snapshot;
    });
  }

  /** Adopts a ring this node itself just committed, without waiting for the announcement. */
  async adopt(snapshot: RingSnapshot): Promise<void> {
    if (snapshot.version !== this.snapshot?.version) this.set(snapshot, 'committed');
  }

  private async load(reason: string): Promise<RingSnapshot | undefined> {
    const { store, masterKey, log } = this.options;
    const doc = await store.read();
    if (doc === null) {
      if (this.snapshot) log.warn({ version: this.snapshot.version }, 'the key ring is missing from Redis; serving the ring held in memory');
      return this.snapshot;
    }
    if (doc.version === this.snapshot?.version) return this.snapshot;
    if (this.snapshot && doc.version < this.snapshot.version) {
      // Redis went back in time (a failover to a replica that missed the last writes, or a
      // restart without them): keep the newer ring; the primary writes it back.
      log.warn({ held: this.snapshot.version, redis: doc.version }, 'Redis holds an older ring than this node; keeping the newer one');
      return this.snapshot;
    }
    const next = await RingSnapshot.open(doc, masterKey, this.snapshot);
    this.set(next, reason);
    return next;
  }

  private set(next: RingSnapshot, reason: string) {
    const previous = this.snapshot?.version;
    this.snapshot = next;
    this.options.log.info({ version: next.version, previous, reason, keys: next.document.keys.length }, 'key ring loaded');
    this.emit('change', next);
  }
}

/** Finds the key for `kid`, reloading once (rate-limited) when the kid is not in our ring. */
export async function resolveVerifier(holder: RingHolder, purpose: Purpose, kid: string | undefined) {
  const ring = holder.current;
  if (!ring || kid === undefined) return undefined;
  if (!ring.has(kid) && (await holder.reloadForUnknownKid())) {
    return holder.current?.verifier(purpose, kid);
  }
  return ring.verifier(purpose, kid);
}
