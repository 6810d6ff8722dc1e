import { describe, expect, it } from 'vitest';
import { generateKey } from '../../../app/src/keyring/generate.js';
import { activeKey, findKey, revoke, stage, stagedKey } from '../../../app/src/keyring/lifecycle.js';
import { rotate, stageNextKey, waitForNodes, type RotationProgress } from '../../../app/src/keyring/rotation.js';
import type { RingDocument } from '../../../app/src/keyring/types.js';
import type { RingWriter } from '../../../app/src/keyring/writer.js';
import { buildRing, caught, FakeClock, LIFETIMES, newMasterKey, T0 } from '../support/ring.js';
import { ManualClock, MemoryNodes, type MemoryRing } from '../support/writeSide.js';

// Rotation as the primary runs it, on a ring held in memory: pre-publication of the next
// signing key, the refusal before its window, the emergency path. No Redis: no live nodes
// to wait for (propagation is proven against real nodes in test/integration).

const PREPUBLISH = 30 * 60_000;

/** Applies changes to one document like RingWriter (version + 1 per change), and records them. */
class FakeWriter {
  readonly lifetimes = LIFETIMES;
  readonly changes: { action: string; kid?: string; detail?: string; hasActor: boolean }[] = [];
  readonly options = { store: { waitForReplicas: async () => 0, audit: async () => undefined }, nodeId: 'node-1' };
  constructor(
    public doc: RingDocument,
    private readonly clock: FakeClock,
  ) {}

  async update(audit: { action: string; kid?: string; detail?: string }, change: (doc: RingDocument, now: number) => RingDocument | null | Promise<RingDocument | null>) {
    const changed = await change(this.doc, this.clock.now());
    if (changed !== null) {
      this.doc = { ...changed, version: this.doc.version + 1 };
      this.changes.push({ action: audit.action, kid: audit.kid, detail: audit.detail, hasActor: 'actor' in audit });
    }
    return { version: this.doc.version, document: this.doc };
  }
}

const noNodes = { liveNodes: async () => [] };

/** A ring with one active key per purpose and a next signing key, all made at T0. */
async function setup({ withNext = true } = {}) {
  const masterKey = newMasterKey();
  let doc = await buildRing(masterKey, T0);
  if (withNext) doc = stage(doc, await generateKey('sign', T0, masterKey), T0);
  const clock = new FakeClock(T0);
  const writer = new FakeWriter(doc, clock);
  const progress: RotationProgress[] = [];
  const run = (purpose: 'sign' | 'encrypt', extra: { emergency?: boolean; prepublishMs?: number } = {}) =>
    rotate(purpose, {
      writer: writer as unknown as RingWriter,
      nodes: noNodes,
      clock,
      masterKey,
      confirmTimeoutMs: 1_000,
      pollMs: 1,
      prepublishMs: PREPUBLISH,
      onProgress: (p) => progress.push(p),
      ...extra,
    });
  return { writer, clock, progress, run, masterKey, next: stagedKey(doc, 'sign'), active: activeKey(doc, 'sign')! };
}

describe('rotate(sign): routine', () => {
  it('promotes the next key once it has been published for JWKS_PREPUBLISH, then publishes a new next key', async () => {
    const { writer, clock, progress, run, next, active } = await setup();
    clock.advance(PREPUBLISH);
    const outcome = await run('sign');
    expect(outcome).toMatchObject({ ok: true, kid: next!.kid, publishedAt: T0, pending: [] });
    expect(outcome.emergency).toBeUndefined();
    expect(activeKey(writer.doc, 'sign')?.kid).toBe(next!.kid);
    expect(findKey(writer.doc, active.kid)).toMatchObject({ state: 'retired', deleteAfter: T0 + PREPUBLISH + LIFETIMES.sign + LIFETIMES.clockSkewMs });
    const newNext = stagedKey(writer.doc, 'sign')!;
    expect(outcome.next).toBe(newNext.kid);
    expect(newNext.createdAt).toBe(T0 + PREPUBLISH);
    expect(writer.changes.map((c) => c.action)).toEqual(['activate', 'stage']);
    expect(progress.map((p) => p.phase)).toEqual(['staged', 'confirming', 'active', 'next']);
  });

  it('refuses while the next key is younger than the window, changing nothing, and says from when', async () => {
    const { writer, clock, run, next } = await setup();
    clock.advance(PREPUBLISH - 1);
    const before = writer.doc;
    const outcome = await run('sign');
    expect(outcome).toMatchObject({ ok: false, kid: next!.kid, publishedAt: T0, notBefore: T0 + PREPUBLISH, pending: [] });
    expect(writer.doc).toBe(before);
    // A tick later it goes through.
    clock.advance(1);
    expect((await run('sign')).ok).toBe(true);
  });

  it('without a next key (a ring from before pre-publication), stages one and refuses until it is published long enough', async () => {
    const { writer, clock, run } = await setup({ withNext: false });
    clock.advance(24 * 3_600_000);
    const outcome = await run('sign');
    const staged = stagedKey(writer.doc, 'sign')!;
    expect(outcome).toMatchObject({ ok: false, kid: staged.kid, publishedAt: clock.now(), notBefore: clock.now() + PREPUBLISH });
    expect(writer.changes.map((c) => c.action)).toEqual(['stage']);
  });

  it('with JWKS_PREPUBLISH 0 promotes at once, as before pre-publication', async () => {
    const { writer, run } = await setup({ withNext: false });
    const outcome = await run('sign', { prepublishMs: 0 });
    expect(outcome.ok).toBe(true);
    expect(activeKey(writer.doc, 'sign')?.kid).toBe(outcome.kid);
    expect(stagedKey(writer.doc, 'sign')?.kid).toBe(outcome.next);
  });
});

