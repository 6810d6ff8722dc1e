import { EncryptJWT, decodeProtectedHeader, jwtDecrypt } from 'jose';
import { resolveVerifier, type RingHolder } from '../keyring/holder.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import { unauthorized, unavailable } from '../lib/errors.js';
import { AUDIENCE, ISSUER, MAX_TOKEN_BYTES } from './claims.js';
import { joseToHttp, type MintOptions, type VerifyOptions } from './tokens.js';

export const AUTH_COOKIE = 'auth';

// The `auth` cookie is a JWE (dir + A256GCM) under the ring's active `encrypt` key: the
// browser holds the whole session state, so it survives a Redis outage.
const KEY_MANAGEMENT = 'dir';

export async function sealAuthCookie(ring: RingSnapshot, { user, ttlMs, now }: MintOptions): Promise<string> {
  const key = ring.active('encrypt');
  if (!key) throw unavailable('ERR_NO_ACTIVE_KEY', 'no active encryption key');
  const iat = Math.floor(now / 1000);
  return new EncryptJWT({})
    .setProtectedHeader({ alg: KEY_MANAGEMENT, enc: ALGORITHMS.encrypt, kid: key.meta.kid })
    .setSubject(user)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + Math.floor(ttlMs / 1000))
    .encrypt(key.secret as CryptoKey);
}

export async function openAuthCookie(holder: RingHolder, value: string, { now, clockSkewMs }: VerifyOptions): Promise<string> {
  if (value.length > MAX_TOKEN_BYTES) throw unauthorized('ERR_COOKIE_TOO_LARGE', 'cookie too large');
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
    const { payload } = await jwtDecrypt(value, key.secret as CryptoKey, {
      keyManagementAlgorithms: [KEY_MANAGEMENT],
      contentEncryptionAlgorithms: [ALGORITHMS.encrypt],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: Math.floor(clockSkewMs / 1000),
      currentDate: new Date(now),
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    return payload.sub as string;
  } catch (error) {
    throw joseToHttp(error, 'COOKIE');
  }
}
