import type { KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKey } from '../../../app/src/keyring/generate.js';
import { activeKey, findKey, revoke, stage } from '../../../app/src/keyring/lifecycle.js';
import { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import type { RingDocument } from '../../../app/src/keyring/types.js';
import { masterKeyId, unwrapMaterial, wrapMaterial } from '../../../app/src/keyring/wrap.js';
import { snapshotAt, buildRing, caught, FakeClock, LIFETIMES, newMasterKey, rotateKey, T0 } from '../support/ring.js';

const HOUR = 3_600_000;

/** A ring with, per purpose: a retired key (rotated out), an active key and a staged key. */
async function busyRing(masterKey: Buffer): Promise<RingDocument> {
  let doc = await buildRing(masterKey, T0);
  for (const purpose of ['sign', 'encrypt', 'cookie'] as const) doc = await rotateKey(doc, purpose, T0 + HOUR, masterKey);
  for (const purpose of ['sign', 'encrypt', 'cookie'] as const) doc = stage(doc, await generateKey(purpose, T0 + 2 * HOUR, masterKey), T0 + 2 * HOUR);
  return doc;
}

/** Soon after busyRing's rotation: the retired keys still verify (deleteAfter not reached). */
const openBusy = (doc: RingDocument, masterKey: Buffer, at = T0 + 2 * HOUR - 50 * 60_000) => RingSnapshot.open(doc, masterKey, undefined, new FakeClock(at));

const kidOf = (doc: RingDocument, purpose: 'sign' | 'encrypt' | 'cookie', state: string) =>
  doc.keys.find((key) => key.purpose === purpose && key.state === state)!.kid;

describe('RingSnapshot.open', () => {
  it('refuses a ring written under another master key with ERR_MASTER_KEY_MISMATCH', async () => {
    const doc = await buildRing(newMasterKey());
    const error = await caught(() => snapshotAt(doc, newMasterKey()));
    expect(error.code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it('refuses an entry whose material does not decrypt, even when the masterKeyId matches', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const cookie = activeKey(doc, 'cookie')!;
    const forged = { ...doc, keys: doc.keys.map((k) => (k === cookie ? { ...k, material: wrapMaterial(newMasterKey(), k.kid, 'cookie', Buffer.alloc(32)) } : k)) };
    expect(forged.masterKeyId).toBe(masterKeyId(masterKey));
    expect((await caught(() => snapshotAt(forged, masterKey))).code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it('is complete only when every purpose has an active key', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const full = await snapshotAt(doc, masterKey);
    expect(full.complete).toBe(true);
    expect(full.version).toBe(1);
    const withoutEncrypt = revoke(doc, activeKey(doc, 'encrypt')!.kid, T0, LIFETIMES);
    const partial = await snapshotAt(withoutEncrypt, masterKey);
    expect(partial.complete).toBe(false);
    expect(partial.active('encrypt')).toBeUndefined();
    expect(partial.active('sign')?.meta.kid).toBe(activeKey(doc, 'sign')!.kid);
  });

  it('imports each purpose as the right kind of key and never keeps the wrapped material in meta', async () => {
    const masterKey = newMasterKey();
    const ring = await snapshotAt(await buildRing(masterKey), masterKey);
    const sign = ring.active('sign')!;
    expect(sign.verifyKey).toBeDefined();
    expect((sign.secret as CryptoKey).type).toBe('private');
    expect((sign.verifyKey as CryptoKey).type).toBe('public');
    expect((ring.active('encrypt')!.secret as KeyObject).symmetricKeySize).toBe(32);
    expect(Buffer.from(ring.active('cookie')!.secret as string, 'base64url')).toHaveLength(32);
    for (const purpose of ['sign', 'encrypt', 'cookie'] as const) expect(ring.active(purpose)!.meta).not.toHaveProperty('material');
  });
});

describe('RingSnapshot.verifier', () => {
  it('accepts staged, active and retired keys of the right purpose', async () => {
    const masterKey = newMasterKey();
    const doc = await busyRing(masterKey);
    const ring = await openBusy(doc, masterKey);
    for (const purpose of ['sign', 'encrypt', 'cookie'] as const) {
      for (const state of ['staged', 'active', 'retired']) {
        expect(ring.verifier(purpose, kidOf(doc, purpose, state))?.meta.state).toBe(state);
      }
    }
  });

  it('never returns a revoked key, though the ring still lists it', async () => {
    const masterKey = newMasterKey();
    let doc = await busyRing(masterKey);
    const revokedKids = (['sign', 'encrypt', 'cookie'] as const).flatMap((purpose) =>
      ['staged', 'active', 'retired'].map((state) => kidOf(doc, purpose, state)),
    );
    for (const kid of revokedKids) doc = revoke(doc, kid, T0 + 3 * HOUR, LIFETIMES);
    const ring = await snapshotAt(doc, masterKey);
    for (const kid of revokedKids) {
      expect(ring.has(kid)).toBe(true);
      expect(ring.verifier(findKey(doc, kid)!.purpose, kid)).toBeUndefined();
    }
  });

  it('returns nothing for a key of another purpose, an unknown kid or no kid', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const ring = await snapshotAt(doc, masterKey);
    expect(ring.verifier('sign', activeKey(doc, 'encrypt')!.kid)).toBeUndefined();
    expect(ring.verifier('encrypt', activeKey(doc, 'sign')!.kid)).toBeUndefined();
    expect(ring.verifier('sign', 'sign-nope')).toBeUndefined();
    expect(ring.verifier('sign', undefined)).toBeUndefined();
    expect(ring.verifier('sign', activeKey(doc, 'sign')!.kid)).toBeDefined();
  });

  it('stops verifying a revoked key even when the import is reused from the previous snapshot', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const first = await snapshotAt(doc, masterKey);
    const signKid = activeKey(doc, 'sign')!.kid;
    const revoked = { ...revoke(doc, signKid, T0 + HOUR, LIFETIMES), version: 2 };
    const second = await snapshotAt(revoked, masterKey, first);
    expect(second.verifier('sign', signKid)).toBeUndefined();
    expect(second.active('sign')).toBeUndefined();
    // The unchanged keys were reused, not re-imported.
    expect(second.active('encrypt')!.secret).toBe(first.active('encrypt')!.secret);
  });
});

describe('RingSnapshot and deleteAfter', () => {
  it('stops verifying a retired key at its deleteAfter on its own clock, with no primary to delete it', async () => {
    const masterKey = newMasterKey();
    const doc = await busyRing(masterKey);
    const retired = findKey(doc, kidOf(doc, 'sign', 'retired'))!;
    const clock = new FakeClock(retired.deleteAfter! - 1);
    const ring = await RingSnapshot.open(doc, masterKey, undefined, clock);
    expect(ring.verifier('sign', retired.kid)).toBeDefined();
    expect(ring.jwks().keys.map((key) => key.kid)).toContain(retired.kid);
    clock.advance(1); // the same snapshot, the same document: only time passed
    expect(ring.verifier('sign', retired.kid)).toBeUndefined();
    expect(ring.jwks().keys.map((key) => key.kid)).not.toContain(retired.kid);
    expect(ring.verifier('sign', kidOf(doc, 'sign', 'active'))).toBeDefined();
  });
});

describe('RingSnapshot public keys', () => {
  it('derives the public key from the private key and never reads one from storage', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const sign = doc.keys.find((key) => key.purpose === 'sign')!;
    // A format-1 style public key beside the material (what an attacker would plant) is ignored.
    const planted = { ...doc, keys: doc.keys.map((key) => (key === sign ? { ...key, publicJwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' } } : key)) } as RingDocument;
    const ring = await snapshotAt(planted, masterKey);
    const privateJwk = JSON.parse(unwrapMaterial(masterKey, sign.kid, 'sign', sign.material).toString('utf8'));
    expect(ring.jwks().keys).toEqual([{ kty: 'EC', crv: 'P-256', x: privateJwk.x, y: privateJwk.y, kid: sign.kid, alg: 'ES256', use: 'sig' }]);
  });
});

describe('RingSnapshot.cookieSecrets', () => {
  it('puts the active secret first, then the others newest first, and leaves out revoked ones', async () => {
    const masterKey = newMasterKey();
    let doc = await buildRing(masterKey, T0); // cookie A active
    doc = await rotateKey(doc, 'cookie', T0 + HOUR, masterKey); // A retired, B active
    doc = await rotateKey(doc, 'cookie', T0 + 2 * HOUR, masterKey); // A, B retired, C active
    doc = stage(doc, await generateKey('cookie', T0 + 3 * HOUR, masterKey), T0 + 3 * HOUR); // D staged
    const cookies = doc.keys.filter((key) => key.purpose === 'cookie');
    const [a, b, c, d] = cookies.map((key) => key.kid) as [string, string, string, string];
    expect(cookies.map((key) => key.state)).toEqual(['retired', 'retired', 'active', 'staged']);

    const ring = await snapshotAt(doc, masterKey);
    const secretOf = (kid: string) => ring.verifier('cookie', kid)!.secret as string;
    expect(ring.cookieSecrets).toEqual([secretOf(c), secretOf(d), secretOf(b), secretOf(a)]);
    expect(ring.cookieSecrets[0]).toBe(ring.active('cookie')!.secret);

    const withoutB = await snapshotAt(revoke(doc, b, T0 + 4 * HOUR, LIFETIMES), masterKey);
    expect(withoutB.cookieSecrets).toEqual([secretOf(c), secretOf(d), secretOf(a)]);
  });
});

describe('RingSnapshot.jwks', () => {
  it('publishes the public half of every sign key that may verify, and nothing private', async () => {
    const masterKey = newMasterKey();
    const doc = await busyRing(masterKey);
    const ring = await openBusy(doc, masterKey);
    const { keys } = ring.jwks();
    expect(keys.map((key) => key.kid).sort()).toEqual(
      ['staged', 'active', 'retired'].map((state) => kidOf(doc, 'sign', state)).sort(),
    );
    for (const key of keys) {
      expect(key).not.toHaveProperty('d');
      expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    }
    expect(JSON.stringify(ring.jwks())).not.toMatch(/"d"/);
  });

  it('drops a revoked sign key', async () => {
    const masterKey = newMasterKey();
    const doc = await busyRing(masterKey);
    const retired = kidOf(doc, 'sign', 'retired');
    const ring = await snapshotAt(revoke(doc, retired, T0 + 3 * HOUR, LIFETIMES), masterKey);
    const kids = ring.jwks().keys.map((key) => key.kid);
    expect(kids).toHaveLength(2);
    expect(kids).not.toContain(retired);
  });
});
