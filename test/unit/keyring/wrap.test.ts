import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { masterKeyId, unwrapMaterial, wrapMaterial } from '../../../app/src/keyring/wrap.js';
import { caught, flipByte, newMasterKey } from '../support/ring.js';

describe('wrapMaterial / unwrapMaterial', () => {
  const masterKey = newMasterKey();
  const secret = randomBytes(32);

  it('round-trips the material for the same kid and purpose', () => {
    const wrapped = wrapMaterial(masterKey, 'cookie-1', 'cookie', secret);
    expect(wrapped.startsWith('v1.')).toBe(true);
    expect(unwrapMaterial(masterKey, 'cookie-1', 'cookie', wrapped).equals(secret)).toBe(true);
  });

  it('never stores the plaintext and uses a fresh IV each time', () => {
    const a = wrapMaterial(masterKey, 'k', 'encrypt', secret);
    const b = wrapMaterial(masterKey, 'k', 'encrypt', secret);
    expect(a).not.toBe(b);
    expect(Buffer.from(a.slice(3), 'base64url').includes(secret)).toBe(false);
  });

  it('refuses another master key with ERR_MASTER_KEY_MISMATCH', async () => {
    const wrapped = wrapMaterial(masterKey, 'k', 'sign', secret);
    const error = await caught(() => unwrapMaterial(newMasterKey(), 'k', 'sign', wrapped));
    expect(error.code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it('binds the material to its kid: swapping entries fails', async () => {
    const wrappedA = wrapMaterial(masterKey, 'kid-a', 'cookie', secret);
    const error = await caught(() => unwrapMaterial(masterKey, 'kid-b', 'cookie', wrappedA));
    expect(error.code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it('binds the material to its purpose', async () => {
    const wrapped = wrapMaterial(masterKey, 'kid-a', 'cookie', secret);
    const error = await caught(() => unwrapMaterial(masterKey, 'kid-a', 'encrypt', wrapped));
    expect(error.code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it('detects a tampered ciphertext', async () => {
    const wrapped = wrapMaterial(masterKey, 'k', 'cookie', secret);
    const tampered = `v1.${flipByte(wrapped.slice(3))}`;
    expect(tampered).not.toBe(wrapped);
    const error = await caught(() => unwrapMaterial(masterKey, 'k', 'cookie', tampered));
    expect(error.code).toBe('ERR_MASTER_KEY_MISMATCH');
  });

  it.each([
    ['another format', (w: string) => `v2.${w.slice(3)}`],
    ['no format prefix', (w: string) => w.slice(3)],
    ['too short to hold IV and tag', () => `v1.${randomBytes(20).toString('base64url')}`],
    ['empty', () => ''],
  ])('refuses material with %s as ERR_KEY_MATERIAL_FORMAT', async (_label, mangle) => {
    const wrapped = wrapMaterial(masterKey, 'k', 'cookie', secret);
    const error = await caught(() => unwrapMaterial(masterKey, 'k', 'cookie', mangle(wrapped)));
    expect(error.code).toBe('ERR_KEY_MATERIAL_FORMAT');
  });
});

describe('masterKeyId', () => {
  it('is stable for one key and different for another', () => {
    const key = newMasterKey();
    expect(masterKeyId(key)).toBe(masterKeyId(Buffer.from(key)));
    expect(masterKeyId(key)).not.toBe(masterKeyId(newMasterKey()));
  });

  it('is a short base64url string that does not contain the key', () => {
    const key = newMasterKey();
    const id = masterKeyId(key);
    expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
    expect(key.toString('base64url')).not.toContain(id);
  });
});
