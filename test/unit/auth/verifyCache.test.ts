import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { sealAuthCookie } from '../../../app/src/auth/authCookie.js';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { VerifyCache, type VerifiedCredential } from '../../../app/src/auth/verifyCache.js';
import { openAuthCookie, verifyAccessToken, verifyCacheFor } from '../support/verifiers.js';
import { activeKey } from '../../../app/src/keyring/lifecycle.js';
import { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import { snapshotAt, b64json, caught, FakeClock, FakeStore, flipByte, loadedHolder, makeHolder, revokeActive, rotateKey, T0 } from '../support/ring.js';

const SKEW = 30_000;
const TOKEN_TTL = 15 * 60_000;
const COOKIE_TTL = 8 * 3_600_000;
const at = (now: number) => ({ now, clockSkewMs: SKEW });

/** What tokens.ts records after a successful verification with the ring's active sign key. */
function verified(ring: RingSnapshot, overrides: Partial<VerifiedCredential> = {}): VerifiedCredential {
  const key = ring.active('sign')!;
  return { user: 'alice', kid: key.meta.kid, key: key.verifyKey, exp: T0 / 1000 + 900, clockSkewMs: SKEW, ...overrides };
}

describe('VerifyCache', () => {
  it('serves an entry until the credential expires, never at or after exp (clock injected)', async () => {
    const { ring } = await loadedHolder();
    const cache = new VerifyCache('sign');
    cache.set('t1', verified(ring), T0);
    expect(cache.get('t1', ring, T0)).toBe('alice');
    expect(cache.get('t1', ring, T0 + 900_000 - 1)).toBe('alice');
    // At exp the entry is gone, even though full verification would still accept within the skew.
    expect(cache.get('t1', ring, T0 + 900_000)).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(cache.get('t1', ring, T0)).toBeUndefined();
  });

  it('does not record a credential already past its exp (accepted only within the skew)', async () => {
    const { ring } = await loadedHolder();
    const cache = new VerifyCache('sign');
    cache.set('late', verified(ring), T0 + 900_000 + 1000);
    expect(cache.size).toBe(0);
  });

  it('does not serve before nbf minus the skew', async () => {
    const { ring } = await loadedHolder();
    const cache = new VerifyCache('sign');
    cache.set('nbf', verified(ring, { nbf: T0 / 1000 + 60 }), T0 + 60_000);
    expect(cache.get('nbf', ring, T0 + 60_000 - SKEW - 1)).toBeUndefined();
    expect(cache.get('nbf', ring, T0 + 60_000 - SKEW)).toBe('alice');
  });

  it('holds at most maxEntries, evicting the least recently used first', async () => {
    const { ring } = await loadedHolder();
    const cache = new VerifyCache('sign', { maxEntries: 3 });
    for (const name of ['a', 'b', 'c']) cache.set(name, verified(ring, { user: name }), T0);
    expect(cache.get('a', ring, T0)).toBe('a'); // a is now the most recently used
    cache.set('d', verified(ring, { user: 'd' }), T0);
    expect(cache.size).toBe(3);
    expect(cache.get('b', ring, T0)).toBeUndefined();
    expect(['a', 'c', 'd'].map((name) => cache.get(name, ring, T0))).toEqual(['a', 'c', 'd']);
    for (let i = 0; i < 100; i++) cache.set(`x${i}`, verified(ring), T0);
    expect(cache.size).toBe(3);
    expect(new VerifyCache('sign', { maxEntries: 0 }).size).toBe(0);
    const none = new VerifyCache('sign', { maxEntries: 0 });
    none.set('a', verified(ring), T0);
    expect(none.get('a', ring, T0)).toBeUndefined();
  });

  it('purges entries of a revoked key, and never serves them even unpurged', async () => {
    const { ring, doc, masterKey } = await loadedHolder();
    const cache = new VerifyCache('sign');
    cache.set('t1', verified(ring), T0);
    cache.set('t2', verified(ring, { user: 'bob' }), T0);
    const revoked = await snapshotAt(revokeActive(doc, 'sign', T0 + 1000), masterKey, ring);
    expect(cache.get('t1', revoked, T0 + 1000)).toBeUndefined(); // checked on lookup
    expect(cache.purge(revoked)).toBe(1); // t2, at once on the ring change
    expect(cache.size).toBe(0);
  });

  it('keeps entries of a key that is still a verifier (retired after rotation), drops re-imported keys', async () => {
    const { ring, doc, masterKey } = await loadedHolder();
    const cache = new VerifyCache('sign');
    cache.set('t1', verified(ring), T0);
    const rotated = await snapshotAt(await rotateKey(doc, 'sign', T0 + 1000, masterKey), masterKey, ring);
    expect(rotated.verifier('sign', verified(ring).kid)?.meta.state).toBe('retired');
    expect(cache.purge(rotated)).toBe(0);
    expect(cache.get('t1', rotated, T0 + 1000)).toBe('alice');
    // The same kid imported afresh (another key object) does not vouch for old entries.
    const reimported = await snapshotAt(doc, masterKey);
    expect(cache.get('t1', reimported, T0 + 1000)).toBeUndefined();
  });

  it('does not serve when no ring is held, or for another purpose of the same kid', async () => {
    const { ring, doc } = await loadedHolder();
    const cache = new VerifyCache('sign');
    cache.set('t1', verified(ring), T0);
    expect(cache.get('t1', undefined, T0)).toBeUndefined();
    const encrypt = new VerifyCache('encrypt');
    encrypt.set('t2', verified(ring, { kid: activeKey(doc, 'sign')!.kid, key: ring.active('encrypt')!.secret }), T0);
    expect(encrypt.get('t2', ring, T0)).toBeUndefined();
  });
});

describe('access tokens through the cache', () => {
  it('records a verified token and answers the repeat from the cache', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TOKEN_TTL, now: T0 });
    const cache = verifyCacheFor(holder, 'sign');
    expect(cache.get(token, holder.current, T0)).toBeUndefined();
    expect(await verifyAccessToken(holder, token, at(T0))).toBe('alice');
    expect(cache.size).toBe(1);
    expect(cache.get(token, holder.current, T0 + 1000)).toBe('alice');
    expect(await verifyAccessToken(holder, token, at(T0 + 1000))).toBe('alice');
    expect(verifyCacheFor(holder, 'sign')).toBe(cache);
  });

  it('never serves a tampered token from the cache, and never records a failure', async () => {
    const { holder, ring } = await loadedHolder();
    const { token, kid } = await mintAccessToken(ring, { user: 'alice', ttlMs: TOKEN_TTL, now: T0 });
    expect(await verifyAccessToken(holder, token, at(T0))).toBe('alice');
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const forgedClaims = [header, b64json({ ...decodeJwt(token), sub: 'root' }), signature].join('.');
    const badSignature = [header, payload, flipByte(signature)].join('.');
    const algNone = `${b64json({ alg: 'none', kid, typ: 'JWT' })}.${payload}.`;
    expect((await caught(() => verifyAccessToken(holder, forgedClaims, at(T0)))).code).toBe('ERR_TOKEN_INVALID');
    expect((await caught(() => verifyAccessToken(holder, badSignature, at(T0)))).code).toBe('ERR_TOKEN_INVALID');
    expect((await caught(() => verifyAccessToken(holder, algNone, at(T0)))).code).toBe('ERR_TOKEN_ALG');
    expect(verifyCacheFor(holder, 'sign').size).toBe(1);
    // And asking twice does not change the answer.
    expect((await caught(() => verifyAccessToken(holder, badSignature, at(T0)))).code).toBe('ERR_TOKEN_INVALID');
  });

  it('stops accepting a cached token the moment its key is revoked', async () => {
    const { holder, ring, store, doc } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TOKEN_TTL, now: T0 });
    expect(await verifyAccessToken(holder, token, at(T0))).toBe('alice');
    expect(verifyCacheFor(holder, 'sign').size).toBe(1);
    store.doc = revokeActive(doc, 'sign', T0 + 1000);
    await holder.reload('test');
    expect(verifyCacheFor(holder, 'sign').size).toBe(0); // purged on the change event
    expect((await caught(() => verifyAccessToken(holder, token, at(T0 + 2000)))).code).toBe('ERR_TOKEN_KEY');
  });

  it('falls back to full verification at exp: the skew still applies, then expiry', async () => {
    const { holder, ring } = await loadedHolder();
    const { token } = await mintAccessToken(ring, { user: 'alice', ttlMs: TOKEN_TTL, now: T0 });
    expect(await verifyAccessToken(holder, token, at(T0))).toBe('alice');
    expect(await verifyAccessToken(holder, token, at(T0 + TOKEN_TTL + SKEW - 1000))).toBe('alice');
    expect(verifyCacheFor(holder, 'sign').size).toBe(0);
    expect((await caught(() => verifyAccessToken(holder, token, at(T0 + TOKEN_TTL + SKEW + 1000)))).code).toBe('ERR_TOKEN_EXPIRED');
  });
});

