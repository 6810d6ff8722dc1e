import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { CommandChannel, Reply } from '../../../app/src/cluster/commands.js';
import type { PrimaryLease } from '../../../app/src/cluster/lease.js';
import { PrimaryDuty, type PrimaryDutyOptions } from '../../../app/src/cluster/primary.js';
import type { AuditEntry, CommitResult, HeldRing, NodeDirectory, NodeRingState, RingCommitter, RingReader } from '../../../app/src/keyring/ports.js';
import { openRing, sealRing, type OpenedRing } from '../../../app/src/keyring/seal.js';
import type { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import type { Purpose, RingDocument } from '../../../app/src/keyring/types.js';
import { RingWriter } from '../../../app/src/keyring/writer.js';
import type { Clock } from '../../../app/src/lib/clock.js';
import { LIFETIMES, newMasterKey, T0 } from './ring.js';

// In-memory fakes of the write side's interfaces (keyring/ports.ts, cluster/commands.ts,
// cluster/lease.ts): the primary, the writer and rotation run on them with a clock that
// moves only when told to, or when they sleep on it. No Redis, no timers of real length.

/** A clock whose sleep advances it (after letting other tasks run): minutes pass at once. */
export class ManualClock implements Clock {
  constructor(public t: number = T0) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  async sleep(ms: number): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.t += ms;
  }
}

