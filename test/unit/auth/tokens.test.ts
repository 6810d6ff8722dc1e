import { createHmac } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { AUDIENCE, ISSUER, MAX_TOKEN_BYTES } from '../../../app/src/auth/claims.js';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { verifyAccessToken } from '../support/verifiers.js';
import { activeKey } from '../../../app/src/keyring/lifecycle.js';
import { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import { snapshotAt, b64json, caught, flipByte, loadedHolder, revokeActive, rotateKey, T0 } from '../support/ring.js';

const TTL = 15 * 60_000;
const SKEW = 30_000;
const verifyAt = (now: number) => ({ now, clockSkewMs: SKEW });

/** A token signed with the ring's active sign key, with whatever claims and header we like. */
async function signWithActive(ring: RingSnapshot, claims: JWTPayload, header: Record<string, unknown> = {}) {
  const key = ring.active('sign')!;
  const iat = Math.floor(T0 / 1000);
  return new SignJWT({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, iat, exp: iat + 900, ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: key.meta.kid, typ: 'JWT', ...header })
    .sign(key.secret as CryptoKey);
}

describe('mintAccessToken', () => {
  it('signs an ES256 JWT with the active kid and the standard claims', async () => {
    const { ring } = await loadedHolder();
    const { token, expiresIn, kid } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 + 999 });
    expect(kid).toBe(ring.active('sign')!.meta.kid);
    expect(expiresIn).toBe(900);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', kid, typ: 'JWT' });
    const payload = decodeJwt(token);
    expect(payload).toMatchObject({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, iat: T0 / 1000, exp: T0 / 1000 + 900 });
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    const second = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(decodeJwt(second.token).jti).not.toBe(payload.jti);
  });

  it('refuses with ERR_NO_ACTIVE_KEY (503) when the sign key is revoked', async () => {
    const { doc, masterKey } = await loadedHolder();
    const ring = await snapshotAt(revokeActive(doc, 'sign', T0), masterKey);
    const error = await caught(() => mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 }));
    expect(error.code).toBe('ERR_NO_ACTIVE_KEY');
    expect(error.status).toBe(503);
  });
});

