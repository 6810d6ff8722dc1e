export const PURPOSES = ['sign', 'encrypt', 'cookie'] as const;
export type Purpose = (typeof PURPOSES)[number];

// staged -> active -> retired -> (deleted: removed from the ring); any -> revoked
export type KeyState = 'staged' | 'active' | 'retired' | 'revoked';

/** The algorithm each purpose uses; one per purpose keeps the verify allow-lists tight. */
export const ALGORITHMS = { sign: 'ES256', encrypt: 'A256GCM', cookie: 'HS256' } as const satisfies Record<Purpose, string>;

/** The stored format: 2 authenticates the whole document (seal.ts); 1 is upgraded once. */
export const RING_FORMAT = 2;

/** A key as stored in Redis. Only `material` is secret; the MAC over the ring covers all of it. */
export interface StoredKey {
  kid: string;
  purpose: Purpose;
  alg: (typeof ALGORITHMS)[Purpose];
  state: KeyState;
  createdAt: number;
  activatedAt?: number;
  retiredAt?: number;
  /** When a retired key may be deleted: nothing it minted can still be valid after this. */
  deleteAfter?: number;
  revokedAt?: number;
  /** Secret material, AES-256-GCM under the master key, bound to kid and purpose. Public keys are derived from it. */
  material: string;
}

/** The whole ring: one Redis value, so a node always reads a consistent set of keys. */
export interface RingDocument {
  format: typeof RING_FORMAT;
  /** Random, fixed when the ring is created: a ring swapped in from elsewhere is told apart. */
  ringId: string;
  version: number;
  /** Fingerprint of the master key that wrapped `material` (HMAC, reveals nothing). */
  masterKeyId: string;
  updatedAt: number;
  keys: StoredKey[];
}

/** The ring as Redis (and a backup) holds it: the document and its MAC under the master key. */
export interface SealedRing extends RingDocument {
  mac: string;
}

export function isPurpose(value: unknown): value is Purpose {
  return typeof value === 'string' && (PURPOSES as readonly string[]).includes(value);
}
