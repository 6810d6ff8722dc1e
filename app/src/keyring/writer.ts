import type { Clock } from '../lib/clock.js';
import { KeyfleetError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { RingHolder } from './holder.js';
import { emptyRing, type Lifetimes } from './lifecycle.js';
import { RingSnapshot } from './snapshot.js';
import type { OpenedRing } from './seal.js';
import type { AuditEntry, RingStore } from './store.js';
import type { RingDocument } from './types.js';
import { masterKeyId } from './wrap.js';

/** What the writer needs of the primary lease: its token while held, and a way to let go. */
export interface Fence {
  /** The lease token while this node believes it holds the lease; undefined otherwise. */
  readonly fence: string | undefined;
  /** Forget the lease at once (a commit was fenced: another node holds it). */
  drop(): void;
}

export interface RingWriterOptions {
  store: RingStore;
  holder: RingHolder;
  lease: Fence;
  masterKey: Buffer;
  clock: Clock;
  log: Logger;
  nodeId: string;
  lifetimes: Lifetimes;
}

/** What a change returns: the new document, or null for "nothing to do". */
export type RingChange = (doc: RingDocument, now: number) => RingDocument | null | Promise<RingDocument | null>;

const MAX_ATTEMPTS = 5;

/**
 * The only way the ring changes, used by the primary alone. Each change is applied to the
 * latest document and committed with a compare-and-set on the version, fenced by the lease.
 */
export class RingWriter {
  constructor(readonly options: RingWriterOptions) {}

  get lifetimes(): Lifetimes {
    return this.options.lifetimes;
  }

  /**
   * Applies `change` to the latest authenticated ring and commits it. With `repair`, a ring
   * in Redis that fails its authentication check (or is not a ring) is overwritten rather
   * than refused: the change then starts from an empty ring (the caller passes the good
   * ring it holds). A ring under another master key is never overwritten: that is a rewrap.
   */
  async update(audit: Omit<AuditEntry, 'actor'> & { actor?: string }, change: RingChange, { repair = false } = {}): Promise<RingSnapshot> {
    const { store, holder, lease, masterKey, clock, log, nodeId } = this.options;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const fence = lease.fence;
      if (!fence) throw new KeyfleetError('ERR_NOT_PRIMARY', `${nodeId} does not hold the primary lease`);
      const now = clock.now();
      let opened: OpenedRing | null;
      try {
        opened = await store.read();
      } catch (error) {
        const code = error instanceof KeyfleetError ? error.code : '';
        if (code === 'ERR_MASTER_KEY_MISMATCH') {
          // Someone rewrapped the ring under a new master key: never mix keys wrapped under two.
          throw new KeyfleetError('ERR_MASTER_KEY_MISMATCH', `the ring is wrapped under another master key; restart ${nodeId} with that key`);
        }
        if (!repair || (code !== 'ERR_RING_INTEGRITY' && code !== 'ERR_RING_FORMAT')) throw error;
        opened = null;
      }
      const stored = opened?.doc ?? null;
      const expected = stored?.version ?? (await store.readVersion());
      const base = stored ?? emptyRing(masterKeyId(masterKey), now);
      const changed = await change(base, now);
      const current = holder.current;
      if (changed === null) {
        if (current) return current;
        throw new KeyfleetError('ERR_RING_EMPTY', 'the key ring is empty');
      }
      const next: RingDocument = { ...changed, version: Math.max(expected, current?.version ?? 0) + 1, updatedAt: now };
      const result = await store.commit(expected, next, fence, { actor: nodeId, ...audit }, now);
      if (result.ok) {
        const snapshot = await RingSnapshot.open(next, masterKey, current, clock);
        await holder.adopt(snapshot);
        return snapshot;
      }
      if (result.reason === 'fenced') {
        lease.drop();
        throw new KeyfleetError('ERR_NOT_PRIMARY', `${nodeId} lost the primary lease before writing`);
      }
      log.debug({ attempt, expected, current: result.current }, 'ring changed underneath; retrying');
    }
    throw new KeyfleetError('ERR_RING_CONFLICT', `the ring kept changing; gave up after ${MAX_ATTEMPTS} attempts`);
  }
}