describe('rotate(sign): emergency (--now)', () => {
  it('activates a fresh key at once, revokes the next key and publishes a new one', async () => {
    const { writer, run, next, active } = await setup();
    const outcome = await run('sign', { emergency: true });
    expect(outcome).toMatchObject({ ok: true, emergency: true, revokedNext: next!.kid });
    expect(outcome.kid).not.toBe(next!.kid);
    expect(activeKey(writer.doc, 'sign')?.kid).toBe(outcome.kid);
    expect(findKey(writer.doc, next!.kid)?.state).toBe('revoked');
    expect(findKey(writer.doc, active.kid)?.state).toBe('retired');
    expect(stagedKey(writer.doc, 'sign')?.kid).toBe(outcome.next);
    expect(writer.changes.map((c) => c.action)).toEqual(['stage', 'activate', 'stage']);
    expect(writer.changes[0]!.detail).toContain(`revoked next key ${next!.kid}`);
  });
});

describe('stageNextKey', () => {
  it('stages a next key once, and leaves the actor to the writer when none is given', async () => {
    const { writer, masterKey } = await setup({ withNext: false });
    const first = await stageNextKey('sign', writer as unknown as RingWriter, masterKey);
    const again = await stageNextKey('sign', writer as unknown as RingWriter, masterKey);
    expect(again).toEqual(first);
    expect(stagedKey(writer.doc, 'sign')?.kid).toBe(first.kid);
    expect(writer.changes).toEqual([{ action: 'stage', kid: first.kid, detail: 'next key, published in the JWKS', hasActor: false }]);
  });
});

describe('rotate(encrypt): not pre-published', () => {
  it('stages, confirms and activates at once whatever the window, and stages no next key', async () => {
    const { writer, run } = await setup();
    const outcome = await run('encrypt');
    expect(outcome.ok).toBe(true);
    expect(outcome.notBefore).toBeUndefined();
    expect(outcome.next).toBeUndefined();
    expect(activeKey(writer.doc, 'encrypt')?.kid).toBe(outcome.kid);
    expect(stagedKey(writer.doc, 'encrypt')).toBeUndefined();
  });
});


describe('waitForNodes and activation, with live nodes', () => {
  it('reports each change of who confirmed, and times out by the clock naming the nodes that never did', async () => {
    const clock = new ManualClock(T0);
    const ring = { version: 5 } as MemoryRing;
    const nodes = new MemoryNodes(ring).following('node-1').following('node-2', 3).stuck('node-3', 4);
    const changes: [string[], string[]][] = [];
    const result = await waitForNodes(nodes, 5, { clock, timeoutMs: 10_000, pollMs: 100, onChange: (confirmed, pending) => changes.push([confirmed, pending]) });
    expect(changes).toEqual([
      [['node-1'], ['node-2', 'node-3']],
      [['node-1', 'node-2'], ['node-3']],
    ]);
    expect(result).toMatchObject({ confirmed: ['node-1', 'node-2'], pending: ['node-3'] });
    expect(clock.now() - T0).toBeGreaterThanOrEqual(10_000);
    expect(clock.now() - T0).toBeLessThan(10_000 + 200);
  });

  it('returns at once when no node is live, or when every node is already there', async () => {
    const clock = new ManualClock(T0);
    const ring = { version: 2 } as MemoryRing;
    expect(await waitForNodes(new MemoryNodes(ring), 2, { clock, timeoutMs: 10_000 })).toMatchObject({ nodes: [], pending: [] });
    expect(await waitForNodes(new MemoryNodes(ring).stuck('node-1', 9), 2, { clock, timeoutMs: 10_000 })).toMatchObject({ confirmed: ['node-1'], pending: [] });
    expect(clock.now()).toBe(T0);
  });

  it('refuses to activate a key revoked while the nodes were confirming it', async () => {
    const { writer, clock, masterKey } = await setup({ withNext: false });
    const ring = { version: 0 } as MemoryRing;
    const nodes = new MemoryNodes(ring).stuck('node-1', 0);
    let staged = '';
    nodes.onPoll = (poll) => {
      if (poll !== 2) return;
      staged = stagedKey(writer.doc, 'encrypt')!.kid;
      writer.doc = { ...revoke(writer.doc, staged, clock.now(), LIFETIMES), version: writer.doc.version + 1 };
      ring.version = 99; // and the node confirms
      nodes.remove('node-1');
    };
    const error = await caught(() =>
      rotate('encrypt', { writer: writer as unknown as RingWriter, nodes, clock: new ManualClock(T0), masterKey, confirmTimeoutMs: 5_000, pollMs: 1 }),
    );
    expect([error.code, error.status]).toEqual(['ERR_KEY_STATE', 409]);
    expect(findKey(writer.doc, staged)?.state).toBe('revoked');
  });
});
