import { randomBytes, scryptSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashPassword, parsePasswordHash, verifyPassword } from '../../../app/src/auth/password.js';

/** A hash with cheap parameters (N=1024), made without the code under test. */
function cheapHash(password: string, N = 1024, r = 8, p = 1) {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, 32, { N, r, p });
  return `scrypt.${N}.${r}.${p}.${salt.toString('base64url')}.${hash.toString('base64url')}`;
}

describe('hashPassword / verifyPassword', () => {
  // The only test at full cost (N=32768): three derivations.
  it('hashes with the OWASP parameters and verifies only the right password', async () => {
    const text = await hashPassword('correct horse');
    expect(text).toMatch(/^scrypt\.32768\.8\.1\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    expect(text).not.toContain('$');
    const parsed = parsePasswordHash(text)!;
    expect(parsed).toMatchObject({ N: 32768, r: 8, p: 1 });
    expect(await verifyPassword('correct horse', parsed)).toBe(true);
    expect(await verifyPassword('correct horsE', parsed)).toBe(false);
  });

  it('verifies with the parameters stored in the hash', async () => {
    const parsed = parsePasswordHash(cheapHash('s3cret', 1024, 4, 2))!;
    expect(parsed).toMatchObject({ N: 1024, r: 4, p: 2 });
    expect(parsed.salt).toHaveLength(16);
    expect(parsed.hash).toHaveLength(32);
    expect(await verifyPassword('s3cret', parsed)).toBe(true);
    expect(await verifyPassword('', parsed)).toBe(false);
  });

  it('salts: the same password hashes differently each time', () => {
    expect(cheapHash('same')).not.toBe(cheapHash('same'));
  });
});

describe('parsePasswordHash', () => {
  const good = 'scrypt.16384.8.1.c2FsdHNhbHRzYWx0c2FsdA.aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';

  it('parses a well-formed string, ignoring surrounding whitespace', () => {
    const parsed = parsePasswordHash(`  ${good}\n`);
    expect(parsed).toMatchObject({ N: 16384, r: 8, p: 1 });
    expect(parsed?.salt.toString()).toBe('saltsaltsaltsalt');
    expect(parsed?.hash.toString()).toBe('hashhashhashhashhashhashhashhash');
  });

  it.each([
    ['empty', ''],
    ['another scheme', good.replace('scrypt', 'bcrypt')],
    ['a $-separated hash', good.replaceAll('.', '$')],
    ['a missing part', good.split('.').slice(0, 5).join('.')],
    ['an extra part', `${good}.extra`],
    ['N not a power of two', good.replace('16384', '16000')],
    ['N = 1', good.replace('16384', '1')],
    ['N = 0', good.replace('16384', '0')],
    ['r = 0', good.replace('.8.', '.0.')],
    ['p = 0', good.replace('.8.1.', '.8.0.')],
    ['a negative N', good.replace('16384', '-16384')],
    ['standard base64 characters', good.replace('c2FsdH', 'c2F+dH')],
    ['text after a newline', `${good}\nmore`],
  ])('rejects %s', (_label, text) => {
    expect(parsePasswordHash(text)).toBeUndefined();
  });
});

describe('hashes too short to mean anything', () => {
  it('are refused when parsed: a zero-byte hash would match any password', () => {
    expect(parsePasswordHash('scrypt.32768.8.1.A.A')).toBeUndefined();
    expect(parsePasswordHash('scrypt.32768.8.1.AA.AA')).toBeUndefined();
    expect(parsePasswordHash(`scrypt.32768.8.1.${'A'.repeat(22)}.${'A'.repeat(20)}`)).toBeUndefined();
  });

  it('never verify', async () => {
    expect(await verifyPassword('x', { N: 1024, r: 8, p: 1, salt: Buffer.alloc(16), hash: Buffer.alloc(0) })).toBe(false);
  });

  it('bounds N so a configured hash cannot exhaust memory at login', () => {
    const tail = `${'A'.repeat(22)}.${'A'.repeat(43)}`;
    expect(parsePasswordHash(`scrypt.4294967297.8.1.${tail}`)).toBeUndefined();
    expect(parsePasswordHash(`scrypt.${2 ** 21}.8.1.${tail}`)).toBeUndefined();
    expect(parsePasswordHash(`scrypt.32768.8.1.${tail}`)).toBeDefined();
  });
});
