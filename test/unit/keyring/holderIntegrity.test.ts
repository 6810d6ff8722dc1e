import { describe, expect, it } from 'vitest';
import { activeKey } from '../../../app/src/keyring/lifecycle.js';
import { sealRing } from '../../../app/src/keyring/seal.js';
import { buildRing, FakeClock, FakeStore, makeHolder, newMasterKey, revokeActive, rotateKey, T0 } from '../support/ring.js';

// A node and what Redis holds: a ring that fails its check is refused, the last good one is
// served, and the refusal is an alarm (health detail, log, audit), cleared by a good ring.

async function runningNode() {
  const masterKey = newMasterKey();
  const doc = await buildRing(masterKey);
  const store = new FakeStore(doc);
  const holder = makeHolder(store, masterKey, new FakeClock(T0));
  await holder.reload('start', { throwOnError: true });
  return { masterKey, doc, store, holder };
}

const tamper = (sealed: object, change: (copy: any) => void) => {
  const copy = JSON.parse(JSON.stringify(sealed));
  change(copy);
  return JSON.stringify(copy);
};

describe('RingHolder and a ring that fails its check', () => {
  it('keeps serving the last good ring, raises ERR_RING_INTEGRITY once, audits it, and clears it when a good ring returns', async () => {
    const { masterKey, doc, store, holder } = await runningNode();
    const revoked = revokeActive(doc, 'sign', T0 + 1);
    store.doc = revoked;
    await holder.reload('revoke');
    const kid = revoked.keys.find((key) => key.state === 'revoked')!.kid;
    expect(holder.current!.verifier('sign', kid)).toBeUndefined();

    // The attacker flips the revoked key back to active and bumps the version.
    store.raw = tamper(sealRing(masterKey, revoked), (copy) => {
      copy.keys.find((key: any) => key.kid === kid).state = 'active';
      copy.version += 1;
    });
    const alarms: unknown[] = [];
    holder.on('alarm', (alarm) => alarms.push(alarm?.code));
    await holder.reload('announced');
    await holder.reload('periodic');
    expect(holder.current!.version).toBe(revoked.version);
    expect(holder.current!.verifier('sign', kid)).toBeUndefined();
    expect(holder.alarm?.code).toBe('ERR_RING_INTEGRITY');
    expect(alarms).toEqual(['ERR_RING_INTEGRITY']);
    expect(store.audits).toEqual([expect.objectContaining({ action: 'integrity-alarm', detail: expect.stringMatching(/^ERR_RING_INTEGRITY/) })]);
    expect(JSON.stringify(store.audits)).not.toMatch(/material|v1\./);

    store.raw = undefined;
    store.doc = await rotateKey(revoked, 'encrypt', T0 + 2, masterKey);
    await holder.reload('announced');
    expect(holder.alarm).toBeUndefined();
    expect(holder.current!.version).toBe(store.doc.version);
  });

  it('keeps re-reading while an alarm stands, even when the version key has not moved (it is as writable as the ring)', async () => {
    const { masterKey, doc, store, holder } = await runningNode();
    store.raw = tamper(sealRing(masterKey, doc), (copy) => (copy.keys[0].createdAt += 1)); // same version
    await holder.reload('announced');
    expect(holder.alarm?.code).toBe('ERR_RING_INTEGRITY');
    store.raw = undefined; // the good ring is back, at the same version
    await holder.reloadIfChanged();
    expect(holder.alarm).toBeUndefined();
  });

  it('leaves a starting node without a ring (not ready) and says why, rather than trusting or crashing', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const store = new FakeStore(doc);
    const holder = makeHolder(store, masterKey, new FakeClock(T0));
    store.masterKey = masterKey;
    store.raw = tamper(sealRing(masterKey, doc), (copy) => (copy.keys[0].createdAt += 1));
    await holder.reload('start', { throwOnError: true });
    expect(holder.current).toBeUndefined();
    expect(holder.alarm?.code).toBe('ERR_RING_INTEGRITY');
  });

  it('refuses an older ring replayed into Redis: a running node by its memory, a starting node by its peers', async () => {
    const { masterKey, doc, store, holder } = await runningNode();
    const newer = await rotateKey(doc, 'sign', T0 + 1, masterKey);
    store.doc = newer;
    await holder.reload('rotate');
    const oldSealed = JSON.stringify(sealRing(masterKey, doc)); // a valid MAC: captured earlier
    store.raw = oldSealed;
    await holder.reload('announced');
    expect(holder.current!.version).toBe(newer.version);
    expect(holder.alarm?.code).toBe('ERR_RING_ROLLBACK');

    const starting = makeHolder(store, masterKey, new FakeClock(T0), undefined, async () => [{ id: 'node-2', ringId: newer.ringId, ringVersion: newer.version }]);
    await starting.reload('start', { throwOnError: true });
    expect(starting.current).toBeUndefined();
    expect(starting.alarm?.code).toBe('ERR_RING_ROLLBACK');
  });

  it('does not mistake a commit landing while a starting node reads for a rollback (peers are read before the ring)', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const newer = await rotateKey(doc, 'sign', T0 + 1, masterKey);
    const store = new FakeStore(doc);
    // The primary commits `newer` and reports it in its heartbeat just as the peers are read.
    const peers = async () => {
      store.doc = newer;
      return [{ id: 'node-1', ringId: newer.ringId, ringVersion: newer.version }];
    };
    const starting = makeHolder(store, masterKey, new FakeClock(T0), undefined, peers);
    await starting.reload('start', { throwOnError: true });
    expect(starting.alarm).toBeUndefined();
    expect(starting.current?.version).toBe(newer.version);
  });

  it('refuses another ring sealed under the same master key (ERR_RING_SWAPPED)', async () => {
    const { masterKey, store, holder } = await runningNode();
    const other = { ...(await buildRing(masterKey, T0 + 5)), version: 50 };
    store.doc = other;
    await holder.reload('announced');
    expect(holder.alarm?.code).toBe('ERR_RING_SWAPPED');
    expect(holder.current!.document.ringId).not.toBe(other.ringId);
  });

  it('accepts a format-1 ring until it has seen format 2, and never after (ERR_RING_DOWNGRADE)', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const { ringId: _id, ...rest } = doc;
    const v1 = JSON.stringify({ ...rest, format: 1 });
    const store = new FakeStore(doc);
    store.raw = v1;
    const holder = makeHolder(store, masterKey, new FakeClock(T0));
    await holder.reload('start', { throwOnError: true });
    expect(holder.current!.document.ringId).toBe('legacy');
    expect(activeKey(holder.current!.document, 'sign')).toBeDefined();

    store.raw = undefined; // the primary upgraded it
    store.doc = { ...doc, version: doc.version + 1 };
    await holder.reload('announced');
    expect(holder.current!.document.ringId).toBe(doc.ringId);

    store.raw = JSON.stringify({ ...rest, format: 1, version: doc.version + 5 });
    await holder.reload('announced');
    expect(holder.alarm?.code).toBe('ERR_RING_DOWNGRADE');
    expect(holder.current!.document.ringId).toBe(doc.ringId);
  });

  it('refuses to start under the wrong master key (the operator must fix KEYRING_MASTER_KEY)', async () => {
    const ringKey = newMasterKey();
    const store = new FakeStore(null);
    store.raw = JSON.stringify(sealRing(ringKey, await buildRing(ringKey)));
    const holder = makeHolder(store, newMasterKey(), new FakeClock(T0));
    await expect(holder.reload('start', { throwOnError: true })).rejects.toMatchObject({ code: 'ERR_MASTER_KEY_MISMATCH' });
  });
});
