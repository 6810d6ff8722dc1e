// The claims this app adds to keyfleet's credentials, and their parser: keyfleet checks them
// when it mints and parses them when it reads a credential back, so `kf.principal(req).claims`
// is a `NoteClaims`. A plain `{ parse }` object; a zod schema fits the same slot.

export type Role = 'editor' | 'reader';

export interface NoteClaims {
  role: Role;
}

export const noteClaims = {
  parse(value: unknown): NoteClaims {
    const role = (value as { role?: unknown } | null)?.role;
    if (role !== 'editor' && role !== 'reader') throw new TypeError('claim "role" must be "editor" or "reader"');
    return { role };
  },
};
