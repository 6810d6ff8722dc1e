import type { JWK } from 'jose';

export const PURPOSES = ['sign', 'encrypt', 'cookie'] as const;
export type Purpose = (typeof PURPOSES)[number];

// staged -> active -> retired -> (deleted: removed from the ring); any -> revoked
export type KeyState = 'staged' | 'active' | 'retired' | 'revoked';

/** The algorithm each purpose uses; one per purpose keeps the verify allow-lists tight. */
export const ALGORITHMS = { sign: 'ES256', encrypt: 'A256GCM', cookie: 'HS256' } as const satisfies Record<Purpose, string>;

/** A key as stored in Redis: everything but `material` is public metadata. */
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
  /** Public half of a `sign` key, published in the JWKS. */
  publicJwk?: JWK;
  /** Secret material, AES-256-GCM under the master key, bound to kid and purpose. */
  material: string;
}

/** The whole ring: one Redis value, so a node always reads a consistent set of keys. */
export interface RingDocument {
  format: 1;
  version: number;
  /** Fingerprint of the master key that wrapped `material` (HMAC, reveals nothing). */
  masterKeyId: string;
  updatedAt: number;
  keys: StoredKey[];
}

export function isPurpose(value: unknown): value is Purpose {
  return typeof value === 'string' && (PURPOSES as readonly string[]).includes(value);
}