describe('auth cookies through the cache', () => {
  it('records an opened cookie, never serves a tampered one, and drops it when its key is revoked', async () => {
    const { holder, ring, store, doc } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: COOKIE_TTL, now: T0 });
    expect(await openAuthCookie(holder, cookie, at(T0))).toBe('alice');
    const cache = verifyCacheFor(holder, 'encrypt');
    expect(cache.size).toBe(1);
    expect(cache.get(cookie, holder.current, T0 + 1000)).toBe('alice');
    expect(verifyCacheFor(holder, 'sign').size).toBe(0);

    const parts = cookie.split('.');
    parts[3] = flipByte(parts[3]!); // ciphertext
    expect((await caught(() => openAuthCookie(holder, parts.join('.'), at(T0)))).code).toBe('ERR_COOKIE_INVALID');
    expect(cache.size).toBe(1);

    store.doc = revokeActive(doc, 'encrypt', T0 + 1000);
    await holder.reload('test');
    expect(cache.size).toBe(0);
    expect((await caught(() => openAuthCookie(holder, cookie, at(T0 + 2000)))).code).toBe('ERR_COOKIE_KEY');
  });

  it('a cookie sealed on one node (pre-imported AES key) opens on another that imported the ring itself', async () => {
    const { ring, doc, masterKey } = await loadedHolder();
    const cookie = await sealAuthCookie(ring, { user: 'alice', ttlMs: COOKIE_TTL, now: T0 });
    const other = makeHolder(new FakeStore(doc), masterKey, new FakeClock(T0));
    await other.reload('test', { throwOnError: true });
    expect(other.current!.active('encrypt')!.secret).not.toBe(ring.active('encrypt')!.secret);
    expect(await openAuthCookie(other, cookie, at(T0))).toBe('alice');
    expect(await openAuthCookie(other, await sealAuthCookie(other.current!, { user: 'bob', ttlMs: COOKIE_TTL, now: T0 }), at(T0))).toBe('bob');
  });
});