describe('verifyAccessToken', () => {
  it('accepts a token it minted and returns the user', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(await verifyAccessToken(holder, token, verifyAt(T0 + 60_000))).toBe('alice');
  });

  it('tolerates the configured clock skew past expiry, then refuses with ERR_TOKEN_EXPIRED', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(await verifyAccessToken(holder, token, verifyAt(T0 + TTL + SKEW - 1000))).toBe('alice');
    const error = await caught(() => verifyAccessToken(holder, token, verifyAt(T0 + TTL + SKEW + 1000)));
    expect(error.code).toBe('ERR_TOKEN_EXPIRED');
    expect(error.status).toBe(401);
  });

  it('refuses a token verified far in the future with ERR_TOKEN_EXPIRED', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    const error = await caught(() => verifyAccessToken(holder, token, verifyAt(T0 + 365 * 86_400_000)));
    expect(error.code).toBe('ERR_TOKEN_EXPIRED');
  });

  it('refuses a token whose payload was changed with ERR_TOKEN_INVALID', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const forged = [header, b64json({ ...decodeJwt(token), sub: 'root' }), signature].join('.');
    const error = await caught(() => verifyAccessToken(holder, forged, verifyAt(T0)));
    expect(error.code).toBe('ERR_TOKEN_INVALID');
    expect(error.status).toBe(401);
    const badSignature = [header, payload, flipByte(signature)].join('.');
    expect((await caught(() => verifyAccessToken(holder, badSignature, verifyAt(T0)))).code).toBe('ERR_TOKEN_INVALID');
  });

  it('refuses a token signed by another key under the active kid with ERR_TOKEN_INVALID', async () => {
    const { holder, ring } = await loadedHolder();
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ sub: 'root' })
      .setProtectedHeader({ alg: 'ES256', kid: ring.active('sign')!.meta.kid, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(T0 / 1000)
      .setExpirationTime(T0 / 1000 + 900)
      .sign(privateKey);
    expect((await caught(() => verifyAccessToken(holder, forged, verifyAt(T0)))).code).toBe('ERR_TOKEN_INVALID');
  });

  it('refuses alg none with ERR_TOKEN_ALG', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    const kid = ring.active('sign')!.meta.kid;
    const unsigned = `${b64json({ alg: 'none', kid, typ: 'JWT' })}.${token.split('.')[1]}.`;
    const error = await caught(() => verifyAccessToken(holder, unsigned, verifyAt(T0)));
    expect(error.code).toBe('ERR_TOKEN_ALG');
    expect(error.status).toBe(401);
  });

  it('refuses HS256 signed with the public key (algorithm confusion) with ERR_TOKEN_ALG', async () => {
    const { holder, ring, doc } = await loadedHolder();
    const sign = activeKey(doc, 'sign')!;
    const signingInput = `${b64json({ alg: 'HS256', kid: sign.kid, typ: 'JWT' })}.${b64json({
      sub: 'root',
      iss: ISSUER,
      aud: AUDIENCE,
      iat: T0 / 1000,
      exp: T0 / 1000 + 900,
    })}`;
    const mac = createHmac('sha256', JSON.stringify(ring.jwks().keys[0])).update(signingInput).digest('base64url');
    const error = await caught(() => verifyAccessToken(holder, `${signingInput}.${mac}`, verifyAt(T0)));
    expect(error.code).toBe('ERR_TOKEN_ALG');
  });

  it('refuses any other algorithm, even one that names a real key, with ERR_TOKEN_ALG', async () => {
    const { holder, ring } = await loadedHolder();
    const { privateKey } = await generateKeyPair('ES384');
    const token = await new SignJWT({ sub: 'root' })
      .setProtectedHeader({ alg: 'ES384', kid: ring.active('sign')!.meta.kid, typ: 'JWT' })
      .sign(privateKey);
    expect((await caught(() => verifyAccessToken(holder, token, verifyAt(T0)))).code).toBe('ERR_TOKEN_ALG');
  });

  it('refuses an oversized token before any crypto with ERR_TOKEN_TOO_LARGE', async () => {
    const { holder, ring } = await loadedHolder();
    // Correctly signed by the active key: only its size is wrong.
    const big = await signWithActive(ring, { pad: 'x'.repeat(MAX_TOKEN_BYTES) });
    expect(big.length).toBeGreaterThan(MAX_TOKEN_BYTES);
    const error = await caught(() => verifyAccessToken(holder, big, verifyAt(T0)));
    expect(error.code).toBe('ERR_TOKEN_TOO_LARGE');
    expect(error.status).toBe(401);
    // The same construction at a legal size verifies, so the size is what was refused.
    expect(await verifyAccessToken(holder, await signWithActive(ring, { pad: 'x' }), verifyAt(T0))).toBe('alice');
  });

  it.each([['not a jwt at all'], ['a.b.c'], ['']])('refuses %j as ERR_TOKEN_MALFORMED', async (token) => {
    const { holder } = await loadedHolder();
    const error = await caught(() => verifyAccessToken(holder, token, verifyAt(T0)));
    expect(error.code).toBe('ERR_TOKEN_MALFORMED');
    expect(error.status).toBe(401);
  });

  it.each([
    ['another issuer', { iss: 'someone-else' }, {}],
    ['another audience', { aud: 'someone-else' }, {}],
    ['no subject', { sub: undefined }, {}],
    ['no typ header', {}, { typ: undefined }],
  ])('refuses a token with %s as ERR_TOKEN_CLAIMS', async (_label, claims, header) => {
    const { holder, ring } = await loadedHolder();
    const token = await signWithActive(ring, claims, header);
    const error = await caught(() => verifyAccessToken(holder, token, verifyAt(T0)));
    expect(error.code).toBe('ERR_TOKEN_CLAIMS');
    expect(error.status).toBe(401);
  });

  it('refuses a token without a kid, or naming a key of another purpose, with ERR_TOKEN_KEY', async () => {
    const { holder, ring, doc } = await loadedHolder();
    const noKid = await signWithActive(ring, {}, { kid: undefined });
    expect((await caught(() => verifyAccessToken(holder, noKid, verifyAt(T0)))).code).toBe('ERR_TOKEN_KEY');
    const encryptKid = await signWithActive(ring, {}, { kid: activeKey(doc, 'encrypt')!.kid });
    expect((await caught(() => verifyAccessToken(holder, encryptKid, verifyAt(T0)))).code).toBe('ERR_TOKEN_KEY');
  });

  it('refuses a token of a revoked key with ERR_TOKEN_KEY, once the ring says so', async () => {
    const { holder, ring, store, doc } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(await verifyAccessToken(holder, token, verifyAt(T0))).toBe('alice');
    store.doc = revokeActive(doc, 'sign', T0 + 1000);
    await holder.reload('test');
    const error = await caught(() => verifyAccessToken(holder, token, verifyAt(T0 + 2000)));
    expect(error.code).toBe('ERR_TOKEN_KEY');
    expect(error.status).toBe(401);
  });

  it('still accepts a token of a retired key after rotation', async () => {
    const { holder, ring, store, doc, masterKey } = await loadedHolder();
    const old = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    store.doc = await rotateKey(doc, 'sign', T0 + 1000, masterKey);
    await holder.reload('test');
    expect(holder.current!.verifier('sign', old.kid)?.meta.state).toBe('retired');
    expect(await verifyAccessToken(holder, old.token, verifyAt(T0 + 2000))).toBe('alice');
    const fresh = await mintAccessToken(holder.current!, { user: 'bob', ttlMs: TTL, now: T0 + 2000 });
    expect(fresh.kid).not.toBe(old.kid);
    expect(await verifyAccessToken(holder, fresh.token, verifyAt(T0 + 2000))).toBe('bob');
  });

  it('a node that may have missed a rotation (not in sync) reloads for an unknown kid and accepts a token from a newer key', async () => {
    const { holder, store, doc, masterKey } = await loadedHolder(T0, { inSync: false });
    const newer = await rotateKey(doc, 'sign', T0 + 1000, masterKey);
    const { token, kid } = await mintAccessToken(await snapshotAt(newer, masterKey), { user: 'alice', ttlMs: TTL, now: T0 + 1000 });
    store.doc = newer; // committed by the primary; this node has not heard yet
    expect(holder.current!.has(kid)).toBe(false);
    const spy = vi.spyOn(holder, 'reloadForUnknownKid');

    expect(await verifyAccessToken(holder, token, verifyAt(T0 + 1000))).toBe('alice');
    expect(spy).toHaveBeenCalledTimes(1);
    expect(holder.current!.version).toBe(2);
  });

  it('refuses a flood of forged kids without a single read while in sync (propagate-then-activate: it has every key)', async () => {
    const { holder, ring, store, clock } = await loadedHolder();
    const forged = (n: number) => signWithActive(ring, {}, { kid: `sign-forged-${n}` });
    for (let n = 0; n < 50; n++) {
      expect((await caught(async () => verifyAccessToken(holder, await forged(n), verifyAt(clock.now())))).code).toBe('ERR_TOKEN_KEY');
    }
    expect(store.reads).toBe(1); // the initial load only
  });

  it('a node not in sync reads at most once a second for unknown kids, and otherwise answers 503 ERR_RING_STALE for another node to take', async () => {
    const { holder, ring, store, clock } = await loadedHolder(T0, { inSync: false });
    const forged = (n: number) => signWithActive(ring, {}, { kid: `sign-forged-${n}` });
    // The first one reads Redis: the ring held is then what Redis holds, and the kid is not in it.
    expect((await caught(async () => verifyAccessToken(holder, await forged(0), verifyAt(clock.now())))).code).toBe('ERR_TOKEN_KEY');
    for (let n = 1; n < 5; n++) {
      expect(await caught(async () => verifyAccessToken(holder, await forged(n), verifyAt(clock.now())))).toMatchObject({ code: 'ERR_RING_STALE', status: 503 });
    }
    expect(store.reads).toBe(2); // the initial load, and one reload
    clock.advance(1000);
    await caught(async () => verifyAccessToken(holder, await forged(99), verifyAt(clock.now())));
    expect(store.reads).toBe(3);
  });
});

