import { KeyObject, createDecipheriv, createPublicKey, verify as verifySignature } from 'node:crypto';
import { base64url } from 'jose';
import { AUDIENCE, ISSUER } from './claims.js';

// First-sight verification of the two credentials the ring mints, synchronously through
// node:crypto: a JWS compact ES256 token and a JWE compact dir/A256GCM cookie. jose's
// WebCrypto path costs 3-4x the cryptography itself (an async job per call); this does the
// same checks, in jose's order, with the same outcome for every input. "Same" is not a claim
// of this comment: test/unit/auth/differential.test.ts runs jose as the oracle against this
// code on more than 100 000 generated and mutated tokens and cookies per run.
//
// Only the shape keyfleet mints is handled here. Anything rarer that jose would still accept
// when correctly signed or sealed (a `crit` header on a token, `zip` on a cookie) is handed
// back to the caller as 'jose', which runs jose itself: exact by construction, and never on
// the path of a credential this kit issued. jose (webapi build, 6.2.x) is the reference for
// every check below: lib/jws_verify.js, lib/jwe_decrypt.js, lib/content_encryption.js,
// lib/jwt_claims_set.js, lib/validate.js.

/** How a credential was refused, in the classes keyfleet's error codes distinguish. */
export type Refusal = 'INVALID' | 'CLAIMS' | 'EXPIRED';

export class Refused extends Error {
  constructor(readonly reason: Refusal) {
    super(reason);
    this.name = 'Refused';
  }
}

export type Claims = Record<string, unknown>;
export type Header = Record<string, unknown>;

/** A verified payload, or 'jose': not a shape this module decides; ask jose. */
export type FastResult = Claims | 'jose';

export interface ClaimOptions {
  now: number;
  clockSkewMs: number;
}

const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const CANONICAL_B64U = /^[A-Za-z0-9_-]*$/;
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * base64url exactly as jose decodes it. The canonical alphabet with a possible length goes
 * through Buffer (the same bytes: both ignore the unused bits of the last character);
 * anything else (padding, whitespace, `+`, `/`, a length of 4n+1) through jose's own decoder.
 */
export function decodeSegment(segment: string): Uint8Array {
  if (segment.length % 4 !== 1 && CANONICAL_B64U.test(segment)) return Buffer.from(segment, 'base64url');
  return base64url.decode(segment);
}

/** jose's isObject, for what JSON.parse returns: a plain object, not an array or null. */
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The protected header of a compact JWS (3 parts) or JWE (5 parts), as jose's
 * decodeProtectedHeader reads it; undefined where that throws.
 */
export function readProtectedHeader(parts: readonly string[]): Header | undefined {
  if (parts.length !== 3 && parts.length !== 5) return undefined;
  const encoded = parts[0]!;
  if (encoded === '') return undefined;
  try {
    const header: unknown = JSON.parse(strictDecoder.decode(decodeSegment(encoded)));
    return isObject(header) ? header : undefined;
  } catch {
    return undefined;
  }
}

const normalizeTyp = (value: string) => (value.includes('/') ? value.toLowerCase() : `application/${value.toLowerCase()}`);
const JWT_TYP = normalizeTyp('JWT');
// jose checks presence in the reverse order of requiredClaims + aud + iss; all are CLAIMS.
const REQUIRED = ['iss', 'aud', 'iat', 'exp', 'sub'] as const;

/**
 * jose's validateClaimsSet with keyfleet's options: issuer and audience `keyfleet`, required
 * sub/exp/iat, clockTolerance whole seconds of the skew, `typ: JWT` for tokens only. The
 * order matters: every CLAIMS check before the one EXPIRED check.
 */
function checkClaims(header: Header, bytes: Uint8Array, { now, clockSkewMs }: ClaimOptions, checkTyp: boolean): Claims {
  let claims: unknown;
  try {
    claims = JSON.parse(strictDecoder.decode(bytes));
  } catch {
    throw new Refused('INVALID');
  }
  if (!isObject(claims)) throw new Refused('INVALID');
  if (checkTyp && (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== JWT_TYP)) throw new Refused('CLAIMS');
  for (const claim of REQUIRED) if (!Object.hasOwn(claims, claim)) throw new Refused('CLAIMS');
  if (claims.iss !== ISSUER) throw new Refused('CLAIMS');
  const aud = claims.aud;
  if (!(typeof aud === 'string' ? aud === AUDIENCE : Array.isArray(aud) && aud.includes(AUDIENCE))) throw new Refused('CLAIMS');
  const tolerance = Math.floor(clockSkewMs / 1000);
  const nowS = Math.floor(now / 1000);
  if (typeof claims.iat !== 'number') throw new Refused('CLAIMS');
  const nbf = claims.nbf;
  if (nbf !== undefined) {
    if (typeof nbf !== 'number') throw new Refused('CLAIMS');
    if (nbf > nowS + tolerance) throw new Refused('CLAIMS');
  }
  const exp = claims.exp;
  if (typeof exp !== 'number') throw new Refused('CLAIMS');
  if (exp <= nowS - tolerance) throw new Refused('EXPIRED');
  return claims;
}

