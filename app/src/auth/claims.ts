// Claims every token and auth cookie carries; verifiers check them with the same values.

/** The issuer when PUBLIC_ISSUER is not set: what every token minted so far carries. */
export const DEFAULT_ISSUER = 'keyfleet';

// A live binding: minting and verifying read `ISSUER` at each call, so the issuer set once
// at start-up (PUBLIC_ISSUER, through configureIssuer) reaches both without being threaded
// through every signature.
let issuer = DEFAULT_ISSUER;
export { issuer as ISSUER };

/** keyfleet's own audience: its routes accept tokens for it and for nothing else. */
export const AUDIENCE = 'keyfleet';
/** Longer tokens are refused before any parsing or crypto. */
export const MAX_TOKEN_BYTES = 4096;

/**
 * Sets the `iss` of the tokens this process mints and accepts, and the discovery document's
 * issuer (OpenID Connect Discovery 1.0 §4.3: they must be equal). Called once at start-up.
 */
export function configureIssuer(value: string = DEFAULT_ISSUER): void {
  issuer = value;
}

/** Who made a request, and by which credential: what authenticate() puts on `req.principal`. */
export interface Principal<C extends object = Record<string, unknown>> {
  user: string;
  via: 'token' | 'cookie' | 'session';
  /** The app's own claims, as minted by login() and read back through its claims schema (empty: none). */
  claims: C;
  /** The `auth` cookie's generation (ms): when it was sealed, when its login was, and whether this answer renewed it. */
  cookie?: { issuedAt: number; startedAt: number; renewed: boolean };
}
