import { createCipheriv, createHmac, generateKeyPairSync, KeyObject, randomBytes, sign as signWith, type KeyObject as NodeKey } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { decodeProtectedHeader, EncryptJWT, errors, jwtDecrypt, jwtVerify, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { sealAuthCookie } from '../../../app/src/auth/authCookie.js';
import { AUDIENCE, ISSUER, MAX_TOKEN_BYTES } from '../../../app/src/auth/claims.js';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { openAuthCookie, verifyAccessToken, verifyCacheFor } from '../support/verifiers.js';
import type { RingHolder } from '../../../app/src/keyring/holder.js';
import { activeKey, revoke } from '../../../app/src/keyring/lifecycle.js';
import type { RingDocument } from '../../../app/src/keyring/types.js';
import { KeyfleetError } from '../../../app/src/lib/errors.js';
import { buildRing, FakeClock, FakeStore, LIFETIMES, makeHolder, newMasterKey, rotateKey, T0 } from '../support/ring.js';

// jose is the oracle: the request path checks tokens and `auth` cookies with node:crypto
// (app/src/auth/fastVerify.ts), and must answer exactly what the jose-based checks it replaced
// answer, for every input: the same user, or the same error code. Below, `oracle*` is that
// old code (jose's decodeProtectedHeader, keyfleet's header rules, the ring lookup, jose's
// jwtVerify / jwtDecrypt with the same options), and fast-check throws generated, forged and
// mutated credentials at both. Any disagreement fails, with the shrunk input.

const TOKEN_RUNS = 50_000;
const COOKIE_RUNS = 60_000;

type Outcome = { user: unknown } | { code: string };

let holder: RingHolder;
let doc: RingDocument;
const kids = { sign: [] as string[], encrypt: [] as string[], cookie: '' };
// Private keys that may sign a token, by name: the ring's three sign keys (revoked, retired,
// active), a stranger's P-256 key, a P-384 key.
const signers: Record<string, NodeKey> = {};
const sealers: Record<string, NodeKey> = {};
let publicJwkJson = '';
let validToken = '';
let validCookie = '';

beforeAll(async () => {
  const masterKey = newMasterKey();
  let ring = await buildRing(masterKey, T0 - 3_600_000);
  for (const purpose of ['sign', 'encrypt'] as const) {
    ring = await rotateKey(ring, purpose, T0 - 2_000_000, masterKey);
    ring = await rotateKey(ring, purpose, T0 - 1_000_000, masterKey);
  }
  // The oldest key of each purpose revoked: sign and encrypt have revoked, retired, active.
  for (const purpose of ['sign', 'encrypt'] as const) {
    const oldest = ring.keys.filter((key) => key.purpose === purpose).sort((a, b) => a.createdAt - b.createdAt)[0]!;
    ring = { ...revoke(ring, oldest.kid, T0 - 500_000, LIFETIMES), version: ring.version + 1 };
  }
  doc = ring;
  // In sync (its heartbeats acknowledged): an unknown kid is refused at once, as jose refuses it.
  holder = makeHolder(new FakeStore(doc), masterKey, new FakeClock(T0), undefined, undefined, Number.POSITIVE_INFINITY);
  await holder.reload('test', { throwOnError: true });
  holder.markCurrent(T0);
  const snapshot = holder.current!;
  for (const purpose of ['sign', 'encrypt'] as const) {
    const byAge = doc.keys.filter((key) => key.purpose === purpose).sort((a, b) => a.createdAt - b.createdAt);
    kids[purpose] = byAge.map((key) => key.kid);
    expect(byAge.map((key) => key.state)).toEqual(['revoked', 'retired', 'active']);
  }
  kids.cookie = activeKey(doc, 'cookie')!.kid;
  // The revoked key's material is still in the document: open it like the ring does.
  const { RingSnapshot } = await import('../../../app/src/keyring/snapshot.js');
  // (without deleteAfter: a retired key stops verifying at it, and some of these are past it)
  const all = await RingSnapshot.open({ ...doc, keys: doc.keys.map((key) => ({ ...key, state: 'retired' as const, deleteAfter: undefined })) }, masterKey, undefined, new FakeClock(T0));
  for (const [i, kid] of kids.sign.entries()) signers[['revoked', 'retired', 'active'][i]!] = KeyObject.from(all.verifier('sign', kid)!.secret as CryptoKey);
  for (const [i, kid] of kids.encrypt.entries()) sealers[['revoked', 'retired', 'active'][i]!] = all.verifier('encrypt', kid)!.secret as NodeKey;
  signers.stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  signers.p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  sealers.stranger = KeyObject.from(await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt']));
  publicJwkJson = JSON.stringify(snapshot.jwks().keys.at(-1));
  validToken = (await mintAccessToken(snapshot, { user: 'alice', ttlMs: 900_000, now: T0 })).token;
  validCookie = await sealAuthCookie(snapshot, { user: 'alice', ttlMs: 8 * 3_600_000, now: T0 });
});

// --- the oracle: the jose-based checks as they were before node:crypto --------------------
const joseCode = (error: unknown, what: 'TOKEN' | 'COOKIE') =>
  error instanceof errors.JWTExpired ? `ERR_${what}_EXPIRED` : error instanceof errors.JWTClaimValidationFailed ? `ERR_${what}_CLAIMS` : `ERR_${what}_INVALID`;

async function oracleToken(token: string, now: number, clockSkewMs: number): Promise<Outcome> {
  if (token.length > MAX_TOKEN_BYTES) return { code: 'ERR_TOKEN_TOO_LARGE' };
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    return { code: 'ERR_TOKEN_MALFORMED' };
  }
  if (header.alg !== 'ES256') return { code: 'ERR_TOKEN_ALG' };
  const key = holder.current!.verifier('sign', header.kid);
  if (!key?.verifyKey) return { code: 'ERR_TOKEN_KEY' };
  try {
    const { payload } = await jwtVerify(token, key.verifyKey, {
      algorithms: ['ES256'],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: Math.floor(clockSkewMs / 1000),
      currentDate: new Date(now),
      requiredClaims: ['sub', 'exp', 'iat'],
      typ: 'JWT',
    });
    return { user: payload.sub };
  } catch (error) {
    return { code: joseCode(error, 'TOKEN') };
  }
}

async function oracleCookie(value: string, now: number, clockSkewMs: number): Promise<Outcome> {
  if (value.length > MAX_TOKEN_BYTES) return { code: 'ERR_COOKIE_TOO_LARGE' };
  let header;
  try {
    header = decodeProtectedHeader(value);
    if (header.alg !== 'dir' || header.enc !== 'A256GCM') throw new Error('algorithm');
  } catch {
    return { code: 'ERR_COOKIE_MALFORMED' };
  }
  const key = holder.current!.verifier('encrypt', header.kid);
  if (!key) return { code: 'ERR_COOKIE_KEY' };
  try {
    const { payload } = await jwtDecrypt(value, key.secret as KeyObject, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
      issuer: ISSUER,
      audience: AUDIENCE,
      clockTolerance: Math.floor(clockSkewMs / 1000),
      currentDate: new Date(now),
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    return { user: payload.sub };
  } catch (error) {
    return { code: joseCode(error, 'COOKIE') };
  }
}

/** The code under test, with the verified-credential cache out of the way. */
async function actual(check: typeof verifyAccessToken, purpose: 'sign' | 'encrypt', value: string, now: number, clockSkewMs: number): Promise<Outcome> {
  verifyCacheFor(holder, purpose).clear();
  try {
    return { user: await check(holder, value, { now, clockSkewMs }) };
  } catch (error) {
    if (!(error instanceof KeyfleetError) || error.status !== 401) throw error;
    return { code: error.code };
  }
}

// --- generators -----------------------------------------------------------------------------
const T0S = Math.floor(T0 / 1000);
const b64u = (bytes: Uint8Array | string) => Buffer.from(bytes).toString('base64url');

/** Times near T0 (so exp, nbf and now meet at the skew's edges), and odd values. */
const time = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -45, max: 45 }).map((d) => T0S + d) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(T0S + 0.5, T0S - 29.5, '1767225600', null, true, 1e300, -1, 0, [T0S], T0S + 900, T0S - 900) },
);
const absent = Symbol('absent');
const claimValue = <T,>(usual: fc.Arbitrary<T>, odd: unknown[]) =>
  fc.oneof({ weight: 8, arbitrary: usual as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: fc.constant(absent as unknown) }, { weight: 1, arbitrary: odd.length > 0 ? fc.constantFrom(...odd) : usual });

