import { PURPOSES, type KeyState, type Purpose, type RingDocument } from '../keyring/types.js';

// What a ring document says about itself, as numbers, at one instant. Pure: the collector
// calls it on every scrape with the ring this node holds, so each node reports the ring it
// actually serves from (a node stuck on an old ring shows old figures, which is the point).

export const KEY_STATES: readonly KeyState[] = ['staged', 'active', 'retired', 'revoked'];

export interface PurposeFigures {
  keys: Record<KeyState, number>;
  /** Seconds since the active key was activated; undefined without an active key. */
  activeKeyAgeS?: number;
  /** Seconds until the primary's schedule rotates this purpose (negative: overdue). */
  rotationDueInS?: number;
  /** Seconds since the staged key was created; undefined when none is staged. */
  stagedKeyAgeS?: number;
}

export function ringFigures(doc: RingDocument, now: number, rotationIntervalMs: number): Record<Purpose, PurposeFigures> {
  const result = {} as Record<Purpose, PurposeFigures>;
  for (const purpose of PURPOSES) {
    const keys = doc.keys.filter((key) => key.purpose === purpose);
    const counts = Object.fromEntries(KEY_STATES.map((state) => [state, keys.filter((key) => key.state === state).length])) as Record<KeyState, number>;
    const figures: PurposeFigures = { keys: counts };
    const active = keys.find((key) => key.state === 'active');
    if (active) {
      // The same instant lifecycle.purposesDueForRotation measures from.
      const since = active.activatedAt ?? active.createdAt;
      figures.activeKeyAgeS = (now - since) / 1000;
      figures.rotationDueInS = (since + rotationIntervalMs - now) / 1000;
    }
    const staged = keys.find((key) => key.state === 'staged');
    if (staged) figures.stagedKeyAgeS = (now - staged.createdAt) / 1000;
    result[purpose] = figures;
  }
  return result;
}

export interface RingTransitions {
  /** Purposes with a key that became active between the two rings (a rotation, or a replacement). */
  activated: Purpose[];
  /** Purposes of keys that became revoked between the two rings. */
  revoked: Purpose[];
}

/**
 * What changed between the ring a node held and the one it loaded. Compares key states, not
 * versions, so a node that skipped versions (loaded v5, then v8) still counts each change once.
 */
export function ringTransitions(previous: RingDocument, next: RingDocument): RingTransitions {
  const before = new Map(previous.keys.map((key) => [key.kid, key.state]));
  const activated: Purpose[] = [];
  const revoked: Purpose[] = [];
  for (const key of next.keys) {
    const was = before.get(key.kid);
    if (key.state === 'active' && was !== 'active') activated.push(key.purpose);
    if (key.state === 'revoked' && was !== 'revoked') revoked.push(key.purpose);
  }
  return { activated, revoked };
}
