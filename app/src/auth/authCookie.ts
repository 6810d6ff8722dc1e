import { KeyObject } from 'node:crypto';
import { EncryptJWT, jwtDecrypt } from 'jose';
import type { RingHolder } from '../keyring/holder.js';
import type { LiveKey, RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import { unauthorized, unavailable } from '../lib/errors.js';
import { AUDIENCE, ISSUER } from './claims.js';
import { decryptDirA256GcmJwe, keyObjectOf } from './fastVerify.js';
import { joseToHttp, type MintOptions } from './tokens.js';
import { verifyCredential, type CredentialKind, type VerifierKey, type VerifyOptions } from './verifyCredential.js';

export const AUTH_COOKIE = 'auth';

// The `auth` cookie is a JWE (dir + A256GCM) under the ring's active `encrypt` key: the
// browser holds the whole session state, so it survives a Redis outage. jose seals it; it is
// opened with node:crypto (fastVerify.ts), so cookies sealed before that change open as before.
const KEY_MANAGEMENT = 'dir';

// For sealing with jose: given a KeyObject, jose exports the raw bytes and imports a fresh
// WebCrypto key on every call. Imported once per key object instead, non-extractable.
const imported = new WeakMap<object, Promise<CryptoKey>>();
function aesKey(secret: LiveKey['secret']): Promise<CryptoKey> | CryptoKey {
  if (!(secret instanceof KeyObject)) return secret as CryptoKey;
  let key = imported.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey('raw', secret.export(), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    key.catch(() => imported.delete(secret));
    imported.set(secret, key);
  }
  return key;
}

export async function sealAuthCookie(ring: RingSnapshot, { user, ttlMs, now, extra }: MintOptions): Promise<string> {
  const key = ring.active('encrypt');
  if (!key) throw unavailable('ERR_NO_ACTIVE_KEY', 'no active encryption key');
  const iat = Math.floor(now / 1000);
  return new EncryptJWT({})
    .setProtectedHeader({ ...extra, alg: KEY_MANAGEMENT, enc: ALGORITHMS.encrypt, kid: key.meta.kid })
    .setSubject(user)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + Math.floor(ttlMs / 1000))
    .encrypt(await aesKey(key.secret));
}

/** jose's check of a cookie, with the options keyfleet has always used (and the oracle's). */
export async function joseOpenCookie(value: string, key: VerifierKey, { now, clockSkewMs }: VerifyOptions) {
  const { payload } = await jwtDecrypt(value, await aesKey(key), {
    keyManagementAlgorithms: [KEY_MANAGEMENT],
    contentEncryptionAlgorithms: [ALGORITHMS.encrypt],
    issuer: ISSUER,
    audience: AUDIENCE,
    clockTolerance: Math.floor(clockSkewMs / 1000),
    currentDate: new Date(now),
    requiredClaims: ['sub', 'exp', 'iat'],
  });
  return payload as Record<string, unknown>;
}

export const AUTH_COOKIE_KIND: CredentialKind = {
  purpose: 'encrypt',
  name: 'COOKIE',
  messages: { tooLarge: 'cookie too large', malformed: 'malformed auth cookie', key: 'cookie key unknown or revoked' },
  checkHeader(header) {
    if (header.alg !== KEY_MANAGEMENT || header.enc !== ALGORITHMS.encrypt) throw unauthorized('ERR_COOKIE_MALFORMED', 'malformed auth cookie');
  },
  verifierOf: (key) => (typeof key.secret === 'string' ? undefined : key.secret),
  fast: (parts, header, key, options) => decryptDirA256GcmJwe(parts, header, keyObjectOf(key), options),
  jose: (value, key, options) => joseOpenCookie(value, key, options).catch((error: unknown) => Promise.reject(joseToHttp(error, 'COOKIE'))),
};
