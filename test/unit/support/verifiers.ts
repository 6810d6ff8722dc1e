import type { CredentialRevocations } from '../../../app/src/auth/revocations.js';
import { createVerifiers, type CredentialVerifiers } from '../../../app/src/auth/verifiers.js';
import type { CachedPurpose, VerifyCache } from '../../../app/src/auth/verifyCache.js';
import type { VerifyOptions } from '../../../app/src/auth/verifyCredential.js';
import type { RingHolder } from '../../../app/src/keyring/holder.js';

// Tests check credentials as a node does, through one set of verifiers (auth/verifiers.ts)
// per ring holder and revocations, made on first use: a test that verifies twice meets the
// same verified-credential cache, as requests to one node do.

const made = new WeakMap<RingHolder, Map<CredentialRevocations | undefined, CredentialVerifiers>>();

export function verifiersOf(holder: RingHolder, revocations?: CredentialRevocations): CredentialVerifiers {
  let byRevocations = made.get(holder);
  if (!byRevocations) made.set(holder, (byRevocations = new Map()));
  let verifiers = byRevocations.get(revocations);
  if (!verifiers) byRevocations.set(revocations, (verifiers = createVerifiers({ holder, ...(revocations ? { revocations } : {}) })));
  return verifiers;
}

export const verifyAccessToken = (holder: RingHolder, token: string, options: VerifyOptions) => verifiersOf(holder).token.verify(token, options);
export const openAuthCookie = (holder: RingHolder, value: string, options: VerifyOptions) => verifiersOf(holder).cookie.verify(value, options);
export const checkToken = (holder: RingHolder, revocations: CredentialRevocations | undefined, token: string, options: VerifyOptions) =>
  verifiersOf(holder, revocations).token.check(token, options);
export const checkCookie = (holder: RingHolder, revocations: CredentialRevocations | undefined, value: string, options: VerifyOptions) =>
  verifiersOf(holder, revocations).cookie.check(value, options);
export const verifyCacheFor = (holder: RingHolder, purpose: CachedPurpose): VerifyCache =>
  (purpose === 'sign' ? verifiersOf(holder).token : verifiersOf(holder).cookie).cache;
