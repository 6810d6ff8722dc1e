import { createECDH, hkdfSync } from 'node:crypto';
import { generateKey } from './generate.js';
import { activate, emptyRing, stage, type Lifetimes } from './lifecycle.js';
import { ALGORITHMS, PURPOSES, RING_FORMAT, type Purpose, type RingDocument, type StoredKey } from './types.js';
import { masterKeyId, wrapMaterial } from './wrap.js';

// Rings that never change, for the two ways of running a farm keyfleet is measured against.
// Neither touches Redis; both produce the same in-memory snapshot the shared ring does, so
// the request path is identical and only the source of keys differs.

const FOREVER: Lifetimes = { sign: 0, encrypt: 0, cookie: 0, clockSkewMs: 0 };

/** `KEYRING_MODE=local`: fresh keys in this process only, as every node of an unshared farm has. */
export async function localRing(masterKey: Buffer, now: number): Promise<RingDocument> {
  let doc = emptyRing(masterKeyId(masterKey), now);
  for (const purpose of PURPOSES) {
    const key = await generateKey(purpose, now, masterKey);
    doc = activate(stage(doc, key, now), key.kid, now, FOREVER);
  }
  return { ...doc, version: 1 };
}

/** `KEYRING_MODE=static`: keys derived from one secret copied to every node (HKDF-SHA256). */
export function staticRing(secret: string, masterKey: Buffer, now: number): RingDocument {
  const derive = (purpose: Purpose) => Buffer.from(hkdfSync('sha256', secret, 'keyfleet-static', purpose, 32));
  const keys = PURPOSES.map((purpose): StoredKey => {
    const kid = `static-${purpose}`;
    const bytes = derive(purpose);
    let plaintext = bytes;
    if (purpose === 'sign') {
      const ecdh = createECDH('prime256v1');
      ecdh.setPrivateKey(bytes);
      const point = ecdh.getPublicKey(); // 0x04 || x || y
      const base = { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') };
      plaintext = Buffer.from(JSON.stringify({ ...base, d: bytes.toString('base64url') }));
    }
    const key: StoredKey = {
      kid,
      purpose,
      alg: ALGORITHMS[purpose],
      state: 'active',
      createdAt: now,
      activatedAt: now,
      material: wrapMaterial(masterKey, kid, purpose, plaintext),
    };
    return key;
  });
  return { format: RING_FORMAT, ringId: 'static', version: 1, masterKeyId: masterKeyId(masterKey), updatedAt: now, keys };
}
