import { KeyfleetError } from '../lib/errors.js';

// An app's own claims (`role`, `tenant`...): checked once when a credential is minted, carried
// in the access token (top-level JWT claims, as resource servers expect them), in the `auth`
// cookie (one protected-header parameter, `kf_claims`, authenticated by the AEAD like the
// cookie's other header claims: credentials.ts) and in the `sid` session, and read back from
// whichever credential authenticated the request, through the app's schema.

/** An app's claims: a JSON object of its own names (the default claims type). */
export type Claims = Record<string, unknown>;

/**
 * What reads claims back typed: a zod schema, or anything with the same `parse`. `C` may be
 * any object type, an app's own `interface` included (an interface has no index signature,
 * so it does not extend `Claims`); what it holds is checked at run time (checkAppClaims).
 */
export interface ClaimsSchema<C extends object = Claims> {
  parse(input: unknown): C;
}

/** Serialised (JSON, UTF-8) claims may take at most this many bytes. */
export const MAX_CLAIMS_BYTES = 1024;

/** The `auth` cookie's protected-header parameter that carries the app's claims. */
export const COOKIE_CLAIMS_PARAMETER = 'kf_claims';

/**
 * Names an app may not use: the registered JWT claims (RFC 7519 §4.1), the JOSE header
 * parameters the cookie carries its claims beside (RFC 7515 §4.1, RFC 7516 §4.1), and
 * keyfleet's own (`kf_` and the refresh family). Compared case-sensitively, as JWT names are.
 */
export const RESERVED_CLAIMS: ReadonlySet<string> = new Set([
  'iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti',
  'alg', 'enc', 'zip', 'kid', 'typ', 'cty', 'crit', 'jku', 'jwk', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'epk', 'apu', 'apv', 'iv', 'tag', 'p2s', 'p2c',
  'fam',
]);

const badClaims = (message: string) => new KeyfleetError('ERR_BAD_CLAIMS', message);

/**
 * Checks an app's claims at mint time: a plain JSON object, no reserved name (nor `kf_…`),
 * at most MAX_CLAIMS_BYTES serialised, and accepted by the app's schema when it gave one.
 * Returns the claims as they will travel (JSON round-tripped). Throws ERR_BAD_CLAIMS.
 */
export function checkAppClaims(claims: unknown, schema?: ClaimsSchema): Claims {
  if (claims === undefined) claims = {};
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw badClaims('claims must be a plain JSON object');
  const reserved = Object.keys(claims).filter((name) => RESERVED_CLAIMS.has(name) || name.startsWith('kf_'));
  if (reserved.length > 0) throw badClaims(`reserved claim names: ${reserved.join(', ')} (registered JWT and JOSE names, and keyfleet's kf_…, are refused)`);
  let json: string;
  try {
    json = JSON.stringify(claims);
  } catch {
    throw badClaims('claims must be JSON-serialisable');
  }
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > MAX_CLAIMS_BYTES) throw badClaims(`claims take ${bytes} bytes serialised; at most ${MAX_CLAIMS_BYTES} fit in a token and a cookie`);
  const travelled = JSON.parse(json) as Claims;
  if (schema) {
    try {
      schema.parse(travelled);
    } catch (error) {
      throw new KeyfleetError('ERR_BAD_CLAIMS', `claims refused by the app's schema: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }
  return travelled;
}

/** The app's claims among a verified token's payload: every name that is not reserved. */
export function appClaimsOfPayload(payload: Record<string, unknown>): Claims {
  const claims: Claims = {};
  for (const [name, value] of Object.entries(payload)) {
    if (!RESERVED_CLAIMS.has(name) && !name.startsWith('kf_')) claims[name] = value;
  }
  return claims;
}

/** The app's claims from a verified cookie's protected header. */
export function appClaimsOfHeader(header: Record<string, unknown>): Claims {
  const value = header[COOKIE_CLAIMS_PARAMETER];
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Claims) : {};
}

/**
 * Reads claims back through the app's schema. A credential minted before the schema changed
 * may no longer fit it: that credential is refused (401), the user logs in again.
 */
export function readAppClaims<C extends object>(claims: Claims, schema: ClaimsSchema<C> | undefined): C {
  if (!schema) return claims as C;
  try {
    return schema.parse(claims);
  } catch (error) {
    throw new KeyfleetError('ERR_CLAIMS_REJECTED', "the credential's claims do not match this app's claims schema; log in again", { cause: error });
  }
}
