import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { Clock } from '../lib/clock.js';
import { KeyfleetError } from '../lib/errors.js';
import { reportMalformed } from '../lib/fromRedis.js';
import type { Logger } from '../lib/log.js';
import { subscribeWhenReady } from '../lib/redis.js';
import { redisKeys } from '../lib/redisKeys.js';
import type { HeldRing } from './ports.js';
import { openRing, type OpenedRing } from './seal.js';
import { RingSnapshot } from './snapshot.js';
import type { RingStore } from './store.js';
import type { Purpose } from './types.js';

/** What peers say about the ring they hold, from heartbeats that carry a valid MAC. */
export interface PeerRing {
  id: string;
  ringId: string;
  ringVersion: number;
}

/** Why this node refuses what Redis holds, while it serves the last good ring (if any). */
export interface RingAlarm {
  code: RingAlarmCode;
  since: number;
}

// ERR_RING_INTEGRITY: the MAC fails (edited without the master key). ERR_RING_FORMAT: not a
// ring at all. ERR_RING_ROLLBACK: older than a ring this node or a live peer holds.
// ERR_RING_SWAPPED: another ring (another ringId) than the one held. ERR_RING_DOWNGRADE: an
// unauthenticated format-1 ring after format 2 was seen. ERR_MASTER_KEY_MISMATCH: wrapped
// under another master key (a rewrap this node was not restarted for).
export type RingAlarmCode =
  | 'ERR_RING_INTEGRITY'
  | 'ERR_RING_FORMAT'
  | 'ERR_RING_ROLLBACK'
  | 'ERR_RING_SWAPPED'
  | 'ERR_RING_DOWNGRADE'
  | 'ERR_MASTER_KEY_MISMATCH';

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
  /** Named in audit entries this node writes (integrity alarms). */
  nodeId?: string;
  /** Live peers' authenticated heartbeats: a starting node refuses a ring older than theirs. */
  peers?: () => Promise<PeerRing[]>;
  /**
   * How long after its last acknowledged heartbeat this node may still count itself current:
   * a little less than the heartbeat TTL, after which rotations stop waiting for it.
   */
  currentForMs?: number;
}

/**
 * Holds the ring this node serves from. Reloads when a change is announced (pub/sub),
 * periodically as a backstop, and at most once a second for a token with an unknown kid.
 * When Redis is unreachable, or has lost the ring, it keeps serving what it holds.
 */
export class RingHolder extends EventEmitter<{ change: [RingSnapshot]; alarm: [RingAlarm | undefined]; unknownKid: [reloaded: boolean] }> implements HeldRing {
  private snapshot: RingSnapshot | undefined;
  private ringAlarm: RingAlarm | undefined;
  private alarmedFingerprint: string | undefined;
  /** Once an authenticated ring was loaded, an unauthenticated one is never accepted again. */
  private sawAuthenticated = false;
  /** When the last heartbeat that Redis acknowledged was sent (see markCurrent). */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  /** A ring that never changes (KEYRING_MODE local or static): always current. */
  private fixed = false;
  private inFlight: Promise<RingSnapshot | undefined> | undefined;
  /** The read that follows the one in flight, for callers who came after it had started. */
  private following: Promise<RingSnapshot | undefined> | undefined;
  private lastUnknownKidReload = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  /** When Redis last answered on the subscriber's connection (subscribed, a message, a pong); -Infinity while it is down. */
  private heardAt = Number.NEGATIVE_INFINITY;
  /** Set by start(): from then on, being in sync also needs a subscription that answers. */
  private listening = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private pinging = false;
  private readonly onSubscriberDown = () => {
    this.heardAt = Number.NEGATIVE_INFINITY;
  };
  private readonly onMessage = (channel: string, message: string) => {
    this.heardAt = this.options.clock.now();
    if (channel !== redisKeys.ringChannel) return;
    // The message is the new version. Anything else (anyone with the password can publish) is
    // reported and skipped: the ring is only ever read authenticated, and the backstop reloads.
    if (!/^\d{1,15}$/.test(message)) return reportMalformed(this.options.log, redisKeys.ringChannel, 'ERR_BAD_SHAPE');
    if (Number(message) === this.snapshot?.version && !this.ringAlarm) return;
    void this.reload('announced').catch(() => undefined);
  };

  constructor(private readonly options: RingHolderOptions) {
    super();
  }

  get current(): RingSnapshot | undefined {
    return this.snapshot;
  }

