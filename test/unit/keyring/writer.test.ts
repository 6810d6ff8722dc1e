import { describe, expect, it } from 'vitest';
import type { Lease } from '../../../app/src/cluster/lease.js';
import { RingHolder } from '../../../app/src/keyring/holder.js';
import { activeKey, revoke } from '../../../app/src/keyring/lifecycle.js';
import { openRing, sealRing } from '../../../app/src/keyring/seal.js';
import type { AuditEntry, CommitResult, RingStore } from '../../../app/src/keyring/store.js';
import type { RingDocument } from '../../../app/src/keyring/types.js';
import { RingWriter } from '../../../app/src/keyring/writer.js';
import { buildRing, caught, FakeClock, LIFETIMES, newMasterKey, silentLog, T0 } from '../support/ring.js';

// The only way the ring changes: applied to the latest authenticated ring, committed with a
// compare-and-set on the version, fenced by the lease. Redis is a map in memory here.

class MemoryRedisRing {
  raw: string | null = null;
  version = 0;
  commits: { doc: RingDocument; audit: AuditEntry }[] = [];
  /** Called before each commit: a test changes the ring "underneath" here. */
  beforeCommit: (() => void) | undefined;
  fenced = false;
  constructor(private readonly masterKey: Buffer) {}

  asStore(): RingStore {
    return {
      readRaw: async () => this.raw,
      read: async () => (this.raw === null ? null : openRing(this.masterKey, this.raw)),
      readVersion: async () => this.version,
      commit: async (expected: number, doc: RingDocument, _fence: string | undefined, audit: AuditEntry): Promise<CommitResult> => {
        this.beforeCommit?.();
        this.beforeCommit = undefined;
        if (this.fenced) return { ok: false, reason: 'fenced', current: this.version };
        if (expected !== this.version) return { ok: false, reason: 'conflict', current: this.version };
        this.raw = JSON.stringify(sealRing(this.masterKey, doc));
        this.version = doc.version;
        this.commits.push({ doc, audit });
        return { ok: true, version: doc.version };
      },
      audit: async () => undefined,
    } as unknown as RingStore;
  }

  put(doc: RingDocument) {
    this.raw = JSON.stringify(sealRing(this.masterKey, doc));
    this.version = doc.version;
  }
}

function setup() {
  const masterKey = newMasterKey();
  const redis = new MemoryRedisRing(masterKey);
  const clock = new FakeClock(T0);
  const store = redis.asStore();
  const holder = new RingHolder({ store, subscriber: {} as never, masterKey, clock, log: silentLog, reloadIntervalMs: 5_000 });
  let fence: string | undefined = 'node-1/abc';
  let dropped = 0;
  const lease = {
    get fence() {
      return fence;
    },
    drop: () => {
      dropped++;
      fence = undefined;
    },
  } as unknown as Lease;
  const writer = new RingWriter({ store, holder, lease, masterKey, clock, log: silentLog, nodeId: 'node-1', lifetimes: LIFETIMES });
  return { masterKey, redis, holder, writer, clock, loseLease: () => (fence = undefined), dropped: () => dropped };
}

describe('RingWriter.update', () => {
  it('commits a change on the latest ring at the next version, seals it, and adopts it', async () => {
    const { masterKey, redis, holder, writer } = setup();
    redis.put(await buildRing(masterKey));
    const kid = activeKey(openRing(masterKey, redis.raw!).doc, 'sign')!.kid;
    const snapshot = await writer.update({ action: 'revoke', kid }, (doc, now) => revoke(doc, kid, now, LIFETIMES));
    expect(snapshot.version).toBe(2);
    expect(holder.current).toBe(snapshot);
    expect(openRing(masterKey, redis.raw!).doc.keys.find((key) => key.kid === kid)!.state).toBe('revoked');
    expect(redis.commits[0]!.audit).toMatchObject({ actor: 'node-1', action: 'revoke', kid });
  });

  it('retries on a conflict with the ring as it now is', async () => {
    const { masterKey, redis, writer } = setup();
    const doc = await buildRing(masterKey);
    redis.put(doc);
    redis.beforeCommit = () => redis.put({ ...doc, version: 5 }); // another writer got there first
    const seen: number[] = [];
    await writer.update({ action: 'test' }, (latest) => {
      seen.push(latest.version);
      return latest;
    });
    expect(seen).toEqual([1, 5]);
    expect(redis.version).toBe(6);
  });

  it('refuses to write without the lease, and drops it when the commit is fenced', async () => {
    const { masterKey, redis, writer, loseLease, dropped } = setup();
    redis.put(await buildRing(masterKey));
    redis.fenced = true;
    expect((await caught(() => writer.update({ action: 'test' }, (doc) => doc))).code).toBe('ERR_NOT_PRIMARY');
    expect(dropped()).toBe(1);
    loseLease();
    expect((await caught(() => writer.update({ action: 'test' }, (doc) => doc))).code).toBe('ERR_NOT_PRIMARY');
  });

  it('refuses a tampered ring, unless repairing, and never overwrites a ring of another master key', async () => {
    const { masterKey, redis, writer } = setup();
    const good = await buildRing(masterKey);
    redis.put(good);
    const tampered = JSON.parse(redis.raw!);
    tampered.keys[0].state = 'revoked';
    redis.raw = JSON.stringify(tampered);
    expect((await caught(() => writer.update({ action: 'test' }, (doc) => doc))).code).toBe('ERR_RING_INTEGRITY');
    const repaired = await writer.update({ action: 'integrity-restore' }, () => good, { repair: true });
    expect(repaired.version).toBe(2);
    expect(openRing(masterKey, redis.raw!).doc.keys[0]!.state).toBe('active');

    const other = newMasterKey();
    redis.raw = JSON.stringify(sealRing(other, { ...good, masterKeyId: openRing(masterKey, redis.raw!).doc.masterKeyId.replace(/./, (first) => (first === 'x' ? 'y' : 'x')) }));
    expect((await caught(() => writer.update({ action: 'test' }, () => good, { repair: true }))).code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it('returns the ring held when the change has nothing to do', async () => {
    const { masterKey, redis, holder, writer } = setup();
    redis.put(await buildRing(masterKey));
    await holder.reload('start', { throwOnError: true });
    expect(await writer.update({ action: 'noop' }, () => null)).toBe(holder.current);
    expect(redis.commits).toHaveLength(0);
  });
});