describe('header and claim checks an attacker might probe', () => {
  it('refuses a critical header parameter it does not understand (RFC 7515 §4.1.11)', async () => {
    const { holder, ring } = await loadedHolder();
    // jose will not even sign this, so sign by hand (JWS ES256 = P1363 r||s, as WebCrypto makes it).
    const key = ring.active('sign')!;
    const iat = Math.floor(T0 / 1000);
    const handSigned = async (extra: object) => {
      const input = `${b64json({ alg: 'ES256', kid: key.meta.kid, typ: 'JWT', ...extra })}.${b64json({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, iat, exp: iat + 900 })}`;
      const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key.secret as CryptoKey, new TextEncoder().encode(input));
      return `${input}.${Buffer.from(signature).toString('base64url')}`;
    };
    // The hand signing is right: without `crit` the same token verifies.
    expect(await verifyAccessToken(holder, await handSigned({}), verifyAt(T0))).toBe('alice');
    const token = await handSigned({ crit: ['x-policy'], 'x-policy': 'ignore-exp' });
    expect((await caught(() => verifyAccessToken(holder, token, verifyAt(T0)))).code).toBe('ERR_TOKEN_INVALID');
  });

  it('refuses a token not yet valid (nbf) beyond the clock skew, accepts it within', async () => {
    const { holder, ring } = await loadedHolder();
    const nbf = Math.floor(T0 / 1000) + 120;
    const token = await signWithActive(ring, { nbf });
    expect((await caught(() => verifyAccessToken(holder, token, verifyAt(T0)))).code).toBe('ERR_TOKEN_CLAIMS');
    expect(await verifyAccessToken(holder, token, verifyAt(T0 + 120_000 - SKEW + 1_000))).toBe('alice');
  });
});
