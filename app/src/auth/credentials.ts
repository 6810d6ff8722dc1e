import { randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { unauthorized } from '../lib/errors.js';
import { appClaimsOfHeader, appClaimsOfPayload, COOKIE_CLAIMS_PARAMETER, type Claims } from './appClaims.js';
import { sealAuthCookie } from './authCookie.js';
import { credentialId } from './revocations.js';
import { mintAccessToken } from './tokens.js';

// What a credential says about itself beyond its user, read only after it passed full
// verification (or the verify cache, which answers only for a string that did), so it is as
// authentic as the user: no second crypto, no Redis.
// - access token (JWT): the payload (`jti`, `iat`, and ours: `kf_iat` issued-at in ms,
//   `kf_fid` the refresh family that issued it);
// - `auth` cookie (JWE): the protected header, which the AEAD authenticates though it is not
//   encrypted (claims replicated as header parameters, RFC 7519 section 5.3): `jti` (kept by
//   every renewal, so ending it ends every generation), `kf_iat` when this generation was
//   sealed, `kf_start` when its login was (the absolute lifetime counts from there).

export interface CredentialClaims {
  user: string;
  jti?: string;
  /** When this credential (this generation of the cookie) was issued, ms. */
  issuedAtMs: number;
  /** Cookie: when its login was, ms. */
  startedAtMs?: number;
  /** Token: the refresh family that issued it. */
  family?: string;
  /** The key id it was sealed or signed with. */
  kid?: string;
  /** Token: its `exp`, ms. */
  expMs?: number;
  /** The app's own claims (appClaims.ts), as minted; empty when none. */
  app: Claims;
}

const num = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);
const str = (value: unknown): string | undefined => (typeof value === 'string' && value.length > 0 && value.length <= 128 ? value : undefined);

export function tokenClaims(user: string, token: string): CredentialClaims {
  const payload = decodeJwt(token);
  const kid = str(decodeProtectedHeader(token).kid);
  return {
    user,
    jti: str(payload.jti),
    issuedAtMs: num(payload.kf_iat) ?? (num(payload.iat) ?? 0) * 1000,
    family: str(payload.kf_fid),
    kid,
    expMs: (num(payload.exp) ?? 0) * 1000,
    app: appClaimsOfPayload(payload),
  };
}

export function cookieClaims(user: string, value: string): CredentialClaims {
  const header = decodeProtectedHeader(value) as Record<string, unknown>;
  const issuedAtMs = num(header.kf_iat) ?? 0;
  return { user, jti: str(header.jti), issuedAtMs, startedAtMs: num(header.kf_start) ?? issuedAtMs, kid: str(header.kid), app: appClaimsOfHeader(header) };
}

/** The ids a credential can be revoked by. */
export const idsOf = (claims: CredentialClaims) => [
  claims.jti === undefined ? undefined : credentialId.jti(claims.jti),
  claims.family === undefined ? undefined : credentialId.family(claims.family),
];

/**
 * An access token carrying its issue time in ms, from a refresh its family, and the app's
 * claims (already checked: appClaims.ts checkAppClaims) as top-level claims.
 */
export function mintToken(
  ring: RingSnapshot,
  { user, ttlMs, now, family, audience, claims }: { user: string; ttlMs: number; now: number; family?: string; audience?: string; claims?: Claims },
) {
  return mintAccessToken(ring, { user, ttlMs, now, ...(audience ? { audience } : {}), extra: { ...claims, kf_iat: now, ...(family ? { kf_fid: family } : {}) } });
}

export interface CookieLifetimes {
  /** Without a request this long, the cookie expires. */
  idleMs: number;
  /** This long after the login, the cookie expires whatever happens. */
  absoluteMs: number;
}

/** A new `auth` cookie (at login), or its next generation (renewal: same jti and start). */
export async function sealCookie(
  ring: RingSnapshot,
  { user, now, jti = randomUUID(), startedAtMs = now, claims }: { user: string; now: number; jti?: string; startedAtMs?: number; claims?: Claims },
  lifetimes: CookieLifetimes,
): Promise<{ value: string; maxAgeMs: number }> {
  const maxAgeMs = Math.min(lifetimes.idleMs, startedAtMs + lifetimes.absoluteMs - now);
  const app = claims && Object.keys(claims).length > 0 ? { [COOKIE_CLAIMS_PARAMETER]: claims } : {};
  const value = await sealAuthCookie(ring, { user, ttlMs: maxAgeMs, now, extra: { jti, kf_iat: now, kf_start: startedAtMs, ...app } });
  return { value, maxAgeMs };
}

/**
 * Whether a cookie that was accepted should be replaced in this answer: past half its idle
 * window, or sealed with a key that is no longer the active one (after a rotation, browsers
 * move to the new key without logging in again). Never past the absolute lifetime.
 */
export function needsRenewal(claims: CredentialClaims, ring: RingSnapshot, now: number, lifetimes: CookieLifetimes): boolean {
  const start = claims.startedAtMs ?? claims.issuedAtMs;
  if (now >= start + lifetimes.absoluteMs) return false;
  if (now - claims.issuedAtMs >= lifetimes.idleMs / 2) return true;
  const active = ring.active('encrypt');
  return active !== undefined && claims.kid !== active.meta.kid;
}
