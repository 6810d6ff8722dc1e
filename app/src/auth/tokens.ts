import { randomUUID } from 'node:crypto';
import { SignJWT, errors, jwtVerify } from 'jose';
import type { RingHolder } from '../keyring/holder.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import { KeyfleetError, unauthorized, unavailable } from '../lib/errors.js';
import { AUDIENCE, ISSUER } from './claims.js';
import { verifyEs256Jws, verifyingKeyObject } from './fastVerify.js';
import { verifyCredential, type CredentialKind, type VerifierKey, type VerifyOptions } from './verifyCredential.js';

export type { VerifyOptions } from './verifyCredential.js';

export interface MintOptions {
  user: string;
  ttlMs: number;
  now: number;
  /** The resource server the token is for (`aud`); default keyfleet's own. */
  audience?: string;
  /** More claims (the token's) or protected-header parameters (the `auth` cookie's): auth/credentials.ts. */
  extra?: Record<string, unknown>;
}

/** A JWT access token signed with the ring's active `sign` key (ES256, kid in the header). */
export async function mintAccessToken(ring: RingSnapshot, { user, ttlMs, now, audience = AUDIENCE, extra }: MintOptions) {
  const key = ring.active('sign');
  if (!key) throw unavailable('ERR_NO_ACTIVE_KEY', 'no active signing key');
  const iat = Math.floor(now / 1000);
  const expiresIn = Math.floor(ttlMs / 1000);
  const token = await new SignJWT({ ...extra })
    .setProtectedHeader({ alg: ALGORITHMS.sign, kid: key.meta.kid, typ: 'JWT' })
    .setSubject(user)
    .setIssuer(ISSUER)
    .setAudience(audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + expiresIn)
    .setJti(randomUUID())
    .sign(key.secret as CryptoKey);
  return { token, expiresIn, kid: key.meta.kid };
}

/** jose's check of a token, with the options keyfleet has always used (and the oracle's). */
export async function joseVerifyToken(token: string, key: VerifierKey, { now, clockSkewMs }: VerifyOptions) {
  const { payload } = await jwtVerify(token, key, {
    algorithms: [ALGORITHMS.sign],
    issuer: ISSUER,
    audience: AUDIENCE,
    clockTolerance: Math.floor(clockSkewMs / 1000),
    currentDate: new Date(now),
    requiredClaims: ['sub', 'exp', 'iat'],
    typ: 'JWT',
  });
  return payload as Record<string, unknown>;
}

export const ACCESS_TOKEN: CredentialKind = {
  purpose: 'sign',
  name: 'TOKEN',
  messages: { tooLarge: 'token too large', malformed: 'malformed token', key: 'token key unknown or revoked' },
  checkHeader(header) {
    if (header.alg !== ALGORITHMS.sign) throw unauthorized('ERR_TOKEN_ALG', 'token algorithm not allowed');
  },
  verifierOf: (key) => key.verifyKey,
  fast: (parts, header, key, options) => verifyEs256Jws(parts, header, verifyingKeyObject(key), options),
  jose: (token, key, options) => joseVerifyToken(token, key, options).catch((error: unknown) => Promise.reject(joseToHttp(error, 'TOKEN'))),
};

/** jose's errors carry codes; clients get a short message and a stable code of ours. */
export function joseToHttp(error: unknown, what: 'TOKEN' | 'COOKIE'): KeyfleetError {
  if (error instanceof KeyfleetError) return error;
  if (error instanceof errors.JWTExpired) return unauthorized(`ERR_${what}_EXPIRED`, `${what.toLowerCase()} expired`);
  if (error instanceof errors.JWTClaimValidationFailed) return unauthorized(`ERR_${what}_CLAIMS`, `${what.toLowerCase()} claims invalid`);
  return unauthorized(`ERR_${what}_INVALID`, `${what.toLowerCase()} invalid`);
}
