import { verifyPassword, type PasswordHash } from './password.js';

// A fixed hash to check unknown names against, so a wrong name costs as long as a wrong
// password and response times do not reveal which accounts exist.
const DECOY: PasswordHash = {
  N: 32768,
  r: 8,
  p: 1,
  salt: Buffer.alloc(16, 7),
  hash: Buffer.alloc(32, 7),
};

export type UserDirectory = ReadonlyMap<string, PasswordHash>;

/** Whether `password` is `username`'s in `users` (scrypt; an unknown name costs as long as a wrong password). */
export async function checkPassword(users: UserDirectory, username: string, password: string): Promise<boolean> {
  const stored = users.get(username);
  const ok = await verifyPassword(password, stored ?? DECOY);
  return ok && stored !== undefined;
}
