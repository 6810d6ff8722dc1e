import { readFile } from 'node:fs/promises';
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import type { Role } from './claims.js';

// The app's own users: keyfleet never sees this file. A JSON map of name to
// { password: "scrypt:N:r:p:salt:hash", role }; `node dist/users.js hash <password>` makes an entry.

export interface User {
  name: string;
  role: Role;
}

interface StoredUser {
  password: string;
  role: Role;
}

const derive = (password: string, salt: Buffer, N: number, r: number, p: number, length: number) =>
  new Promise<Buffer>((resolve, reject) =>
    scrypt(password, salt, length, { N, r, p, maxmem: 256 * N * r }, (error, key) => (error ? reject(error) : resolve(key))),
  );

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await derive(password, salt, 16384, 8, 1, 32);
  return ['scrypt', 16384, 8, 1, salt.toString('base64url'), hash.toString('base64url')].join(':');
}

export class UserStore {
  private constructor(private readonly users: Map<string, StoredUser>) {}

  static async fromFile(path: string): Promise<UserStore> {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Record<string, StoredUser>;
    const users = new Map<string, StoredUser>();
    for (const [name, entry] of Object.entries(parsed)) {
      if (!/^scrypt:\d+:\d+:\d+:[\w-]+:[\w-]+$/.test(entry.password ?? '') || (entry.role !== 'editor' && entry.role !== 'reader')) {
        throw new Error(`${path}: user ${name} needs a password "scrypt:N:r:p:salt:hash" and a role "editor" or "reader"`);
      }
      users.set(name, entry);
    }
    return new UserStore(users);
  }

  get size(): number {
    return this.users.size;
  }

  /** The user, if the password is theirs; the same work is done for unknown names. */
  async check(name: unknown, password: unknown): Promise<User | undefined> {
    if (typeof name !== 'string' || typeof password !== 'string') return undefined;
    const stored = this.users.get(name);
    const [, N, r, p, salt, hash] = (stored?.password ?? 'scrypt:16384:8:1:AAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA').split(':');
    const expected = Buffer.from(hash!, 'base64url');
    const candidate = await derive(password, Buffer.from(salt!, 'base64url'), Number(N), Number(r), Number(p), expected.length);
    return stored && timingSafeEqual(candidate, expected) ? { name, role: stored.role } : undefined;
  }
}

// `node dist/users.js hash <password>`: a password entry for users.json.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === 'hash' && process.argv[3]) {
  console.log(await hashPassword(process.argv[3]));
}