function decodeOrRefuse(segment: string): Uint8Array {
  try {
    return decodeSegment(segment);
  } catch {
    throw new Refused('INVALID');
  }
}

/**
 * A compact JWS whose header already passed keyfleet's checks (parsed, `alg: ES256`, kid
 * resolved to `key`): signature with node:crypto (JWS ES256 signatures are raw r||s, IEEE
 * P1363), then the claims. Throws Refused; 'jose' for a `crit` header.
 */
export function verifyEs256Jws(parts: readonly string[], header: Header, key: KeyObject, options: ClaimOptions): FastResult {
  if (parts.length !== 3) throw new Refused('INVALID');
  // RFC 7515 §4.1.11: jose understands `crit: ["b64"]`; a token we mint never has `crit`.
  if (Object.hasOwn(header, 'crit')) return 'jose';
  const [encodedHeader, encodedPayload, encodedSignature] = parts as [string, string, string];
  const signature = decodeOrRefuse(encodedSignature);
  if (NON_ASCII.test(encodedPayload)) throw new Refused('INVALID');
  const signingInput = Buffer.from(`${encodedHeader}.${encodedPayload}`, 'latin1');
  let valid = false;
  try {
    valid = verifySignature('sha256', signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch {
    throw new Refused('INVALID');
  }
  if (!valid) throw new Refused('INVALID');
  return checkClaims(header, decodeOrRefuse(encodedPayload), options, true);
}

const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/**
 * A compact JWE whose header already passed keyfleet's checks (parsed, `alg: dir`, `enc:
 * A256GCM`, kid resolved to `key`): AES-256-GCM with node:crypto, then the claims and jose's
 * check of claims replicated in the header. Throws Refused; 'jose' for a `zip` header.
 */
export function decryptDirA256GcmJwe(parts: readonly string[], header: Header, key: KeyObject, options: ClaimOptions): FastResult {
  if (parts.length !== 5) throw new Refused('INVALID');
  if (Object.hasOwn(header, 'zip')) return 'jose';
  // jose recognises no critical JWE header parameter: any `crit` fails.
  if (Object.hasOwn(header, 'crit')) throw new Refused('INVALID');
  const [encodedHeader, encryptedKey, encodedIv, encodedCiphertext, encodedTag] = parts as [string, string, string, string, string];
  // dir: no encrypted key; an empty IV or tag segment counts as missing.
  if (encryptedKey !== '' || encodedIv === '' || encodedTag === '') throw new Refused('INVALID');
  const ciphertext = decodeOrRefuse(encodedCiphertext);
  const iv = decodeOrRefuse(encodedIv);
  const tag = decodeOrRefuse(encodedTag);
  if (tag.length !== GCM_TAG_BYTES || iv.length !== GCM_IV_BYTES) throw new Refused('INVALID');
  let plaintext: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES });
    decipher.setAAD(Buffer.from(encodedHeader, 'latin1'));
    decipher.setAuthTag(tag);
    plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new Refused('INVALID');
  }
  const claims = checkClaims(header, plaintext, options, false);
  for (const claim of ['iss', 'sub', 'aud'] as const) {
    const replicated = header[claim];
    if (replicated === undefined) continue;
    if (claim === 'aud' ? JSON.stringify(replicated) !== JSON.stringify(claims.aud) : replicated !== claims[claim]) throw new Refused('CLAIMS');
  }
  return claims;
}

// node:crypto key objects for the ring's keys, derived once per key object. The ring may hold
// WebCrypto keys (sign) or KeyObjects (encrypt); its snapshot is not ours to change.
const derived = new WeakMap<object, KeyObject>();

/** The node:crypto KeyObject for a ring key: itself, or derived once from a CryptoKey. */
export function keyObjectOf(key: CryptoKey | KeyObject): KeyObject {
  if (key instanceof KeyObject) return key;
  let object = derived.get(key);
  if (object === undefined) {
    object = KeyObject.from(key);
    derived.set(key, object);
  }
  return object;
}

/** The public KeyObject that verifies with `key` (a private key gives its public half). */
export function verifyingKeyObject(key: CryptoKey | KeyObject): KeyObject {
  const object = keyObjectOf(key);
  if (object.type !== 'private') return object;
  let publicKey = derived.get(object);
  if (publicKey === undefined) {
    publicKey = createPublicKey(object);
    derived.set(object, publicKey);
  }
  return publicKey;
}