  /**
   * True while this node knows it holds every key that can have signed a valid credential.
   * Rotation is propagate-then-activate over the live nodes (those whose heartbeat has not
   * expired), so a node whose heartbeat Redis acknowledged within `currentForMs` was waited
   * for by every activation: a kid it does not know is forged, deleted or revoked. A node
   * cut off from Redis for longer may have been left out of a rotation; it cannot tell a new
   * key from a forged one and must let another node answer (resolveVerifier).
   *
   * Heartbeats prove the main connection; announcements come on the subscriber's, which can
   * die alone (a route cut and restored: no reset, the socket stays "ready" and deaf). A deaf
   * node kept counting itself in sync and refused, with 401, credentials of a key activated
   * at once (a revoked active key's replacement) until its periodic reload (found by the
   * nemesis). So the subscriber is pinged, and must have answered within `currentForMs` too.
   */
  get inSync(): boolean {
    if (this.fixed) return true;
    const now = this.options.clock.now();
    const currentFor = this.options.currentForMs ?? 2_500;
    if (this.listening && now - this.heardAt >= currentFor) return false;
    return now - this.confirmedAt < currentFor;
  }

  /** Records a heartbeat Redis acknowledged, with the time it was sent. */
  markCurrent(sentAt: number): void {
    if (sentAt > this.confirmedAt) this.confirmedAt = sentAt;
  }

  /** For rings that never change (KEYRING_MODE local or static). */
  markFixed(): void {
    this.fixed = true;
  }

  /** Waits up to `ms` for a reload already under way; true when none is (any more). */
  async settled(ms: number): Promise<boolean> {
    const last = this.following ?? this.inFlight;
    if (!last) return true;
    const done = last.then(
      () => true,
      () => true,
    );
    return Promise.race([done, delay(ms, false)]);
  }

  /** Set while Redis holds a ring this node refuses; cleared when a good one loads. */
  get alarm(): RingAlarm | undefined {
    return this.ringAlarm;
  }

  /** Loads the ring once (a wrong master key throws here, so the node refuses to start). */
  async start(): Promise<void> {
    const { subscriber, reloadIntervalMs } = this.options;
    subscriber.on('message', this.onMessage);
    // After a reconnection ioredis resubscribes; a reload covers what was missed meanwhile.
    subscriber.on('ready', () => void this.reload('resubscribed').catch(() => undefined));
    for (const event of ['close', 'reconnecting', 'end']) subscriber.on(event, this.onSubscriberDown);
    await subscribeWhenReady(subscriber, redisKeys.ringChannel);
    this.heardAt = this.options.clock.now();
    this.listening = true;
    await this.reload('start', { throwOnError: true });
    this.timer = setInterval(() => void this.reloadIfChanged().catch(() => undefined), reloadIntervalMs);
    this.timer.unref();
    // A PING (allowed while subscribed) a few times per liveness window; a connection with
    // a socket timeout is also dropped and made again when the PING gets no answer.
    const pingEvery = Math.max(50, Math.floor((this.options.currentForMs ?? 2_500) / 4));
    this.pingTimer = setInterval(() => this.ping(), pingEvery);
    this.pingTimer.unref();
  }

  private ping(): void {
    const { subscriber, clock } = this.options;
    if (this.pinging || subscriber.status !== 'ready') return;
    this.pinging = true;
    subscriber.ping().then(
      () => {
        this.pinging = false;
        this.heardAt = clock.now();
      },
      () => (this.pinging = false),
    );
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.options.subscriber.off('message', this.onMessage);
    for (const event of ['close', 'reconnecting', 'end']) this.options.subscriber.off(event, this.onSubscriberDown);
  }

  /** The periodic backstop: one cheap GET of the version, the document only if it moved. */
  async reloadIfChanged(): Promise<void> {
    const version = await this.options.store.readVersion();
    // Under an alarm the version key proves nothing (it is as writable as the ring): read again.
    if (version !== this.snapshot?.version || this.ringAlarm) await this.reload('periodic');
  }

  /**
   * Called for a credential whose kid this node does not know while it is not in sync: true
   * when Redis was read just now (the ring held is then what Redis holds), false when the read
   * failed or was skipped (at most one per `unknownKidReloadIntervalMs`).
   */
  async reloadForUnknownKid(): Promise<boolean> {
    const now = this.options.clock.now();
    const reloaded = now - this.lastUnknownKidReload >= (this.options.unknownKidReloadIntervalMs ?? 1000);
    this.emit('unknownKid', reloaded); // observed by metrics
    if (!reloaded) return false;
    this.lastUnknownKidReload = now;
    return this.reload('unknown kid', { throwOnError: true }).then(
      () => true,
      (error: unknown) => {
        this.options.log.warn({ err: error }, 'ring reload for an unknown kid failed');
        return false;
      },
    );
  }