const claimsArb = fc
  .record({
    sub: claimValue(fc.constantFrom('alice', 'bob', ''), [5, null, ['alice'], { u: 1 }]),
    iss: claimValue(fc.constant(ISSUER), ['someone-else', [ISSUER], 'Keyfleet', null]),
    aud: claimValue(fc.constantFrom<unknown>(AUDIENCE, [AUDIENCE], ['other', AUDIENCE]), ['other', ['other'], [], 7, null, { aud: AUDIENCE }]),
    iat: claimValue(time, []),
    exp: claimValue(time, []),
    nbf: fc.oneof({ weight: 3, arbitrary: fc.constant(absent as unknown) }, { weight: 1, arbitrary: time }),
    jti: fc.oneof(fc.constant(absent as unknown), fc.uuid()),
  })
  .map((claims) => Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== absent)));

/** A JSON text for a header or claims object, or something that is not one. */
/** Usually null (build from the structured case), sometimes `arbitrary`. */
const rarely = <T,>(arbitrary: fc.Arbitrary<T>, oneIn: number) => fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });

const jsonText = (object: fc.Arbitrary<Record<string, unknown>>) =>
  fc.oneof(
    { weight: 20, arbitrary: object.map((value) => Buffer.from(JSON.stringify(value))) },
    { weight: 1, arbitrary: object.map((value) => Buffer.from(`\uFEFF${JSON.stringify(value)}`)) }, // a BOM: TextDecoder drops it
    { weight: 1, arbitrary: object.map((value) => Buffer.from(` ${JSON.stringify(value, null, 1)}\n`)) },
    { weight: 1, arbitrary: fc.constantFrom('[]', 'null', '"x"', '{', '1', '{"a":1}{', '[{"alg":"ES256"}]', '').map((text) => Buffer.from(text)) },
    { weight: 1, arbitrary: object.map((value) => Buffer.concat([Buffer.from(JSON.stringify(value).slice(0, -1)), Buffer.from([0x2c, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])])) }, // invalid UTF-8 in a string
  );