/** Lets every pending promise chain and I/O callback run. */
export const settle = async (rounds = 5) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** Awaits a condition by letting tasks run; fails after `rounds` (nothing here needs wall time). */
export async function until(condition: () => boolean, what: string, rounds = 2_000): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never happened: ${what}`);
}

/**
 * Redis as the write side sees it: the sealed ring, its version, the lease key (which fences
 * commits, as COMMIT_SCRIPT does), the audit stream, replicas.
 */
export class MemoryRing implements RingReader, RingCommitter {
  raw: string | null = null;
  version = 0;
  /** The lease key's value: commits with another fence are refused. */
  leaseToken: string | undefined;
  replicas = 0;
  readonly audits: (AuditEntry & { version: number; at: number })[] = [];
  readonly commits: { doc: RingDocument; audit: AuditEntry }[] = [];
  constructor(readonly masterKey: Buffer) {}

  get doc(): RingDocument | null {
    return this.raw === null ? null : openRing(this.masterKey, this.raw).doc;
  }

  async read(): Promise<OpenedRing | null> {
    return this.raw === null ? null : openRing(this.masterKey, this.raw);
  }

  async readVersion(): Promise<number> {
    return this.version;
  }

  async commit(expectedVersion: number, doc: RingDocument, fence: string | undefined, audit: AuditEntry, now: number): Promise<CommitResult> {
    if (this.version !== expectedVersion) return { ok: false, reason: 'conflict', current: this.version };
    if (fence !== undefined && fence !== this.leaseToken) return { ok: false, reason: 'fenced', current: this.version };
    this.raw = JSON.stringify(sealRing(this.masterKey, doc));
    this.version = doc.version;
    this.commits.push({ doc, audit });
    this.audits.push({ ...audit, version: doc.version, at: now });
    return { ok: true, version: doc.version };
  }

  async audit(entry: AuditEntry, now: number): Promise<void> {
    this.audits.push({ ...entry, version: this.version, at: now });
  }

  async waitForReplicas(): Promise<number> {
    return this.replicas;
  }

  actions(): string[] {
    return this.audits.map((entry) => entry.action);
  }
}

/** The lease, kept in MemoryRing.leaseToken; `steal` hands it to another node behind this one's back. */
export class MemoryLease implements PrimaryLease {
  private token: string | undefined;
  dropped = 0;
  constructor(
    private readonly ring: MemoryRing,
    private readonly nodeId = 'node-1',
  ) {}

  get fence(): string | undefined {
    return this.token;
  }

  get held(): boolean {
    return this.token !== undefined;
  }

  async acquireOrRenew(): Promise<boolean> {
    if (this.token !== undefined && this.ring.leaseToken === this.token) return true;
    this.token = undefined;
    if (this.ring.leaseToken !== undefined) return false;
    this.token = `${this.nodeId}/${Math.random().toString(16).slice(2)}`;
    this.ring.leaseToken = this.token;
    return true;
  }

  async release(): Promise<void> {
    if (this.ring.leaseToken === this.token) this.ring.leaseToken = undefined;
    this.token = undefined;
  }

  drop(): void {
    this.dropped++;
    this.token = undefined;
  }

  /** Another node takes the lease (this one's expired unnoticed, say). */
  steal(by = 'node-2'): void {
    this.ring.leaseToken = `${by}/stolen`;
  }
}

export class MemoryHolder implements HeldRing {
  current: RingSnapshot | undefined;
  async adopt(snapshot: RingSnapshot): Promise<void> {
    this.current = snapshot;
  }
}

/**
 * Live nodes and the ring version each has loaded. A `following` node loads whatever the
 * ring holds after `lag` polls; a stuck one stays where it is.
 */
export class MemoryNodes implements NodeDirectory {
  polls = 0;
  /** Called on every poll, before answering (a test acts mid-rotation here). */
  onPoll: ((poll: number) => void) | undefined;
  private readonly nodes = new Map<string, { version: number; following: boolean; lag: number; seen: number }>();
  constructor(private readonly ring: MemoryRing) {}

  following(id: string, lag = 0): this {
    this.nodes.set(id, { version: 0, following: true, lag, seen: 0 });
    return this;
  }

  stuck(id: string, version = 0): this {
    this.nodes.set(id, { version, following: false, lag: 0, seen: 0 });
    return this;
  }

  remove(id: string): void {
    this.nodes.delete(id);
  }

  async liveNodes(): Promise<NodeRingState[]> {
    this.onPoll?.(++this.polls);
    const nodes: NodeRingState[] = [];
    for (const [id, node] of this.nodes) {
      if (node.following && node.version < this.ring.version) {
        if (node.seen >= node.lag) {
          node.version = this.ring.version;
          node.seen = 0;
        } else node.seen++;
      }
      nodes.push({ id, ringVersion: node.version });
    }
    return nodes.sort((a, b) => a.id.localeCompare(b.id));
  }
}

/** Operators' commands as an in-memory queue; replies recorded per command id. */
export class MemoryCommands implements CommandChannel {
  readonly replies = new Map<string, Reply[]>();
  pops = 0;
  /** Make the next `n` pops fail (Redis away). */
  failPops = 0;
  /** Make every reply fail (the reply stream cannot be written). */
  failReplies = false;
  private readonly queue: string[] = [];
  private waiting: (() => void) | undefined;

  push(...raw: string[]): void {
    this.queue.push(...raw);
    this.waiting?.();
  }

  async pop(): Promise<string | null> {
    this.pops++;
    if (this.failPops > 0) {
      this.failPops--;
      throw new Error('Connection is closed.');
    }
    if (this.queue.length === 0) {
      // Blocks like BLPOP until something is pushed or the test wakes it (close).
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = undefined;
    }
    return this.queue.shift() ?? null;
  }

  /** Wakes a blocked pop with nothing (as BLPOP's timeout does). */
  wake(): void {
    this.waiting?.();
  }

  async reply(id: string, message: Reply): Promise<void> {
    if (this.failReplies) throw new Error('Connection is closed.');
    this.replies.set(id, [...(this.replies.get(id) ?? []), message]);
  }

  last(id: string): Reply | undefined {
    return this.replies.get(id)?.at(-1);
  }
}

/** A logger whose lines the test reads back. */
export function capturedLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** Records what the primary reports to metrics. */
export class RecordingObserver {
  readonly leases: boolean[] = [];
  readonly rotations: { purpose: Purpose; ok: boolean }[] = [];
  leaseChanged(held: boolean): void {
    this.leases.push(held);
  }
  rotationRun(purpose: Purpose, ok: boolean): void {
    this.rotations.push({ purpose, ok });
  }
}

export const ROTATION_INTERVAL_MS = 24 * 3_600_000;
export const CONFIRM_TIMEOUT_MS = 30_000;

/** A primary on fakes: one world (ring, lease, nodes, commands) and the duty itself. */
export function primaryWorld(overrides: Partial<PrimaryDutyOptions> = {}) {
  const masterKey = newMasterKey();
  const clock = new ManualClock(T0);
  const ring = new MemoryRing(masterKey);
  const lease = new MemoryLease(ring);
  const holder = new MemoryHolder();
  const nodes = new MemoryNodes(ring);
  const commands = new MemoryCommands();
  const observer = new RecordingObserver();
  const { log, lines } = capturedLog();
  const writer = new RingWriter({ store: ring, holder, lease, masterKey, clock, log, nodeId: 'node-1', lifetimes: LIFETIMES });
  const duty = new PrimaryDuty({
    role: 'auto',
    nodes,
    commands,
    store: ring,
    holder,
    lease,
    writer,
    clock,
    log,
    masterKey,
    rotationIntervalMs: ROTATION_INTERVAL_MS,
    confirmTimeoutMs: CONFIRM_TIMEOUT_MS,
    metrics: observer,
    prepublishMs: 0,
    ...overrides,
  });
  return { masterKey, clock, ring, lease, holder, nodes, commands, observer, log, lines, writer, duty };
}