  /**
   * Reads the ring from Redis, with a read that starts after this call: a read already in
   * flight may have reached Redis before the change that prompted this one (an announcement,
   * a heartbeat back in touch), so callers wait for the next read instead, which they share.
   * Joining the read in flight lost announcements: the node kept the ring that read returned,
   * and, still in sync, refused the new key's credentials until the periodic reload.
   */
  reload(reason: string, { throwOnError = false } = {}): Promise<RingSnapshot | undefined> {
    return this.freshRead(reason).catch((error: unknown) => {
      if (throwOnError) throw error;
      this.options.log.warn({ err: error, reason }, 'ring reload failed; serving the ring held in memory');
      return this.snapshot;
    });
  }

  private freshRead(reason: string): Promise<RingSnapshot | undefined> {
    if (!this.inFlight) {
      this.inFlight = this.load(reason).finally(() => (this.inFlight = undefined));
      return this.inFlight;
    }
    this.following ??= this.inFlight.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      this.following = undefined;
      return this.freshRead(reason);
    });
    return this.following;
  }

  /** Adopts a ring this node itself just committed, without waiting for the announcement. */
  async adopt(snapshot: RingSnapshot): Promise<void> {
    if (snapshot.version !== this.snapshot?.version) this.set(snapshot, 'committed');
  }

  private async load(reason: string): Promise<RingSnapshot | undefined> {
    const { store, masterKey, log } = this.options;
    // A node without a ring of its own checks what Redis holds against live peers. Peers
    // first, then the ring: versions only grow, so a good ring read after the peers is never
    // older than what they reported (read the other way round, a commit in between would
    // look like a rollback, and a busy primary could keep a starting node out for good).
    const peers = this.snapshot ? [] : ((await this.options.peers?.().catch(() => [])) ?? []);
    const raw = await store.readRaw();
    if (raw === null) {
      if (this.snapshot) log.warn({ version: this.snapshot.version }, 'the key ring is missing from Redis; serving the ring held in memory');
      return this.snapshot;
    }
    let opened: OpenedRing;
    try {
      opened = openRing(masterKey, raw);
      this.checkAgainstWhatWeKnow(opened, peers);
    } catch (error) {
      const code = error instanceof KeyfleetError ? error.code : undefined;
      // A wrong master key at start-up is the operator's mistake: refuse to start (server.ts).
      if (code === 'ERR_MASTER_KEY_MISMATCH' && !this.snapshot) throw error;
      if (!isAlarmCode(code)) throw error;
      await this.raise(code, raw, (error as Error).message);
      return this.snapshot;
    }
    const { doc, legacy } = opened;
    if (doc.version === this.snapshot?.version && doc.ringId === this.snapshot.document.ringId) {
      this.clearAlarm();
      return this.snapshot;
    }
    if (this.snapshot && doc.version < this.snapshot.version) {
      // Redis went back in time (a failover to a replica that missed the last writes, or a
      // restart without them): keep the newer ring; the primary writes it back.
      log.warn({ held: this.snapshot.version, redis: doc.version }, 'Redis holds an older ring than this node; keeping the newer one');
      await this.raise('ERR_RING_ROLLBACK', raw, `Redis holds ring v${doc.version}, older than v${this.snapshot.version} held here`);
      return this.snapshot;
    }
    const next = await RingSnapshot.open(doc, masterKey, this.snapshot, this.options.clock);
    if (legacy) log.warn({ version: doc.version }, 'the key ring in Redis is format 1 (unauthenticated): the primary upgrades it');
    else this.sawAuthenticated = true;
    this.clearAlarm();
    this.set(next, reason);
    return next;
  }

  /** Refusals that need more than the MAC: what this node held, and what live peers hold. */
  private checkAgainstWhatWeKnow({ doc, legacy }: OpenedRing, peers: PeerRing[]): void {
    const held = this.snapshot?.document;
    if (legacy && this.sawAuthenticated) throw ringAlarm('ERR_RING_DOWNGRADE', 'Redis holds an unauthenticated format-1 ring after an authenticated one');
    if (held && !legacy && held.ringId !== 'legacy' && doc.ringId !== held.ringId) {
      throw ringAlarm('ERR_RING_SWAPPED', `Redis holds ring ${doc.ringId}, not ring ${held.ringId} this node serves`);
    }
    if (held) return; // a running node's own memory is the better evidence (version checks below)
    checkAgainstPeers({ doc, legacy }, peers);
  }

  private async raise(code: RingAlarmCode, raw: string, message: string): Promise<void> {
    const fingerprint = `${code}:${createHash('sha256').update(raw).digest('base64url')}`;
    if (this.ringAlarm?.code !== code) {
      this.ringAlarm = { code, since: this.options.clock.now() };
      this.emit('alarm', this.ringAlarm);
    }
    if (fingerprint === this.alarmedFingerprint) return;
    this.alarmedFingerprint = fingerprint;
    // The code and what was refused; never key material (the document is not logged).
    this.options.log.error({ code, held: this.snapshot?.version ?? null }, `refusing the key ring in Redis: ${message}; ${this.snapshot ? 'serving the last good ring from memory' : 'not ready until a good ring is there'}`);
    await this.options.store
      .audit({ actor: this.options.nodeId ?? 'node', action: 'integrity-alarm', detail: `${code}: ${message}` }, this.options.clock.now())
      .catch(() => undefined);
  }

  private clearAlarm(): void {
    if (!this.ringAlarm) return;
    this.options.log.info({ code: this.ringAlarm.code }, 'ring alarm cleared: Redis holds a good ring again');
    this.ringAlarm = undefined;
    this.alarmedFingerprint = undefined;
    this.emit('alarm', undefined);
  }

  private set(next: RingSnapshot, reason: string) {
    const previous = this.snapshot?.version;
    this.snapshot = next;
    this.options.log.info({ version: next.version, previous, reason, keys: next.document.keys.length }, 'key ring loaded');
    this.emit('change', next);
  }
}

