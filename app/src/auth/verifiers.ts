import type { RingHolder } from '../keyring/holder.js';
import { KeyfleetError, unauthorized } from '../lib/errors.js';
import { AUTH_COOKIE_KIND } from './authCookie.js';
import { cookieClaims, idsOf, tokenClaims, type CredentialClaims } from './credentials.js';
import type { CredentialRevocations } from './revocations.js';
import { ACCESS_TOKEN } from './tokens.js';
import { VerifyCache, type CachedPurpose } from './verifyCache.js';
import { verifyCredential, type CredentialKind, type VerifyOptions } from './verifyCredential.js';

// One verifier per purpose, made once per node and handed to whatever checks credentials
// (the kit's middleware and routes, the dashboard): the kind's rules (verifyCredential.ts),
// the ring held in memory as its key resolver (holder.ts resolveVerifier: a protected
// header's kid in, a key out, as jose's key resolvers), a verified-credential cache of its
// own that every ring change purges, and the revocations held in memory. No network I/O.

/** How each check ended: 'OK' or the code answered, and whether the cache answered (metrics). */
export type VerificationObserver = (purpose: CachedPurpose, code: string, cache: 'hit' | 'miss') => void;

export interface CredentialVerifier {
  readonly purpose: CachedPurpose;
  /** The credentials this verifier has verified, served again without the crypto. */
  readonly cache: VerifyCache;
  /** The user of a credential that passes the ring's checks (revocations not asked); else a 401, or a 503 another node can answer. */
  verify(value: string, options: VerifyOptions): Promise<string>;
  /** What the credential says about itself, once it passed the ring's checks and is not revoked. */
  check(value: string, options: VerifyOptions): Promise<CredentialClaims>;
}

/** The bearer token's and the `auth` cookie's verifiers of one node. */
export interface CredentialVerifiers {
  readonly token: CredentialVerifier;
  readonly cookie: CredentialVerifier;
}

export interface VerifiersOptions {
  holder: RingHolder;
  /** Ended credentials (logout, log out everywhere); absent: none is refused for that. */
  revocations?: CredentialRevocations;
  observe?: VerificationObserver;
}

interface KindRules {
  kind: CredentialKind;
  claimsOf(user: string, value: string): CredentialClaims;
  /** The issue time a per-user not-before compares with: a cookie's login, not its latest renewal. */
  since(claims: CredentialClaims): number;
  revokedCode: 'ERR_TOKEN_REVOKED' | 'ERR_COOKIE_REVOKED';
  revokedMessage: string;
}

const TOKEN_RULES: KindRules = {
  kind: ACCESS_TOKEN,
  claimsOf: tokenClaims,
  since: (claims) => claims.issuedAtMs,
  revokedCode: 'ERR_TOKEN_REVOKED',
  revokedMessage: 'token revoked (logged out)',
};

const COOKIE_RULES: KindRules = {
  kind: AUTH_COOKIE_KIND,
  claimsOf: cookieClaims,
  // Logging out everywhere ends logins from before it: a generation renewed after it (by a
  // node that had not heard yet) still belongs to the older login.
  since: (claims) => claims.startedAtMs ?? claims.issuedAtMs,
  revokedCode: 'ERR_COOKIE_REVOKED',
  revokedMessage: 'auth cookie revoked (logged out)',
};

function verifierOf(rules: KindRules, { holder, revocations, observe }: VerifiersOptions): CredentialVerifier {
  const cache = new VerifyCache(rules.kind.purpose);
  holder.on('change', (ring) => cache.purge(ring));
  const verify = (value: string, options: VerifyOptions, hit: () => void = () => undefined) => verifyCredential(rules.kind, holder, cache, value, options, hit);
  return {
    purpose: rules.kind.purpose,
    cache,
    verify: (value, options) => verify(value, options),
    async check(value, options) {
      let code = 'OK';
      let answeredBy: 'hit' | 'miss' = 'miss';
      try {
        const user = await verify(value, options, () => (answeredBy = 'hit'));
        const claims = rules.claimsOf(user, value);
        if (revocations?.check(user, idsOf(claims), rules.since(claims))) throw unauthorized(rules.revokedCode, rules.revokedMessage);
        return claims;
      } catch (error) {
        code = error instanceof KeyfleetError ? error.code : 'ERR_INTERNAL';
        throw error;
      } finally {
        observe?.(rules.kind.purpose, code, answeredBy);
      }
    },
  };
}

export function createVerifiers(options: VerifiersOptions): CredentialVerifiers {
  return { token: verifierOf(TOKEN_RULES, options), cookie: verifierOf(COOKIE_RULES, options) };
}