const kidArb = (purpose: 'sign' | 'encrypt') =>
  fc.oneof(
    { weight: 12, arbitrary: fc.constant(() => kids[purpose][2]!) },
    { weight: 2, arbitrary: fc.constant(() => kids[purpose][1]!) },
    { weight: 2, arbitrary: fc.constant(() => kids[purpose][0]!) },
    { weight: 1, arbitrary: fc.constant(() => kids[purpose === 'sign' ? 'encrypt' : 'sign'][2]!) },
    { weight: 1, arbitrary: fc.constant(() => kids.cookie) },
    { weight: 1, arbitrary: fc.constantFrom<() => unknown>(() => `${purpose}-forged`, () => undefined, () => 7, () => '', () => null) },
  );

/** Extra header parameters: none usually; crit, b64, zip, replicated claims sometimes. */
const extraHeader = fc.oneof(
  { weight: 10, arbitrary: fc.constant({}) },
  {
    weight: 3,
    arbitrary: fc.constantFrom<Record<string, unknown>>(
      { crit: ['b64'], b64: true },
      { crit: ['b64'], b64: false },
      { crit: ['b64'] },
      { crit: ['x-policy'], 'x-policy': 'ignore-exp' },
      { crit: [] },
      { crit: 'b64', b64: true },
      { crit: [''] },
      { crit: null },
      { crit: ['b64', 'b64'], b64: true },
      { b64: false },
      { zip: 'DEF' },
      { zip: 'GZIP' },
      { zip: null },
      { iss: ISSUER },
      { iss: 'someone-else' },
      { sub: 'alice' },
      { sub: 'root' },
      { aud: AUDIENCE },
      { aud: [AUDIENCE] },
      { jku: 'https://evil.example/jwks' },
      { jwk: { kty: 'EC' } },
      { epk: {} },
      { __proto__: null, constructor: 1 },
    ),
  },
);