const ALARM_CODES: readonly string[] = ['ERR_RING_INTEGRITY', 'ERR_RING_FORMAT', 'ERR_RING_ROLLBACK', 'ERR_RING_SWAPPED', 'ERR_RING_DOWNGRADE', 'ERR_MASTER_KEY_MISMATCH'];
const isAlarmCode = (code: string | undefined): code is RingAlarmCode => code !== undefined && ALARM_CODES.includes(code);
const ringAlarm = (code: RingAlarmCode, message: string) => new KeyfleetError(code, message);

/**
 * What a node without a ring of its own (starting) and the CLI can check beyond the MAC: a
 * replayed older ring, another ring, or a format-1 ring, against what live peers serve.
 */
export function checkAgainstPeers({ doc, legacy }: OpenedRing, peers: PeerRing[]): void {
  if (legacy && peers.some((peer) => peer.ringId !== 'legacy')) {
    throw ringAlarm('ERR_RING_DOWNGRADE', 'Redis holds an unauthenticated format-1 ring while live nodes serve an authenticated one');
  }
  const ahead = peers.find((peer) => peer.ringId === doc.ringId && peer.ringVersion > doc.version);
  if (ahead) throw ringAlarm('ERR_RING_ROLLBACK', `Redis holds ring v${doc.version}; live node ${ahead.id} serves v${ahead.ringVersion}`);
  const other = !legacy && peers.find((peer) => peer.ringId !== 'legacy' && peer.ringId !== doc.ringId);
  if (other) throw ringAlarm('ERR_RING_SWAPPED', `Redis holds ring ${doc.ringId}; live node ${other.id} serves ring ${other.ringId}`);
}

/**
 * Finds the key for `kid` in the ring this node holds. A kid the ring does not list is
 * refused (undefined: the caller answers 401) only while this node is in sync; a node that
 * may have missed a rotation tries one rate-limited reload and otherwise answers 503
 * ERR_RING_STALE, which the balancer retries on another node (haproxy.cfg `retry-on`). A node
 * without a ring answers 503 ERR_NOT_READY likewise: it never refuses a credential
 * only because its own ring may be behind.
 */
export async function resolveVerifier(holder: RingHolder, purpose: Purpose, kid: string | undefined) {
  if (!holder.current) throw new KeyfleetError('ERR_NOT_READY', 'key ring not loaded yet; another node can answer');
  if (kid === undefined) return undefined;
  if (holder.current.has(kid)) return holder.current.verifier(purpose, kid);
  if (holder.inSync) {
    // Every key that can have signed anything is here, or being loaded from an announcement.
    if (await holder.settled(STALE_RELOAD_WAIT_MS)) return holder.current.verifier(purpose, kid);
  } else if (await Promise.race([holder.reloadForUnknownKid(), delay(STALE_RELOAD_WAIT_MS, false)])) {
    // Bounded: a node cut off from Redis must not hold the request while its reload times out.
    return holder.current?.verifier(purpose, kid);
  }
  throw new KeyfleetError('ERR_RING_STALE', 'this node cannot confirm its key ring is current; another node can answer');
}

const STALE_RELOAD_WAIT_MS = 250;
const delay = <T>(ms: number, value: T) =>
  new Promise<T>((resolve) => {
    const timer = setTimeout(() => resolve(value), ms);
    timer.unref();
  });
