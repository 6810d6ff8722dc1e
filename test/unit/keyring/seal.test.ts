import { describe, expect, it } from 'vitest';
import { revoke } from '../../../app/src/keyring/lifecycle.js';
import { beatAuthentic, beatMac, canonicalJson, openRing, sealRing } from '../../../app/src/keyring/seal.js';
import type { SealedRing } from '../../../app/src/keyring/types.js';
import { buildRing, caught, LIFETIMES, newMasterKey, T0 } from '../support/ring.js';

// Whoever can write to Redis but lacks the master key must not be able to change anything a
// node accepts or publishes. Each edit below is one an attacker with the nodes' Redis password
// can make to the stored JSON; each must fail the authentication check.

async function sealedRing() {
  const masterKey = newMasterKey();
  let doc = await buildRing(masterKey);
  const sign = doc.keys.find((key) => key.purpose === 'sign')!.kid;
  doc = { ...revoke(doc, sign, T0 + 1000, LIFETIMES), version: 2 };
  return { masterKey, doc, sealed: sealRing(masterKey, doc), revokedKid: sign };
}

const edit = (sealed: SealedRing, change: (copy: any) => void): string => {
  const copy = JSON.parse(JSON.stringify(sealed));
  change(copy);
  return JSON.stringify(copy);
};

describe('sealRing / openRing', () => {
  it('round-trips a sealed ring, whatever the order of its fields in storage', async () => {
    const { masterKey, doc, sealed } = await sealedRing();
    expect(openRing(masterKey, JSON.stringify(sealed))).toEqual({ doc, legacy: false });
    const reordered = Object.fromEntries(Object.entries(sealed).reverse());
    expect(openRing(masterKey, JSON.stringify(reordered)).doc).toEqual(doc);
  });

  it.each([
    ['flip a revoked key back to active', (copy: any, kid: string) => (copy.keys.find((k: any) => k.kid === kid).state = 'active')],
    ['drop a revoked key', (copy: any, kid: string) => (copy.keys = copy.keys.filter((k: any) => k.kid !== kid))],
    ['roll the version back', (copy: any) => (copy.version = 1)],
    ['move a deleteAfter', (copy: any) => (copy.keys[1].deleteAfter = 9e15)],
    ['change an activation time', (copy: any) => (copy.keys[1].activatedAt += 1)],
    ['rename a kid', (copy: any) => (copy.keys[1].kid = 'sign-forged')],
    ['change the ring id', (copy: any) => (copy.ringId = 'other')],
    ['swap two keys\' material', (copy: any) => ([copy.keys[1].material, copy.keys[2].material] = [copy.keys[2].material, copy.keys[1].material])],
    ['replace the MAC with another ring\'s', (copy: any) => (copy.mac = copy.mac.split('').reverse().join(''))],
  ])('refuses an edit that would %s (ERR_RING_INTEGRITY)', async (_label, change) => {
    const { masterKey, sealed, revokedKid } = await sealedRing();
    const error = await caught(() => openRing(masterKey, edit(sealed, (copy) => change(copy, revokedKid))));
    expect(error.code).toBe('ERR_RING_INTEGRITY');
  });

  it('refuses a key spliced in from another ring under the same master key', async () => {
    const { masterKey, doc } = await sealedRing();
    const other = sealRing(masterKey, { ...(await buildRing(masterKey)), ringId: 'other-ring' });
    const foreign = other.keys.find((key) => key.purpose === 'sign')!;
    const spliced = edit(sealRing(masterKey, doc), (copy) => copy.keys.push(foreign));
    expect((await caught(() => openRing(masterKey, spliced))).code).toBe('ERR_RING_INTEGRITY');
  });

  it('refuses a stored public key riding along (public keys are derived, never stored) as ERR_RING_FORMAT', async () => {
    const { masterKey, sealed } = await sealedRing();
    const planted = edit(sealed, (copy) => (copy.keys[0].publicJwk = { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }));
    expect((await caught(() => openRing(masterKey, planted))).code).toBe('ERR_RING_FORMAT');
  });

  it('refuses a ring sealed under another master key as ERR_MASTER_KEY_MISMATCH, and one re-sealed by a guessing attacker as ERR_RING_INTEGRITY', async () => {
    const { masterKey, doc } = await sealedRing();
    expect((await caught(() => openRing(newMasterKey(), JSON.stringify(sealRing(masterKey, doc))))).code).toBe('ERR_MASTER_KEY_MISMATCH');
    const attacker = newMasterKey(); // the right masterKeyId copied, the wrong key
    expect((await caught(() => openRing(masterKey, JSON.stringify(sealRing(attacker, doc))))).code).toBe('ERR_RING_INTEGRITY');
  });

  it.each([
    ['invalid JSON', '{"format":2,'],
    ['null', 'null'],
    ['another format', JSON.stringify({ format: 3, version: 1, keys: [] })],
    ['keys not a list', JSON.stringify({ format: 2, ringId: 'r', version: 1, masterKeyId: 'm', updatedAt: 1, keys: {}, mac: 'x' })],
    ['no MAC', JSON.stringify({ format: 2, ringId: 'r', version: 1, masterKeyId: 'm', updatedAt: 1, keys: [] })],
    ['an unknown purpose', JSON.stringify({ format: 2, ringId: 'r', version: 1, masterKeyId: 'm', updatedAt: 1, keys: [{ kid: 'a', purpose: 'x', alg: 'x', state: 'active', createdAt: 1, material: 'v1.x' }], mac: 'x' })],
  ])('refuses %s with ERR_RING_FORMAT', async (_label, raw) => {
    expect((await caught(() => openRing(newMasterKey(), raw))).code).toBe('ERR_RING_FORMAT');
  });
});

describe('format 1 (keyfleet 0.1)', () => {
  it('opens as legacy, dropping stored public keys, so the primary can upgrade it', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const v1 = { format: 1, version: doc.version, masterKeyId: doc.masterKeyId, updatedAt: doc.updatedAt, keys: doc.keys.map((key) => ({ ...key, publicJwk: { kty: 'EC', x: 'planted' } })) };
    const opened = openRing(masterKey, JSON.stringify(v1));
    expect(opened.legacy).toBe(true);
    expect(opened.doc).toEqual({ ...doc, ringId: 'legacy' });
    expect(JSON.stringify(opened.doc)).not.toContain('planted');
  });

  it('refuses a format-1 ring of another master key', async () => {
    const doc = await buildRing(newMasterKey());
    const v1 = { ...doc, format: 1, ringId: undefined };
    expect((await caught(() => openRing(newMasterKey(), JSON.stringify(v1)))).code).toBe('ERR_MASTER_KEY_MISMATCH');
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and leaves out undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: undefined } })).toBe('{"a":{"d":[2,{"e":0,"f":1}]},"b":1}');
  });
});

describe('heartbeat MACs', () => {
  it('authenticate a beat under the same master key only, and break on any edit', () => {
    const masterKey = newMasterKey();
    const beat = { id: 'node-1', ringId: 'r', ringVersion: 7, at: T0 };
    const signed = { ...beat, mac: beatMac(masterKey, beat) };
    expect(beatAuthentic(masterKey, signed)).toBe(true);
    expect(beatAuthentic(newMasterKey(), signed)).toBe(false);
    const edited: object = { ...signed, ringVersion: 8 };
    expect(beatAuthentic(masterKey, edited)).toBe(false);
    expect(beatAuthentic(masterKey, beat)).toBe(false);
  });
});

