import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { KeyfleetError } from '../lib/errors.js';
import type { Purpose } from './types.js';

// Key material at rest: AES-256-GCM under the master key. The AAD binds each ciphertext to
// its kid and purpose, so material cannot be swapped between entries of the ring.
const FORMAT = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

const aad = (kid: string, purpose: Purpose) => Buffer.from(`keyfleet:${FORMAT}:${purpose}:${kid}`);

export function wrapMaterial(masterKey: Buffer, kid: string, purpose: Purpose, plaintext: Buffer): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', masterKey, iv).setAAD(aad(kid, purpose));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return `${FORMAT}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')}`;
}

export function unwrapMaterial(masterKey: Buffer, kid: string, purpose: Purpose, wrapped: string): Buffer {
  const [format, encoded] = wrapped.split('.');
  const bytes = Buffer.from(encoded ?? '', 'base64url');
  if (format !== FORMAT || bytes.length < IV_BYTES + TAG_BYTES) {
    throw new KeyfleetError('ERR_KEY_MATERIAL_FORMAT', `key ${kid}: stored material is not in format ${FORMAT}`);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', masterKey, bytes.subarray(0, IV_BYTES));
    decipher.setAAD(aad(kid, purpose));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)), decipher.final()]);
  } catch (cause) {
    throw new KeyfleetError(
      'ERR_MASTER_KEY_MISMATCH',
      `key ${kid} does not decrypt under this master key: KEYRING_MASTER_KEY is wrong, or the entry was tampered with`,
      { cause },
    );
  }
}

/** A stable, non-reversible id for a master key, so a node can tell a wrong key at once. */
export function masterKeyId(masterKey: Buffer): string {
  return createHmac('sha256', masterKey).update('keyfleet master key id').digest('base64url').slice(0, 16);
}
