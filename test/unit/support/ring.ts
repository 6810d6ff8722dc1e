import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { generateKey } from '../../../app/src/keyring/generate.js';
import { RingHolder, type PeerRing } from '../../../app/src/keyring/holder.js';
import { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import { openRing, sealRing, type OpenedRing } from '../../../app/src/keyring/seal.js';
import { activate, activeKey, emptyRing, revoke, stage, type Lifetimes } from '../../../app/src/keyring/lifecycle.js';
import type { AuditEntry, RingStore } from '../../../app/src/keyring/store.js';
import { PURPOSES, type Purpose, type RingDocument } from '../../../app/src/keyring/types.js';
import { masterKeyId } from '../../../app/src/keyring/wrap.js';
import type { Clock } from '../../../app/src/lib/clock.js';
import { createLogger } from '../../../app/src/lib/log.js';
import { KeyfleetError } from '../../../app/src/lib/errors.js';

// Shared fixtures for unit tests: a real ring built with the real lifecycle functions, a fake
// store, a controllable clock. No Redis, no timers.

/** 2026-01-01T00:00:00Z: a fixed starting instant. */
export const T0 = Date.UTC(2026, 0, 1);

export const LIFETIMES: Lifetimes = {
  sign: 15 * 60_000,
  encrypt: 8 * 3_600_000,
  cookie: 8 * 3_600_000,
  clockSkewMs: 30_000,
};

export const silentLog = createLogger('silent');

export const newMasterKey = () => randomBytes(32);

export class FakeClock implements Clock {
  constructor(public t: number = T0) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Stages and activates a fresh key for `purpose`, retiring the previous active one. */
export async function rotateKey(doc: RingDocument, purpose: Purpose, now: number, masterKey: Buffer): Promise<RingDocument> {
  const key = await generateKey(purpose, now, masterKey);
  const staged = stage(doc, key, now);
  return { ...activate(staged, key.kid, now, LIFETIMES), version: doc.version + 1 };
}

/** A ring with one active key per purpose, at version 1. */
export async function buildRing(masterKey: Buffer, now: number = T0): Promise<RingDocument> {
  let doc = emptyRing(masterKeyId(masterKey), now);
  for (const purpose of PURPOSES) {
    const key = await generateKey(purpose, now, masterKey);
    doc = activate(stage(doc, key, now), key.kid, now, LIFETIMES);
  }
  return { ...doc, version: 1 };
}

export function revokeActive(doc: RingDocument, purpose: Purpose, now: number): RingDocument {
  const active = activeKey(doc, purpose);
  if (!active) throw new Error(`no active ${purpose} key`);
  return { ...revoke(doc, active.kid, now, LIFETIMES), version: doc.version + 1 };
}

/**
 * A stand-in for RingStore: holds one document (sealed under the master key when read, as
 * Redis holds it), counts reads, can be made to fail, or to return raw text of a test's own.
 */
export class FakeStore {
  reads = 0;
  versionReads = 0;
  failWith: Error | undefined;
  /** When set, what Redis "holds" instead of the sealed `doc` (tampering tests). */
  raw: string | undefined;
  masterKey: Buffer | undefined;
  readonly audits: AuditEntry[] = [];
  constructor(public doc: RingDocument | null) {}

  async readRaw(): Promise<string | null> {
    this.reads++;
    if (this.failWith) throw this.failWith;
    if (this.raw !== undefined) return this.raw;
    if (this.doc === null) return null;
    if (!this.masterKey) throw new Error('FakeStore: no master key to seal with (use makeHolder)');
    return JSON.stringify(sealRing(this.masterKey, this.doc));
  }

  async read(): Promise<OpenedRing | null> {
    const raw = await this.readRaw();
    return raw === null ? null : openRing(this.masterKey!, raw);
  }

  async audit(entry: AuditEntry): Promise<void> {
    this.audits.push(entry);
  }

  async readVersion(): Promise<number> {
    this.versionReads++;
    if (this.failWith) throw this.failWith;
    return this.doc?.version ?? 0;
  }
}

export function makeHolder(
  store: FakeStore,
  masterKey: Buffer,
  clock: Clock,
  unknownKidReloadIntervalMs?: number,
  peers?: () => Promise<PeerRing[]>,
  currentForMs?: number,
): RingHolder {
  store.masterKey ??= masterKey;
  return new RingHolder({
    peers,
    currentForMs,
    store: store as unknown as RingStore,
    subscriber: {} as unknown as Redis,
    masterKey,
    clock,
    log: silentLog,
    reloadIntervalMs: 5_000,
    unknownKidReloadIntervalMs,
  });
}

/**
 * A loaded holder over a fresh ring. In sync by default (its heartbeats acknowledged, for as
 * long as the test runs): a kid it does not know is then refused without a read.
 */
export async function loadedHolder(now: number = T0, { inSync = true } = {}) {
  const masterKey = newMasterKey();
  const doc = await buildRing(masterKey, now);
  const store = new FakeStore(doc);
  const clock = new FakeClock(now);
  const holder = makeHolder(store, masterKey, clock, undefined, undefined, inSync ? Number.POSITIVE_INFINITY : undefined);
  await holder.reload('test', { throwOnError: true });
  if (inSync) holder.markCurrent(now);
  return { masterKey, doc, store, clock, holder, ring: holder.current! };
}

/** Opens `doc` with a clock at the document's own time (the tests' rings live around T0, not now). */
export function snapshotAt(doc: RingDocument, masterKey: Buffer, previous?: RingSnapshot): Promise<RingSnapshot> {
  return RingSnapshot.open(doc, masterKey, previous, new FakeClock(doc.updatedAt));
}

/** Runs `fn` and returns the KeyfleetError it throws (fails the test on anything else). */
export async function caught(fn: () => unknown): Promise<KeyfleetError> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof KeyfleetError) return error;
    throw new Error(`expected a KeyfleetError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected a KeyfleetError, nothing was thrown');
}

/** Flips one byte in the middle of a base64url segment, keeping it valid base64url. */
export function flipByte(segment: string): string {
  const bytes = Buffer.from(segment, 'base64url');
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0x01;
  return bytes.toString('base64url');
}

export const b64json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
