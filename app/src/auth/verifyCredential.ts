import type { KeyObject } from 'node:crypto';
import { resolveVerifier, type RingHolder } from '../keyring/holder.js';
import type { LiveKey } from '../keyring/snapshot.js';
import { KeyfleetError, unauthorized } from '../lib/errors.js';
import { MAX_TOKEN_BYTES } from './claims.js';
import { Refused, readProtectedHeader, type Claims, type FastResult, type Header, type Refusal } from './fastVerify.js';
import type { CachedPurpose, VerifyCache } from './verifyCache.js';

// The one path every bearer token and `auth` cookie takes: size limit, the verified-credential
// cache, keyfleet's header rules, the key from the ring, then the full check (node:crypto,
// fastVerify.ts; jose for the rare shapes it hands back). auth/verifiers.ts makes one verifier
// a purpose around it, with its cache, and reports how each check ended.

export type CredentialName = 'TOKEN' | 'COOKIE';
export type VerifierKey = CryptoKey | KeyObject;

export interface VerifyOptions {
  now: number;
  clockSkewMs: number;
}

/** What differs between a token and a cookie. */
export interface CredentialKind {
  purpose: CachedPurpose;
  name: CredentialName;
  /** Messages of the refusals keyfleet decides before any crypto. */
  messages: { tooLarge: string; malformed: string; key: string };
  /** keyfleet's rule for the header (algorithm allow-list): throws a KeyfleetError. */
  checkHeader(header: Header): void;
  /** The key object that verifies: its identity is what the cache checks. */
  verifierOf(key: LiveKey): VerifierKey | undefined;
  /** The full check through node:crypto. */
  fast(parts: readonly string[], header: Header, verifier: VerifierKey, options: VerifyOptions): FastResult;
  /** The full check through jose (shapes `fast` hands back, and the oracle in tests). */
  jose(value: string, verifier: VerifierKey, options: VerifyOptions): Promise<Claims>;
}

const REFUSAL_MESSAGE: Record<Refusal, string> = { INVALID: 'invalid', CLAIMS: 'claims invalid', EXPIRED: 'expired' };

export const refusal = (name: CredentialName, reason: Refusal) =>
  unauthorized(`ERR_${name}_${reason}`, `${name.toLowerCase()} ${REFUSAL_MESSAGE[reason]}`);

/**
 * Checks `value` against the ring `holder` holds, through `cache` (credentials that passed
 * before); returns the user or throws a 401 (a 503 when another node can answer). `hit` is
 * called when the cache answered. Reached through auth/verifiers.ts, one verifier a purpose.
 */
export function verifyCredential(kind: CredentialKind, holder: RingHolder, cache: VerifyCache, value: string, options: VerifyOptions, hit: () => void = () => undefined): Promise<string> {
  return check(kind, holder, cache, value, options, hit);
}

async function check(kind: CredentialKind, holder: RingHolder, cache: VerifyCache, value: string, options: VerifyOptions, hit: () => void): Promise<string> {
  const { name, messages } = kind;
  if (value.length > MAX_TOKEN_BYTES) throw unauthorized(`ERR_${name}_TOO_LARGE`, messages.tooLarge);
  // This exact string passed every check below before, is not past its exp, and its key still
  // verifies in the ring held now (verifyCache.ts): the same answer, without the crypto.
  const cached = cache.get(value, holder.current, options.now);
  if (cached !== undefined) {
    hit();
    return cached;
  }
  const parts = value.split('.');
  const header = readProtectedHeader(parts);
  if (header === undefined) throw unauthorized(`ERR_${name}_MALFORMED`, messages.malformed);
  kind.checkHeader(header);
  const key = await resolveVerifier(holder, kind.purpose, header.kid as string | undefined);
  const verifier = key && kind.verifierOf(key);
  if (!key || !verifier) throw unauthorized(`ERR_${name}_KEY`, messages.key);
  let claims: Claims;
  try {
    const fast = kind.fast(parts, header, verifier, options);
    claims = fast === 'jose' ? await kind.jose(value, verifier, options) : fast;
  } catch (error) {
    if (error instanceof Refused) throw refusal(name, error.reason);
    throw error;
  }
  const user = claims.sub as string;
  cache.set(value, { user, kid: key.meta.kid, key: verifier, exp: claims.exp as number, nbf: claims.nbf as number | undefined, clockSkewMs: options.clockSkewMs }, options.now);
  return user;
}
