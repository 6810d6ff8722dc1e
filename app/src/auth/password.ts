import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

// scrypt parameters as OWASP's password storage cheat sheet suggests (N=2^15, r=8, p=1).
export interface PasswordHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

const DEFAULTS = { N: 32768, r: 8, p: 1, keyLength: 32 };
const MIN_SALT_BYTES = 16;
const MIN_HASH_BYTES = 32;

function derive(password: string, salt: Buffer, N: number, r: number, p: number, keyLength: number) {
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(password, salt, keyLength, { N, r, p, maxmem: 256 * N * r }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** `scrypt.N.r.p.salt.hash` with base64url salt and hash: no `$`, so it survives compose files. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p, keyLength } = DEFAULTS;
  const hash = await derive(password, salt, N, r, p, keyLength);
  return ['scrypt', N, r, p, salt.toString('base64url'), hash.toString('base64url')].join('.');
}

export function parsePasswordHash(text: string): PasswordHash | undefined {
  const match = /^scrypt\.(\d+)\.(\d+)\.(\d+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(text.trim());
  if (!match) return undefined;
  const [N, r, p] = [Number(match[1]), Number(match[2]), Number(match[3])];
  // Bounded so a configured hash cannot make every login run out of memory.
  if (N < 1024 || N > 2 ** 20 || !Number.isInteger(Math.log2(N)) || r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(match[4]!, 'base64url');
  const hash = Buffer.from(match[5]!, 'base64url');
  // A short hash would make any password match (timingSafeEqual of two empty buffers).
  if (salt.length < MIN_SALT_BYTES || hash.length < MIN_HASH_BYTES) return undefined;
  return { N, r, p, salt, hash };
}

export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  if (stored.hash.length < MIN_HASH_BYTES) return false;
  const candidate = await derive(password, stored.salt, stored.N, stored.r, stored.p, stored.hash.length);
  return timingSafeEqual(candidate, stored.hash);
}
