import { randomUUID } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { resolveVerifier, type RingHolder } from '../keyring/holder.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import { KeyfleetError, unauthorized, unavailable } from '../lib/errors.js';
import { AUDIENCE, ISSUER, MAX_TOKEN_BYTES } from './claims.js';
import { verifyCacheFor } from './verifyCache.js';

export interface MintOptions {
  user: string;
  ttlMs: number;
  now: number;
  /** More claims (the token's) or protected-header parameters (the `auth` cookie's): auth/credentials.ts. */
  extra?: Record<string, string | number>;
}

/** A JWT access token signed with the ring's active `sign` key (ES256, kid in the header). */
export async function mintAccessToken(ring: RingSnapshot, { user, ttlMs, now, extra }: MintOptions) {
  const key = ring.active('sign');
  if (!key) throw unavailable('ERR_NO_ACTIVE_KEY', 'no active signing key');
  const iat = Math.floor(now / 1000);
  const expiresIn = Math.floor(ttlMs / 1000);
  const token = await new SignJWT({ ...extra })
    .setProtectedHeader({ alg: ALGORITHMS.sign, kid: key.meta.kid, typ: 'JWT' })
    .setSubject(user)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + expiresIn)
    .setJti(randomUUID())
    .sign(key.secret as CryptoKey);
  return { token, expiresIn, kid: key.meta.kid };
}

export interface VerifyOptions {
  now: number;
  clockSkewMs: number;
}

/** Checks a bearer token against the ring; every failure is a 401 with a stable code. */
export async function verifyAccessToken(holder: RingHolder, token: string, { now, clockSkewMs }: VerifyOptions): Promise<string> {
  if (token.length > MAX_TOKEN_BYTES) throw unauthorized('ERR_TOKEN_TOO_LARGE', 'token too large');
  // This exact token passed every check below before, is not past its exp, and its key still
  // verifies in the ring held now (verifyCache.ts): the same answer, without the crypto.
  const cache = verifyCacheFor(holder, 'sign');
  const cached = cache.get(token, holder.current, now);
  if (cached !== undefined) return cached;
  let kid: string | undefined;
  try {
    const header = decodeProtectedHeader(token);
    if (header.alg !== ALGORITHMS.sign) throw unauthorized('ERR_TOKEN_ALG', 'token algorithm not allowed');
    kid = header.kid;
  } catch (error) {
    if (error instanceof KeyfleetError) throw error;
    throw unauthorized('ERR_TOKEN_MALFORMED', 'malformed token');
  }
  const key = await resolveVerifier(holder, 'sign', kid);
  if (!key?.verifyKey) throw unauthorized('ERR_TOKEN_KEY', 'token key unknown or revoked');
  try {
    const { payload } = await jwtVerify(token, key.verifyKey, {
      algorithms: [ALGORITHMS.sign],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: Math.floor(clockSkewMs / 1000),
      currentDate: new Date(now),
      requiredClaims: ['sub', 'exp', 'iat'],
      typ: 'JWT',
    });
    const user = payload.sub as string;
    cache.set(token, { user, kid: key.meta.kid, key: key.verifyKey, exp: payload.exp!, nbf: payload.nbf, clockSkewMs }, now);
    return user;
  } catch (error) {
    throw joseToHttp(error, 'TOKEN');
  }
}

/** jose's errors carry codes; clients get a short message and a stable code of ours. */
export function joseToHttp(error: unknown, what: 'TOKEN' | 'COOKIE'): KeyfleetError {
  if (error instanceof KeyfleetError) return error;
  if (error instanceof errors.JWTExpired) return unauthorized(`ERR_${what}_EXPIRED`, `${what.toLowerCase()} expired`);
  if (error instanceof errors.JWTClaimValidationFailed) return unauthorized(`ERR_${what}_CLAIMS`, `${what.toLowerCase()} claims invalid`);
  return unauthorized(`ERR_${what}_INVALID`, `${what.toLowerCase()} invalid`);
}