/** How a base64url segment is written: canonically, or in a form jose may still read. */
type Encoding = 'canonical' | 'padded' | 'standard' | 'spaced' | 'lastbits' | 'star';
const encodingArb = fc.oneof(
  { weight: 30, arbitrary: fc.constant<Encoding>('canonical') },
  { weight: 1, arbitrary: fc.constantFrom<Encoding>('padded', 'standard', 'spaced', 'lastbits', 'star') },
);
function encode(bytes: Uint8Array, how: Encoding): string {
  const text = b64u(bytes);
  switch (how) {
    case 'canonical':
      return text;
    case 'padded':
      return Buffer.from(bytes).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
    case 'standard':
      return Buffer.from(bytes).toString('base64');
    case 'spaced':
      return `${text.slice(0, 4)} ${text.slice(4)}`;
    case 'lastbits': {
      // Unused low bits of the last character set: the same bytes to a forgiving decoder.
      if (text.length % 4 === 0 || text.length === 0) return text;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const last = alphabet.indexOf(text.at(-1)!);
      return text.slice(0, -1) + alphabet[last | (text.length % 4 === 2 ? 0b1111 : 0b11)];
    }
    case 'star':
      return `${text}*`;
  }
}

/** Random edits: replaced, dropped, inserted characters, cuts, flipped bits of one segment. */
const mutations = fc.array(
  fc.oneof(
    fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), char: fc.constantFrom(...'AZaz09-_.=+/ %é\u0000') }),
    fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), char: fc.constantFrom(...'A.-_x= ') }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('flip' as const), segment: fc.nat(4), at: fc.nat(), bit: fc.nat(7) }),
    fc.record({ kind: fc.constant('swap' as const), a: fc.nat(4), b: fc.nat(4) }),
  ),
  { maxLength: 3 },
);
type Mutation = typeof mutations extends fc.Arbitrary<(infer M)[]> ? M : never;
function mutate(text: string, edits: Mutation[]): string {
  for (const edit of edits) {
    const at = (n: number) => (text.length === 0 ? 0 : n % text.length);
    if (edit.kind === 'replace') text = text.slice(0, at(edit.at)) + edit.char + text.slice(at(edit.at) + 1);
    if (edit.kind === 'drop') text = text.slice(0, at(edit.at)) + text.slice(at(edit.at) + 1);
    if (edit.kind === 'insert') text = text.slice(0, at(edit.at)) + edit.char + text.slice(at(edit.at));
    if (edit.kind === 'cut') text = text.slice(0, at(edit.at));
    if (edit.kind === 'flip' || edit.kind === 'swap') {
      const parts = text.split('.');
      if (edit.kind === 'swap') {
        const [a, b] = [edit.a % parts.length, edit.b % parts.length];
        [parts[a], parts[b]] = [parts[b]!, parts[a]!];
      } else {
        const i = edit.segment % parts.length;
        const bytes = Buffer.from(parts[i]!, 'base64url');
        if (bytes.length > 0) {
          bytes[edit.at % bytes.length]! ^= 1 << edit.bit;
          parts[i] = b64u(bytes);
        }
      }
      text = parts.join('.');
    }
  }
  return text;
}

const nowArb = fc.integer({ min: -45_000, max: 45_000 }).map((d) => T0 + d);
const skewArb = fc.constantFrom(30_000, 30_000, 0, 1_500, 59_999);

// --- tokens -----------------------------------------------------------------------------------
type SignatureForm = 'p1363' | 'der' | 'high-s' | 'empty' | 'short' | 'long' | 'zeros';
const N_P256 = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

