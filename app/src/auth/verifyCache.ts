import type { RingHolder } from '../keyring/holder.js';
import type { LiveKey, RingSnapshot } from '../keyring/snapshot.js';

// A bounded cache of credentials that passed full verification, so a node checks each token
// (or `auth` cookie) once with jose and then answers repeats with a map lookup.
//
// What makes serving from it as safe as verifying again:
// - the key is the exact credential string: a tampered or different token is a miss and goes
//   through the full check; only successes are stored, never failures;
// - an entry is never served at or after the credential's own `exp` (the clock-skew grace
//   that full verification allows past `exp` is not extended to entries) nor before its
//   `nbf` minus the skew;
// - an entry is served only while the current ring still offers, as a verifier for that
//   purpose, the very key object that verified it: a revoked, deleted or re-imported key
//   stops every entry it vouched for on the next lookup, and a ring change also purges them
//   at once (memory is freed, nothing waits for the next lookup);
// - size is bounded: least recently used entries go first.
// The checks before the lookup (size limit) and the full check on a miss are unchanged.

/** Purposes whose credentials are cached: `sign` (JWT access tokens), `encrypt` (`auth` cookie). */
export type CachedPurpose = 'sign' | 'encrypt';

/** 10 000 entries of ~0.5 KB credentials: a few MB per purpose at most. */
export const DEFAULT_MAX_ENTRIES = 10_000;

interface Entry {
  user: string;
  kid: string;
  /** The imported key object that verified the credential (identity, not value). */
  key: unknown;
  /** ms since the epoch: served only before this (the credential's `exp`). */
  expiresAt: number;
  /** ms since the epoch: served only from this on (`nbf` minus the skew, or -Infinity). */
  notBefore: number;
}

export interface VerifiedCredential {
  user: string;
  kid: string;
  /** The key object that verified it: `verifyKey` for `sign`, `secret` for `encrypt`. */
  key: unknown;
  /** The credential's `exp` and `nbf` claims, in seconds, as verified. */
  exp: number;
  nbf?: number;
  clockSkewMs: number;
}

/** The key object of `key` that verifies credentials of `purpose`. */
export const verifyingObject = (purpose: CachedPurpose, key: LiveKey | undefined): unknown =>
  key === undefined ? undefined : purpose === 'sign' ? key.verifyKey : key.secret;

export class VerifyCache {
  private readonly entries = new Map<string, Entry>();
  readonly maxEntries: number;

  constructor(
    readonly purpose: CachedPurpose,
    { maxEntries = DEFAULT_MAX_ENTRIES }: { maxEntries?: number } = {},
  ) {
    this.maxEntries = Math.max(0, Math.floor(maxEntries));
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The user `credential` was issued to, if exactly this string passed full verification
   * before, `now` is before its `exp`, and `ring` still verifies with the same key object.
   * Otherwise undefined: the caller verifies in full.
   */
  get(credential: string, ring: RingSnapshot | undefined, now: number): string | undefined {
    const entry = this.entries.get(credential);
    if (entry === undefined) return undefined;
    if (now >= entry.expiresAt || ring === undefined || verifyingObject(this.purpose, ring.verifier(this.purpose, entry.kid)) !== entry.key) {
      this.entries.delete(credential);
      return undefined;
    }
    if (now < entry.notBefore) return undefined;
    // Least recently used goes first: a hit moves the entry to the end of the Map's order.
    this.entries.delete(credential);
    this.entries.set(credential, entry);
    return entry.user;
  }

  /** Records a credential that just passed full verification at `now`. */
  set(credential: string, verified: VerifiedCredential, now: number): void {
    const expiresAt = verified.exp * 1000;
    // Past `exp` already (accepted only within the skew): verified in full every time.
    if (!Number.isFinite(expiresAt) || expiresAt <= now || this.maxEntries === 0) return;
    if (verified.key === undefined) return;
    this.entries.delete(credential);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(credential, {
      user: verified.user,
      kid: verified.kid,
      key: verified.key,
      expiresAt,
      notBefore: verified.nbf === undefined ? Number.NEGATIVE_INFINITY : verified.nbf * 1000 - verified.clockSkewMs,
    });
  }

  /** Drops every entry whose key no longer verifies in `ring` (revoked, deleted, re-imported). */
  purge(ring: RingSnapshot): number {
    let dropped = 0;
    const keep = new Map<string, boolean>();
    for (const [credential, entry] of this.entries) {
      let ok = keep.get(entry.kid);
      if (ok === undefined) {
        ok = verifyingObject(this.purpose, ring.verifier(this.purpose, entry.kid)) === entry.key;
        keep.set(entry.kid, ok);
      }
      if (!ok) {
        this.entries.delete(credential);
        dropped++;
      }
    }
    return dropped;
  }

  clear(): void {
    this.entries.clear();
  }
}
