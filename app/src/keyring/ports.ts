import type { OpenedRing } from './seal.js';
import type { RingSnapshot } from './snapshot.js';
import type { RingDocument } from './types.js';

// What the write side (RingWriter, rotation, the primary's duties) needs of the world, as
// narrow interfaces defined here, on the side that uses them. Redis-backed classes implement
// them (RingStore, RingHolder, cluster's Lease and HeartbeatDirectory); unit tests pass
// in-memory fakes and a clock of their own (lib/clock.ts), so rotation runs in milliseconds.

/** Who changed the ring and how; appended to the audit stream with the new version. */
export interface AuditEntry {
  actor: string;
  action: string;
  purpose?: string;
  kid?: string;
  detail?: string;
}

export type CommitResult = { ok: true; version: number } | { ok: false; reason: 'conflict' | 'fenced'; current: number };

/** Reads the stored ring, authenticated (RingStore). */
export interface RingReader {
  /** The ring, or null when there is none; throws ERR_RING_INTEGRITY, _FORMAT or ERR_MASTER_KEY_MISMATCH. */
  read(): Promise<OpenedRing | null>;
  /** The stored version (0 when there is none). */
  readVersion(): Promise<number>;
}

/** Writes the ring, atomically and fenced (RingStore). */
export interface RingCommitter {
  /** Writes `doc` if the store still holds `expectedVersion` and, with a `fence`, only while the lease carries it. */
  commit(expectedVersion: number, doc: RingDocument, fence: string | undefined, audit: AuditEntry, now: number): Promise<CommitResult>;
  /** An audit entry for something that did not change the ring (a blocked rotation, say). */
  audit(entry: AuditEntry, now: number): Promise<void>;
  /** How many replicas acknowledged every write so far, waiting at most `timeoutMs` (Redis WAIT). */
  waitForReplicas(replicas: number, timeoutMs: number): Promise<number>;
}

/** The ring this node serves from (RingHolder): a committed ring is adopted at once. */
export interface HeldRing {
  readonly current: RingSnapshot | undefined;
  adopt(snapshot: RingSnapshot): Promise<void>;
}

/** What the writer needs of the primary lease: its token while held, and a way to let go. */
export interface Fence {
  /** The lease token while this node believes it holds the lease; undefined otherwise. */
  readonly fence: string | undefined;
  /** Forget the lease at once (a commit was fenced: another node holds it). */
  drop(): void;
}

/** One live node as the write side sees it: which ring version it has loaded. */
export interface NodeRingState {
  id: string;
  ringVersion: number;
}

/**
 * The live nodes (cluster/heartbeat.ts reads them from heartbeats): propagate-then-activate
 * waits until every one of them reports a version.
 */
export interface NodeDirectory {
  liveNodes(): Promise<NodeRingState[]>;
}