function signToken(input: string, alg: string, signer: string, form: SignatureForm): Uint8Array {
  if (alg === 'none' || form === 'empty') return new Uint8Array();
  if (alg === 'HS256') return createHmac('sha256', publicJwkJson).update(input).digest();
  const key = signers[signer]!;
  const hash = key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'sha384' : 'sha256';
  if (form === 'der') return signWith(hash, Buffer.from(input), key);
  const raw = signWith(hash, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  switch (form) {
    case 'high-s': {
      // (r, n - s): the other valid ECDSA signature of the same message.
      const half = raw.length / 2;
      const s = BigInt(`0x${raw.subarray(half).toString('hex')}`);
      return Buffer.concat([raw.subarray(0, half), Buffer.from((N_P256 - s).toString(16).padStart(half * 2, '0'), 'hex')]);
    }
    case 'short':
      return raw.subarray(0, raw.length - 1);
    case 'long':
      return Buffer.concat([raw, Buffer.from([0])]);
    case 'zeros':
      return Buffer.alloc(raw.length);
    default:
      return raw;
  }
}

const headerArb = fc
  .record({
    alg: fc.oneof({ weight: 20, arbitrary: fc.constant<unknown>('ES256') }, { weight: 1, arbitrary: fc.constantFrom<unknown>('none', 'HS256', 'ES384', 'RS256', 'es256', '', 'EdDSA', null) }),
    kid: kidArb('sign'),
    typ: fc.oneof({ weight: 10, arbitrary: fc.constant<unknown>('JWT') }, { weight: 1, arbitrary: fc.constantFrom<unknown>(absent, 'jwt', 'application/JWT', 'at+jwt', 'application/at+jwt', 'JOSE', 1, null) }),
    extra: extraHeader,
  })
  .map(({ alg, kid, typ, extra }) => () => {
    const header: Record<string, unknown> = { alg, kid: kid(), ...extra };
    if (typ !== absent) header.typ = typ;
    if (header.kid === undefined) delete header.kid;
    return header;
  });

const tokenCase = fc.record({
  header: headerArb,
  claims: claimsArb,
  rawHeader: rarely(jsonText(fc.constant({ alg: 'ES256', typ: 'JWT' })), 20),
  rawClaims: rarely(jsonText(claimsArb), 8),
  headerEncoding: encodingArb,
  payloadEncoding: encodingArb,
  signatureEncoding: encodingArb,
  signer: fc.oneof({ weight: 12, arbitrary: fc.constant('active') }, { weight: 1, arbitrary: fc.constantFrom('retired', 'revoked', 'stranger', 'p384') }),
  form: fc.oneof({ weight: 12, arbitrary: fc.constant<SignatureForm>('p1363') }, { weight: 1, arbitrary: fc.constantFrom<SignatureForm>('der', 'high-s', 'empty', 'short', 'long', 'zeros') }),
  shape: fc.oneof({ weight: 20, arbitrary: fc.constant('jws') }, { weight: 1, arbitrary: fc.constantFrom('five-parts', 'two-parts', 'the-valid-token', 'the-valid-cookie', 'padded-to-limit', 'padded-to-limit') }),
  edits: fc.oneof({ weight: 2, arbitrary: fc.constant([] as Mutation[]) }, { weight: 1, arbitrary: mutations }),
  now: nowArb,
  skew: skewArb,
});

type TokenCase = typeof tokenCase extends fc.Arbitrary<infer T> ? T : never;
function buildToken(c: TokenCase): string {
  if (c.shape === 'the-valid-token') return mutate(validToken, c.edits);
  if (c.shape === 'the-valid-cookie') return mutate(validCookie, c.edits);
  const header = c.header();
  const headerBytes = c.rawHeader ?? Buffer.from(JSON.stringify(header));
  const claims = c.shape === 'padded-to-limit' ? { ...c.claims, pad: 'x'.repeat(2_900 + (c.now % 200)) } : c.claims;
  const payloadBytes = c.rawClaims ?? Buffer.from(JSON.stringify(claims));
  const input = `${encode(headerBytes, c.headerEncoding)}.${encode(payloadBytes, c.payloadEncoding)}`;
  const alg = typeof header.alg === 'string' ? header.alg : 'ES256';
  const signature = encode(signToken(input, alg === 'ES384' ? 'ES256' : alg, alg === 'ES384' ? 'p384' : c.signer, c.form), c.signatureEncoding);
  let token = `${input}.${signature}`;
  if (c.shape === 'five-parts') token = `${token}.${b64u(randomBytes(12))}.${b64u(randomBytes(16))}`;
  if (c.shape === 'two-parts') token = input;
  return mutate(token, c.edits);
}

// --- cookies ----------------------------------------------------------------------------------
const cookieHeaderArb = fc
  .record({
    alg: fc.oneof({ weight: 20, arbitrary: fc.constant<unknown>('dir') }, { weight: 1, arbitrary: fc.constantFrom<unknown>('none', 'A256KW', 'RSA-OAEP', 'DIR', null) }),
    enc: fc.oneof({ weight: 20, arbitrary: fc.constant<unknown>('A256GCM') }, { weight: 1, arbitrary: fc.constantFrom<unknown>('A128CBC-HS256', 'A128GCM', 'a256gcm', absent) }),
    kid: kidArb('encrypt'),
    extra: extraHeader,
  })
  .map(({ alg, enc, kid, extra }) => () => {
    const header: Record<string, unknown> = { alg, kid: kid(), ...extra };
    if (enc !== absent) header.enc = enc;
    if (header.kid === undefined) delete header.kid;
    return header;
  });

const cookieCase = fc.record({
  header: cookieHeaderArb,
  claims: claimsArb,
  rawHeader: rarely(jsonText(fc.constant({ alg: 'dir', enc: 'A256GCM' })), 20),
  rawClaims: rarely(jsonText(claimsArb), 8),
  headerEncoding: encodingArb,
  partEncoding: encodingArb,
  sealer: fc.oneof({ weight: 12, arbitrary: fc.constant('active') }, { weight: 1, arbitrary: fc.constantFrom('retired', 'revoked', 'stranger') }),
  ivBytes: fc.oneof({ weight: 20, arbitrary: fc.constant(12) }, { weight: 1, arbitrary: fc.constantFrom(0, 8, 16) }),
  tagForm: fc.oneof({ weight: 20, arbitrary: fc.constant('whole') }, { weight: 1, arbitrary: fc.constantFrom('short', 'long', 'moved', 'empty') }),
  encryptedKey: fc.oneof({ weight: 20, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('AAAA', ' ', '*', 'A') }),
  compress: fc.boolean(),
  shape: fc.oneof({ weight: 20, arbitrary: fc.constant('jwe') }, { weight: 1, arbitrary: fc.constantFrom('three-parts', 'six-parts', 'the-valid-cookie', 'the-valid-token', 'padded-to-limit', 'jose-sealed', 'jose-sealed', 'jose-sealed') }),
  edits: fc.oneof({ weight: 2, arbitrary: fc.constant([] as Mutation[]) }, { weight: 1, arbitrary: mutations }),
  now: nowArb,
  skew: skewArb,
});

type CookieCase = typeof cookieCase extends fc.Arbitrary<infer T> ? T : never;
async function buildCookie(c: CookieCase): Promise<string> {
  if (c.shape === 'the-valid-cookie') return mutate(validCookie, c.edits);
  if (c.shape === 'the-valid-token') return mutate(validToken, c.edits);
  const header = c.header();
  if (c.shape === 'jose-sealed') {
    // jose's own sealing, with any header it accepts.
    const { zip: _zip, crit: _crit, b64: _b64, ...safe } = header;
    const aes = await crypto.subtle.importKey('raw', sealers[c.sealer]!.export(), 'AES-GCM', false, ['encrypt']);
    const sealed = await new EncryptJWT(c.claims)
      .setProtectedHeader({ ...safe, alg: 'dir', enc: 'A256GCM' } as never)
      .encrypt(aes)
      .catch(() => validCookie); // a header jose will not seal with
    return mutate(sealed, c.edits);
  }
  const headerBytes = c.rawHeader ?? Buffer.from(JSON.stringify(header));
  const encodedHeader = encode(headerBytes, c.headerEncoding);
  const claims = c.shape === 'padded-to-limit' ? { ...c.claims, pad: 'x'.repeat(2_900 + (c.now % 300)) } : c.claims;
  let plaintext = c.rawClaims ?? Buffer.from(JSON.stringify(claims));
  if (c.compress && header.zip === 'DEF') plaintext = deflateRawSync(plaintext);
  const iv = randomBytes(c.ivBytes);
  const cipher = createCipheriv('aes-256-gcm', sealers[c.sealer]!, iv.length === 0 ? randomBytes(12) : iv, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(encodedHeader, 'latin1'));
  let ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  let tag = cipher.getAuthTag();
  if (c.tagForm === 'short') tag = tag.subarray(0, 15);
  if (c.tagForm === 'long') tag = Buffer.concat([tag, Buffer.from([0])]);
  if (c.tagForm === 'empty') tag = Buffer.alloc(0);
  if (c.tagForm === 'moved' && ciphertext.length > 0) {
    // The last ciphertext byte moved into the tag: the same bytes concatenated.
    tag = Buffer.concat([ciphertext.subarray(-1), tag]);
    ciphertext = ciphertext.subarray(0, -1);
  }
  const parts = [encodedHeader, c.encryptedKey, encode(iv, c.partEncoding), encode(ciphertext, c.partEncoding), encode(tag, c.partEncoding)];
  if (c.shape === 'three-parts') parts.splice(1, 2);
  if (c.shape === 'six-parts') parts.push('AAAA');
  return mutate(parts.join('.'), c.edits);
}

// --- the properties ---------------------------------------------------------------------------
describe('node:crypto verification agrees with jose (the oracle)', () => {
  it(`on ${TOKEN_RUNS} generated, forged and mutated bearer tokens`, async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(tokenCase, async (c) => {
        const token = buildToken(c);
        const expected = await oracleToken(token, c.now, c.skew);
        const got = await actual(verifyAccessToken, 'sign', token, c.now, c.skew);
        expect(got, token).toEqual(expected);
        const label = 'user' in got ? 'OK' : got.code;
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      { numRuns: TOKEN_RUNS },
    );
    if (process.env.SHOW_OUTCOMES) console.log(JSON.stringify([...seen])); // SHOW_OUTCOMES=1: how often each outcome came up
    // The generators reach every outcome, each often enough to matter.
    for (const code of ['OK', 'ERR_TOKEN_TOO_LARGE', 'ERR_TOKEN_MALFORMED', 'ERR_TOKEN_ALG', 'ERR_TOKEN_KEY', 'ERR_TOKEN_INVALID', 'ERR_TOKEN_CLAIMS', 'ERR_TOKEN_EXPIRED']) {
      expect(seen.get(code) ?? 0, `${code} in ${JSON.stringify([...seen])}`).toBeGreaterThan(100);
    }
  }, 300_000);

  it(`on ${COOKIE_RUNS} generated, forged and mutated auth cookies`, async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(cookieCase, async (c) => {
        const cookie = await buildCookie(c);
        const expected = await oracleCookie(cookie, c.now, c.skew);
        const got = await actual(openAuthCookie, 'encrypt', cookie, c.now, c.skew);
        expect(got, cookie).toEqual(expected);
        const label = 'user' in got ? 'OK' : got.code;
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      { numRuns: COOKIE_RUNS },
    );
    if (process.env.SHOW_OUTCOMES) console.log(JSON.stringify([...seen]));
    for (const code of ['OK', 'ERR_COOKIE_TOO_LARGE', 'ERR_COOKIE_MALFORMED', 'ERR_COOKIE_KEY', 'ERR_COOKIE_INVALID', 'ERR_COOKIE_CLAIMS', 'ERR_COOKIE_EXPIRED']) {
      expect(seen.get(code) ?? 0, `${code} in ${JSON.stringify([...seen])}`).toBeGreaterThan(100);
    }
  }, 300_000);
});

describe('cookies sealed before node:crypto opened them', () => {
  it('open unchanged: the old sealing code (jose, WebCrypto key) and the new opening path', async () => {
    const ring = holder.current!;
    const key = ring.active('encrypt')!;
    // Exactly what sealAuthCookie did before this change.
    const aes = await crypto.subtle.importKey('raw', (key.secret as KeyObject).export(), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    const old = await new EncryptJWT({})
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: key.meta.kid })
      .setSubject('alice')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(T0S)
      .setExpirationTime(T0S + 8 * 3600)
      .encrypt(aes);
    verifyCacheFor(holder, 'encrypt').clear();
    expect(await openAuthCookie(holder, old, { now: T0 + 60_000, clockSkewMs: 30_000 })).toBe('alice');
    // ...until they expire, like before.
    verifyCacheFor(holder, 'encrypt').clear();
    const late = await actual(openAuthCookie, 'encrypt', old, T0 + 8 * 3_600_000 + 31_000, 30_000);
    expect(late).toEqual({ code: 'ERR_COOKIE_EXPIRED' });
    // A cookie of the key before (retired by rotation) still opens too.
    const retired = await new EncryptJWT({ sub: 'bob', iss: ISSUER, aud: AUDIENCE, iat: T0S, exp: T0S + 3600 })
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: kids.encrypt[1]! })
      .encrypt(await crypto.subtle.importKey('raw', sealers.retired!.export(), 'AES-GCM', false, ['encrypt']));
    expect(await actual(openAuthCookie, 'encrypt', retired, T0, 30_000)).toEqual({ user: 'bob' });
  });

  it('a token signed by jose (as minted before) verifies on the new path', async () => {
    const key = holder.current!.active('sign')!;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: key.meta.kid, typ: 'JWT' })
      .setSubject('alice')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(T0S)
      .setExpirationTime(T0S + 900)
      .sign(key.secret as CryptoKey);
    expect(await actual(verifyAccessToken, 'sign', token, T0, 30_000)).toEqual({ user: 'alice' });
  });
});
