import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { mintToken, needsRenewal, sealCookie } from '../../../app/src/auth/credentials.js';
import { checkCookie, checkToken } from '../support/verifiers.js';
import { CredentialRevocations, credentialId } from '../../../app/src/auth/revocations.js';
import { KeyfleetError } from '../../../app/src/lib/errors.js';
import { caught, loadedHolder, rotateKey, silentLog, T0 } from '../support/ring.js';

// Credentials carry what revocation and renewal need (jti, issue time in ms, refresh family,
// login time), read only from a credential that verified; a revoked one is a 401 even when
// the verify cache answers for it.

const LIFETIMES = { idleMs: 30 * 60_000, absoluteMs: 8 * 3_600_000 };
const OPTIONS = { clockSkewMs: 0 };

function memoryRevocations(clock: { now(): number }) {
  const redis = { eval: async () => 1 } as unknown as Redis;
  return new CredentialRevocations({ redis, subscriber: new EventEmitter() as unknown as Redis, clock, log: silentLog, horizonMs: 10 * 3_600_000, reloadIntervalMs: 60_000 });
}

describe('access tokens', () => {
  it('carry their jti, issue time in ms and refresh family; a revoked jti or family is refused, cached or not', async () => {
    const { holder, ring, clock } = await loadedHolder();
    const revocations = memoryRevocations(clock);
    const { token } = await mintToken(ring, { user: 'alice', ttlMs: 60_000, now: T0 + 123, family: 'fam1' });
    const claims = await checkToken(holder, revocations, token, { now: T0 + 200, ...OPTIONS });
    expect(claims).toMatchObject({ user: 'alice', issuedAtMs: T0 + 123, family: 'fam1', expMs: Math.floor((T0 + 123) / 1000) * 1000 + 60_000 });
    // Checked twice: the second time the verify cache answers; the revocation still applies.
    await checkToken(holder, revocations, token, { now: T0 + 200, ...OPTIONS });
    await revocations.revoke({ ids: [{ id: credentialId.family('fam1'), until: T0 + 60_000 }] });
    const error = await caught(() => checkToken(holder, revocations, token, { now: T0 + 300, ...OPTIONS }));
    expect((error as KeyfleetError).code).toBe('ERR_TOKEN_REVOKED');
    expect((error as KeyfleetError).status).toBe(401);
  });

  it('a login in the same second after logging out everywhere is not refused (ms, not seconds)', async () => {
    const { holder, ring, clock } = await loadedHolder();
    const revocations = memoryRevocations(clock);
    const before = (await mintToken(ring, { user: 'alice', ttlMs: 60_000, now: T0 + 100 })).token;
    await revocations.revoke({ users: [{ user: 'alice', at: T0 + 400 }] });
    const after = (await mintToken(ring, { user: 'alice', ttlMs: 60_000, now: T0 + 401 })).token;
    expect(((await caught(() => checkToken(holder, revocations, before, { now: T0 + 500, ...OPTIONS }))) as KeyfleetError).code).toBe('ERR_TOKEN_REVOKED');
    expect((await checkToken(holder, revocations, after, { now: T0 + 500, ...OPTIONS })).user).toBe('alice');
  });
});

describe('the sliding auth cookie', () => {
  it('keeps its jti and login time across renewals; ending the jti ends every generation', async () => {
    const { holder, ring, clock } = await loadedHolder();
    const revocations = memoryRevocations(clock);
    const first = await sealCookie(ring, { user: 'alice', now: T0 }, LIFETIMES);
    expect(first.maxAgeMs).toBe(LIFETIMES.idleMs);
    const claims = await checkCookie(holder, revocations, first.value, { now: T0 + 1000, ...OPTIONS });
    const second = await sealCookie(ring, { user: 'alice', now: T0 + 20 * 60_000, jti: claims.jti, startedAtMs: claims.startedAtMs }, LIFETIMES);
    const renewed = await checkCookie(holder, revocations, second.value, { now: T0 + 20 * 60_000, ...OPTIONS });
    expect(renewed).toMatchObject({ jti: claims.jti, startedAtMs: T0, issuedAtMs: T0 + 20 * 60_000 });
    await revocations.revoke({ ids: [{ id: credentialId.jti(claims.jti!), until: T0 + LIFETIMES.absoluteMs }] });
    for (const value of [first.value, second.value]) {
      const error = await caught(() => checkCookie(holder, revocations, value, { now: T0 + 20 * 60_000, ...OPTIONS }));
      expect((error as KeyfleetError).code).toBe('ERR_COOKIE_REVOKED');
    }
  });

  it('logging out everywhere ends a login whose cookie was renewed after it (by a node that had not heard yet)', async () => {
    const { holder, ring, clock } = await loadedHolder();
    const revocations = memoryRevocations(clock);
    const first = await sealCookie(ring, { user: 'alice', now: T0 }, LIFETIMES);
    const claims = await checkCookie(holder, revocations, first.value, { now: T0, ...OPTIONS });
    const renewedLate = await sealCookie(ring, { user: 'alice', now: T0 + 2_000, jti: claims.jti, startedAtMs: T0 }, LIFETIMES);
    await revocations.revoke({ users: [{ user: 'alice', at: T0 + 1_000 }] });
    const error = await caught(() => checkCookie(holder, revocations, renewedLate.value, { now: T0 + 3_000, ...OPTIONS }));
    expect((error as KeyfleetError).code).toBe('ERR_COOKIE_REVOKED');
    const newLogin = await sealCookie(ring, { user: 'alice', now: T0 + 1_001 }, LIFETIMES);
    expect((await checkCookie(holder, revocations, newLogin.value, { now: T0 + 3_000, ...OPTIONS })).user).toBe('alice');
  });

  it('is renewed past half its idle window or when its key is no longer active, never past its absolute lifetime', async () => {
    const { holder, ring, masterKey, doc, store } = await loadedHolder();
    const sealed = await sealCookie(ring, { user: 'alice', now: T0 }, LIFETIMES);
    const claims = await checkCookie(holder, undefined, sealed.value, { now: T0, ...OPTIONS });
    expect(needsRenewal(claims, ring, T0 + LIFETIMES.idleMs / 2 - 1, LIFETIMES)).toBe(false);
    expect(needsRenewal(claims, ring, T0 + LIFETIMES.idleMs / 2, LIFETIMES)).toBe(true);
    // A rotation of the encrypt key: the cookie is due at once.
    store.doc = await rotateKey(doc, 'encrypt', T0 + 1000, masterKey);
    const rotated = (await holder.reload('rotation'))!;
    expect(needsRenewal(claims, rotated, T0 + 2000, LIFETIMES)).toBe(true);
    // Near the end of its absolute lifetime, the renewal is sealed only until then.
    const late = T0 + LIFETIMES.absoluteMs - 60_000;
    expect((await sealCookie(rotated, { user: 'alice', now: late, jti: claims.jti, startedAtMs: T0 }, LIFETIMES)).maxAgeMs).toBe(60_000);
    expect(needsRenewal(claims, rotated, T0 + LIFETIMES.absoluteMs, LIFETIMES)).toBe(false);
  });
});
