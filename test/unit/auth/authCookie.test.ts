import { randomBytes } from 'node:crypto';
import { decodeProtectedHeader, EncryptJWT, type JWTPayload } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { sealAuthCookie } from '../../../app/src/auth/authCookie.js';
import { openAuthCookie } from '../support/verifiers.js';
import { AUDIENCE, ISSUER, MAX_TOKEN_BYTES } from '../../../app/src/auth/claims.js';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { activeKey } from '../../../app/src/keyring/lifecycle.js';
import { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import { snapshotAt, b64json, caught, flipByte, loadedHolder, revokeActive, rotateKey, T0 } from '../support/ring.js';

const TTL = 8 * 3_600_000;
const SKEW = 30_000;
const openAt = (now: number) => ({ now, clockSkewMs: SKEW });

/** A cookie encrypted under `secret`, with whatever claims and header we like. */
function encrypt(secret: CryptoKey | Uint8Array, kid: string | undefined, claims: JWTPayload = {}, header: Record<string, unknown> = {}) {
  const iat = Math.floor(T0 / 1000);
  return new EncryptJWT({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, iat, exp: iat + 3600, ...claims })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid, ...header })
    .encrypt(secret);
}

const withActive = (ring: RingSnapshot, claims?: JWTPayload, header?: Record<string, unknown>) => {
  const key = ring.active('encrypt')!;
  return encrypt(key.secret as CryptoKey, key.meta.kid, claims, header);
};

describe('sealAuthCookie', () => {
  it('encrypts a JWE (dir, A256GCM) under the active encrypt key', async () => {
    const { ring } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(cookie.split('.')).toHaveLength(5);
    expect(decodeProtectedHeader(cookie)).toEqual({ alg: 'dir', enc: 'A256GCM', kid: ring.active('encrypt')!.meta.kid });
    expect(cookie).not.toContain(Buffer.from('alice').toString('base64url'));
  });

  it('refuses with ERR_NO_ACTIVE_KEY (503) when the encrypt key is revoked', async () => {
    const { doc, masterKey } = await loadedHolder();
    const ring = await snapshotAt(revokeActive(doc, 'encrypt', T0), masterKey);
    const error = await caught(() => sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 }));
    expect(error.code).toBe('ERR_NO_ACTIVE_KEY');
    expect(error.status).toBe(503);
  });
});

