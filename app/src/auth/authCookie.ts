import { KeyObject } from 'node:crypto';
import { EncryptJWT, decodeProtectedHeader, jwtDecrypt } from 'jose';
import { resolveVerifier, type RingHolder } from '../keyring/holder.js';
import type { LiveKey, RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import { unauthorized, unavailable } from '../lib/errors.js';
import { AUDIENCE, ISSUER, MAX_TOKEN_BYTES } from './claims.js';
import { joseToHttp, type MintOptions, type VerifyOptions } from './tokens.js';
import { verifyCacheFor } from './verifyCache.js';

export const AUTH_COOKIE = 'auth';

// The `auth` cookie is a JWE (dir + A256GCM) under the ring's active `encrypt` key: the
// browser holds the whole session state, so it survives a Redis outage.
const KEY_MANAGEMENT = 'dir';

// The ring holds the `encrypt` key as a KeyObject; given one, jose exports the raw bytes and
// imports a fresh WebCrypto key on every call (the cookie profile in docs/performance.md).
// Imported once per key object instead, non-extractable, for AES-GCM only.
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

export async function openAuthCookie(holder: RingHolder, value: string, { now, clockSkewMs }: VerifyOptions): Promise<string> {
  if (value.length > MAX_TOKEN_BYTES) throw unauthorized('ERR_COOKIE_TOO_LARGE', 'cookie too large');
  // Seen and fully checked before, not past its exp, key still in the ring (verifyCache.ts).
  const cache = verifyCacheFor(holder, 'encrypt');
  const cached = cache.get(value, holder.current, now);
  if (cached !== undefined) return cached;
  let kid: string | undefined;
  try {
    const header = decodeProtectedHeader(value);
    if (header.alg !== KEY_MANAGEMENT || header.enc !== ALGORITHMS.encrypt) throw new Error('algorithm');
    kid = header.kid;
  } catch {
    throw unauthorized('ERR_COOKIE_MALFORMED', 'malformed auth cookie');
  }
  const key = await resolveVerifier(holder, 'encrypt', kid);
  if (!key) throw unauthorized('ERR_COOKIE_KEY', 'cookie key unknown or revoked');
  try {
    const { payload } = await jwtDecrypt(value, await aesKey(key.secret), {
      keyManagementAlgorithms: [KEY_MANAGEMENT],
      contentEncryptionAlgorithms: [ALGORITHMS.encrypt],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: Math.floor(clockSkewMs / 1000),
      currentDate: new Date(now),
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    const user = payload.sub as string;
    cache.set(value, { user, kid: key.meta.kid, key: key.secret, exp: payload.exp!, nbf: payload.nbf, clockSkewMs }, now);
    return user;
  } catch (error) {
    throw joseToHttp(error, 'COOKIE');
  }
}
