import { describe, expect, it } from 'vitest';
import { generateKey, newKid } from '../../../app/src/keyring/generate.js';
import { unwrapMaterial } from '../../../app/src/keyring/wrap.js';
import { newMasterKey, T0 } from '../support/ring.js';

describe('newKid', () => {
  it('names the purpose and creation time, with a random suffix', () => {
    const kid = newKid('sign', Date.UTC(2026, 10, 24, 1, 53, 0, 123));
    expect(kid).toMatch(/^sign-20261124T015300-[0-9a-f]{8}$/);
    expect(newKid('sign', T0)).not.toBe(newKid('sign', T0));
  });
});

describe('generateKey', () => {
  const masterKey = newMasterKey();

  it.each(['encrypt', 'cookie'] as const)('makes a staged %s key with 32 bytes of wrapped material', async (purpose) => {
    const key = await generateKey(purpose, T0, masterKey);
    expect(key).toMatchObject({ purpose, state: 'staged', createdAt: T0, alg: purpose === 'encrypt' ? 'A256GCM' : 'HS256' });
    expect(key.kid.startsWith(`${purpose}-`)).toBe(true);
    expect(key).not.toHaveProperty('publicJwk');
    expect(unwrapMaterial(masterKey, key.kid, purpose, key.material)).toHaveLength(32);
  });

  it('makes an ES256 sign key that stores only the wrapped private key: the public half is derived when opened', async () => {
    const key = await generateKey('sign', T0, masterKey);
    expect(key.alg).toBe('ES256');
    expect(key).not.toHaveProperty('publicJwk');
    const privateJwk = JSON.parse(unwrapMaterial(masterKey, key.kid, 'sign', key.material).toString('utf8'));
    expect(privateJwk).toMatchObject({ kty: 'EC', crv: 'P-256' });
    expect(privateJwk).toHaveProperty('d');
  });
});
