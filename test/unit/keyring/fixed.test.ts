import { describe, expect, it } from 'vitest';
import { mintAccessToken } from '../../../app/src/auth/tokens.js';
import { verifyAccessToken } from '../support/verifiers.js';
import { localRing, staticRing } from '../../../app/src/keyring/fixed.js';
import { PURPOSES } from '../../../app/src/keyring/types.js';
import { caught, FakeClock, FakeStore, makeHolder, newMasterKey, T0 } from '../support/ring.js';

// The two farms keyfleet is measured against: each node with its own keys, and one static
// secret copied everywhere. Two "nodes" here are two rings built in one process.

async function holderFor(doc: Awaited<ReturnType<typeof localRing>>, masterKey: Buffer) {
  const holder = makeHolder(new FakeStore(doc), masterKey, new FakeClock(T0));
  await holder.reload('test', { throwOnError: true });
  return holder;
}

const SECRET = 'copy-me-to-every-server-0123456789abcdef';

describe('KEYRING_MODE=static', () => {
  it('derives the same keys on every node, whatever each node\'s master key', async () => {
    const [keyA, keyB] = [newMasterKey(), newMasterKey()];
    const a = await holderFor(staticRing(SECRET, keyA, T0), keyA);
    const b = await holderFor(staticRing(SECRET, keyB, T0 + 5), keyB);
    expect(a.current!.jwks()).toEqual(b.current!.jwks());
    expect(a.current!.cookieSecrets).toEqual(b.current!.cookieSecrets);
    const { token } = await mintAccessToken(a.current!, { user: 'alice', ttlMs: 60_000, now: T0 });
    expect(await verifyAccessToken(b, token, { now: T0, clockSkewMs: 0 })).toBe('alice');
  });

  it('derives different keys from a different secret', async () => {
    const key = newMasterKey();
    const a = await holderFor(staticRing(SECRET, key, T0), key);
    const b = await holderFor(staticRing(`${SECRET}!`, key, T0), key);
    const { token } = await mintAccessToken(a.current!, { user: 'alice', ttlMs: 60_000, now: T0 });
    // Same kid ("static-sign"), other key: the signature does not verify.
    expect((await caught(() => verifyAccessToken(b, token, { now: T0, clockSkewMs: 0 }))).code).toBe('ERR_TOKEN_INVALID');
  });

  it('has one active key per purpose, ready to serve', () => {
    const doc = staticRing(SECRET, newMasterKey(), T0);
    expect(doc.keys.map((k) => `${k.purpose}:${k.state}`)).toEqual(PURPOSES.map((p) => `${p}:active`));
  });
});

describe('KEYRING_MODE=local', () => {
  it('gives each node keys of its own: what one mints, another refuses', async () => {
    const [keyA, keyB] = [newMasterKey(), newMasterKey()];
    const a = await holderFor(await localRing(keyA, T0), keyA);
    const b = await holderFor(await localRing(keyB, T0), keyB);
    expect(a.current!.complete && b.current!.complete).toBe(true);
    const { token } = await mintAccessToken(a.current!, { user: 'alice', ttlMs: 60_000, now: T0 });
    expect(await verifyAccessToken(a, token, { now: T0, clockSkewMs: 0 })).toBe('alice');
    expect((await caught(() => verifyAccessToken(b, token, { now: T0, clockSkewMs: 0 }))).code).toBe('ERR_TOKEN_KEY');
  });
});
