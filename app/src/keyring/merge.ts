import type { KeyState, Purpose, RingDocument, StoredKey } from './types.js';

// `keyfleet restore` merges a backup into the ring Redis holds instead of replacing it, so a
// restore can neither bring a revoked key back nor lose a key made after the backup.
//
// A key only ever moves forward: staged -> active -> retired -> revoked. Where the backup and
// the current ring both list a kid, the entry further along wins (so does the current one on
// a tie); a kid revoked in either, or in the audit stream, is revoked in the result.

const RANK: Record<KeyState, number> = { staged: 0, active: 1, retired: 2, revoked: 3 };

export interface MergeOptions {
  /** Kids the audit stream says were revoked (revoke actions), with when. */
  revokedInAudit: Map<string, number>;
  now: number;
  /** How long after retirement a key of each purpose may still verify (lifetime + skew). */
  retention: Record<Purpose, number>;
}

export interface MergeResult {
  doc: RingDocument;
  /** Kids only the backup had (deleted since, or lost with Redis). */
  restored: string[];
  /** Kids only the current ring has (newer than the backup): kept. */
  kept: string[];
  /** Kids revoked in the result because the current ring or the audit stream says so. */
  revoked: string[];
}

/** The current ring (or none: Redis lost it) merged with a backup. Pure: no I/O, no clock. */
export function mergeRings(current: RingDocument | null, backup: RingDocument, { revokedInAudit, now, retention }: MergeOptions): MergeResult {
  const byKid = new Map<string, StoredKey>();
  for (const key of backup.keys) byKid.set(key.kid, key);
  const restored = new Set(backup.keys.map((key) => key.kid));
  const kept: string[] = [];
  for (const key of current?.keys ?? []) {
    const other = byKid.get(key.kid);
    restored.delete(key.kid);
    if (!other) kept.push(key.kid);
    if (!other || RANK[key.state] >= RANK[other.state]) byKid.set(key.kid, key);
  }

  const revoked: string[] = [];
  for (const [kid, key] of byKid) {
    const at = revokedInAudit.get(kid);
    if (at === undefined || key.state === 'revoked') continue;
    byKid.set(kid, { ...key, state: 'revoked', revokedAt: at, deleteAfter: Math.max(now, at) + retention[key.purpose] });
    revoked.push(kid);
  }
  for (const key of current?.keys ?? []) {
    if (key.state === 'revoked' && backup.keys.some((b) => b.kid === key.kid && b.state !== 'revoked')) revoked.push(key.kid);
  }

  // One active and at most one staged key per purpose: the newest stays, an older active key
  // retires (it keeps verifying what it minted), an older staged key never minted and goes.
  const keys = [...byKid.values()];
  const newest = (state: KeyState, purpose: Purpose) =>
    keys
      .filter((key) => key.state === state && key.purpose === purpose)
      .sort((a, b) => (b.activatedAt ?? b.createdAt) - (a.activatedAt ?? a.createdAt))[0]?.kid;
  const result = keys.flatMap((key): StoredKey[] => {
    if (key.state === 'active' && newest('active', key.purpose) !== key.kid) {
      return [{ ...key, state: 'retired', retiredAt: now, deleteAfter: now + retention[key.purpose] }];
    }
    if (key.state === 'staged' && newest('staged', key.purpose) !== key.kid) return [];
    return [key];
  });

  const base = current ?? backup;
  return {
    doc: { ...base, keys: result.sort((a, b) => a.createdAt - b.createdAt), updatedAt: now },
    restored: [...restored],
    kept,
    revoked: [...new Set(revoked)],
  };
}

/** What replacing `current` wholesale with `backup` would undo, for `restore --force` to say. */
export function whatReplacingUndoes(current: RingDocument | null, backup: RingDocument): string[] {
  const undone: string[] = [];
  for (const key of current?.keys ?? []) {
    const other = backup.keys.find((candidate) => candidate.kid === key.kid);
    if (!other) undone.push(`${key.kid}: ${key.state} now, absent from the backup (it would be lost)`);
    else if (RANK[other.state] < RANK[key.state]) undone.push(`${key.kid}: ${key.state} now, ${other.state} in the backup${key.state === 'revoked' ? ' (UN-REVOKED)' : ''}`);
  }
  return undone;
}
