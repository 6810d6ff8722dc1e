import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair } from 'jose';
import { ALGORITHMS, type Purpose, type StoredKey } from './types.js';
import { wrapMaterial } from './wrap.js';

/** `sign-20261124T015300-3f9a1c2e`: sortable by creation, unique, says what it is. */
export function newKid(purpose: Purpose, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `${purpose}-${stamp}-${randomBytes(4).toString('hex')}`;
}

/** Fresh key material for a purpose, wrapped under the master key, in state `staged`. */
export async function generateKey(purpose: Purpose, now: number, masterKey: Buffer): Promise<StoredKey> {
  const kid = newKid(purpose, now);
  let plaintext: Buffer;
  if (purpose === 'sign') {
    // Only the private key is stored: the public half is derived from it when the ring is opened.
    const { privateKey } = await generateKeyPair(ALGORITHMS.sign, { extractable: true });
    plaintext = Buffer.from(JSON.stringify(await exportJWK(privateKey)));
  } else {
    plaintext = randomBytes(32);
  }
  const key: StoredKey = {
    kid,
    purpose,
    alg: ALGORITHMS[purpose],
    state: 'staged',
    createdAt: now,
    material: wrapMaterial(masterKey, kid, purpose, plaintext),
  };
  plaintext.fill(0);
  return key;
}