describe('openAuthCookie', () => {
  it('opens a cookie it sealed and returns the user', async () => {
    const { holder, ring } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(await openAuthCookie(holder, cookie, openAt(T0 + 3_600_000))).toBe('alice');
  });

  it('tolerates the clock skew past expiry, then refuses with ERR_COOKIE_EXPIRED', async () => {
    const { holder, ring } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(await openAuthCookie(holder, cookie, openAt(T0 + TTL + SKEW - 1000))).toBe('alice');
    const error = await caught(() => openAuthCookie(holder, cookie, openAt(T0 + TTL + SKEW + 1000)));
    expect(error.code).toBe('ERR_COOKIE_EXPIRED');
    expect(error.status).toBe(401);
    expect((await caught(() => openAuthCookie(holder, cookie, openAt(T0 + 365 * 86_400_000)))).code).toBe('ERR_COOKIE_EXPIRED');
  });

  it.each([
    ['ciphertext', 3],
    ['authentication tag', 4],
    ['IV', 2],
  ])('refuses a cookie with a tampered %s as ERR_COOKIE_INVALID', async (_label, part) => {
    const { holder, ring } = await loadedHolder();
    const parts = (await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 })).split('.');
    parts[part] = flipByte(parts[part]!);
    const error = await caught(() => openAuthCookie(holder, parts.join('.'), openAt(T0)));
    expect(error.code).toBe('ERR_COOKIE_INVALID');
    expect(error.status).toBe(401);
  });

  it('refuses a cookie encrypted under another key that claims the active kid as ERR_COOKIE_INVALID', async () => {
    const { holder, ring } = await loadedHolder();
    const forged = await encrypt(randomBytes(32), ring.active('encrypt')!.meta.kid, { sub: 'root' });
    expect((await caught(() => openAuthCookie(holder, forged, openAt(T0)))).code).toBe('ERR_COOKIE_INVALID');
  });

  it.each([
    ['alg none', { alg: 'none', enc: 'A256GCM' }],
    ['another key management', { alg: 'A256KW', enc: 'A256GCM' }],
    ['another content encryption', { alg: 'dir', enc: 'A128CBC-HS256' }],
  ])('refuses %s as ERR_COOKIE_MALFORMED', async (_label, header) => {
    const { holder, ring } = await loadedHolder();
    const parts = (await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 })).split('.');
    parts[0] = b64json({ ...header, kid: ring.active('encrypt')!.meta.kid });
    const error = await caught(() => openAuthCookie(holder, parts.join('.'), openAt(T0)));
    expect(error.code).toBe('ERR_COOKIE_MALFORMED');
    expect(error.status).toBe(401);
  });

  it('refuses a signed access token offered as the cookie with ERR_COOKIE_MALFORMED', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect((await caught(() => openAuthCookie(holder, token, openAt(T0)))).code).toBe('ERR_COOKIE_MALFORMED');
  });

  it.each([['garbage'], ['a.b.c.d.e'], ['']])('refuses %j as ERR_COOKIE_MALFORMED', async (value) => {
    const { holder } = await loadedHolder();
    expect((await caught(() => openAuthCookie(holder, value, openAt(T0)))).code).toBe('ERR_COOKIE_MALFORMED');
  });

  it('refuses an oversized cookie before any crypto with ERR_COOKIE_TOO_LARGE', async () => {
    const { holder, ring } = await loadedHolder();
    const big = await withActive(ring, { pad: 'x'.repeat(MAX_TOKEN_BYTES) });
    expect(big.length).toBeGreaterThan(MAX_TOKEN_BYTES);
    const error = await caught(() => openAuthCookie(holder, big, openAt(T0)));
    expect(error.code).toBe('ERR_COOKIE_TOO_LARGE');
    expect(error.status).toBe(401);
    expect(await openAuthCookie(holder, await withActive(ring, { pad: 'x' }), openAt(T0))).toBe('alice');
  });

  it.each([
    ['another issuer', { iss: 'someone-else' }],
    ['another audience', { aud: 'someone-else' }],
    ['no subject', { sub: undefined }],
  ])('refuses a cookie with %s as ERR_COOKIE_CLAIMS', async (_label, claims) => {
    const { holder, ring } = await loadedHolder();
    const error = await caught(async () => openAuthCookie(holder, await withActive(ring, claims), openAt(T0)));
    expect(error.code).toBe('ERR_COOKIE_CLAIMS');
    expect(error.status).toBe(401);
  });

  it('refuses a cookie without a kid, or naming a key of another purpose, with ERR_COOKIE_KEY', async () => {
    const { holder, ring, doc } = await loadedHolder();
    const secret = ring.active('encrypt')!.secret as CryptoKey;
    expect((await caught(async () => openAuthCookie(holder, await encrypt(secret, undefined), openAt(T0)))).code).toBe('ERR_COOKIE_KEY');
    const cookieKid = await encrypt(secret, activeKey(doc, 'cookie')!.kid);
    expect((await caught(() => openAuthCookie(holder, cookieKid, openAt(T0)))).code).toBe('ERR_COOKIE_KEY');
  });

  it('refuses a cookie of a revoked key with ERR_COOKIE_KEY, once the ring says so', async () => {
    const { holder, ring, store, doc } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    expect(await openAuthCookie(holder, cookie, openAt(T0))).toBe('alice');
    store.doc = revokeActive(doc, 'encrypt', T0 + 1000);
    await holder.reload('test');
    const error = await caught(() => openAuthCookie(holder, cookie, openAt(T0 + 2000)));
    expect(error.code).toBe('ERR_COOKIE_KEY');
    expect(error.status).toBe(401);
  });

  it('still opens a cookie of a retired key after rotation', async () => {
    const { holder, ring, store, doc, masterKey } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: TTL, now: T0 });
    store.doc = await rotateKey(doc, 'encrypt', T0 + 1000, masterKey);
    await holder.reload('test');
    expect(holder.current!.active('encrypt')!.meta.kid).not.toBe(ring.active('encrypt')!.meta.kid);
    expect(await openAuthCookie(holder, cookie, openAt(T0 + 2000))).toBe('alice');
  });

  it('a node that may have missed a rotation (not in sync) reloads for an unknown kid and opens a cookie from a newer key', async () => {
    const { holder, store, doc, masterKey } = await loadedHolder(T0, { inSync: false });
    const newer = await rotateKey(doc, 'encrypt', T0 + 1000, masterKey);
    const cookie = await sealAuthCookie(await snapshotAt(newer, masterKey), { user: 'alice', ttlMs: TTL, now: T0 + 1000 });
    store.doc = newer;
    const spy = vi.spyOn(holder, 'reloadForUnknownKid');
    expect(await openAuthCookie(holder, cookie, openAt(T0 + 1000))).toBe('alice');
    expect(spy).toHaveBeenCalledTimes(1);
    expect(holder.current!.version).toBe(2);
  });
});
