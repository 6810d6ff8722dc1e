import { KeyfleetError } from '../lib/errors.js';
import { newRingId } from './seal.js';
import { PURPOSES, RING_FORMAT, type Purpose, type RingDocument, type StoredKey } from './types.js';

// Pure transitions of the ring document. No I/O and no clock of their own: the caller
// passes `now`, commits the result with a compare-and-set, and retries on conflict.
//
// staged -> active -> retired -> deleted; any -> revoked

export interface Lifetimes {
  /** How long after retirement something minted by a key of this purpose may still be valid. */
  sign: number;
  encrypt: number;
  cookie: number;
  clockSkewMs: number;
}

/** A new ring, with a fresh random id of its own. */
export function emptyRing(masterKeyId: string, now: number, ringId: string = newRingId()): RingDocument {
  return { format: RING_FORMAT, ringId, version: 0, masterKeyId, updatedAt: now, keys: [] };
}

const withKeys = (doc: RingDocument, keys: StoredKey[], now: number): RingDocument => ({
  ...doc,
  keys,
  updatedAt: now,
});

export const activeKey = (doc: RingDocument, purpose: Purpose) =>
  doc.keys.find((key) => key.purpose === purpose && key.state === 'active');

export const stagedKey = (doc: RingDocument, purpose: Purpose) =>
  doc.keys.find((key) => key.purpose === purpose && key.state === 'staged');

export const findKey = (doc: RingDocument, kid: string) => doc.keys.find((key) => key.kid === kid);

/** Purposes that have nothing to mint with: a new ring, or an active key just revoked. */
export const purposesWithoutActiveKey = (doc: RingDocument) =>
  PURPOSES.filter((purpose) => !activeKey(doc, purpose));

export function stage(doc: RingDocument, key: StoredKey, now: number): RingDocument {
  if (key.state !== 'staged') throw new KeyfleetError('ERR_KEY_STATE', `key ${key.kid} is ${key.state}, not staged`);
  if (stagedKey(doc, key.purpose)) {
    throw new KeyfleetError('ERR_ALREADY_STAGED', `a ${key.purpose} key is already staged`, 409);
  }
  return withKeys(doc, [...doc.keys, key], now);
}

/** The staged key becomes the one that mints; the previous active key only verifies. */
export function activate(doc: RingDocument, kid: string, now: number, lifetimes: Lifetimes): RingDocument {
  const target = findKey(doc, kid);
  if (!target || target.state !== 'staged') {
    throw new KeyfleetError('ERR_KEY_STATE', `key ${kid} is ${target ? target.state : 'not in the ring'}, not staged`, 409);
  }
  const keys = doc.keys.map((key): StoredKey => {
    if (key.kid === kid) return { ...key, state: 'active', activatedAt: now };
    if (key.purpose === target.purpose && key.state === 'active') {
      return {
        ...key,
        state: 'retired',
        retiredAt: now,
        deleteAfter: now + lifetimes[key.purpose] + lifetimes.clockSkewMs,
      };
    }
    return key;
  });
  return withKeys(doc, keys, now);
}

/** A revoked key stops verifying at once; it stays listed (for audit) until it could have expired. */
export function revoke(doc: RingDocument, kid: string, now: number, lifetimes: Lifetimes): RingDocument {
  const target = findKey(doc, kid);
  if (!target) throw new KeyfleetError('ERR_UNKNOWN_KID', `no key ${kid} in the ring`, 404);
  if (target.state === 'revoked') return doc;
  const keys = doc.keys.map((key): StoredKey =>
    key.kid === kid
      ? { ...key, state: 'revoked', revokedAt: now, deleteAfter: now + lifetimes[key.purpose] + lifetimes.clockSkewMs }
      : key,
  );
  return withKeys(doc, keys, now);
}

/** Drops retired and revoked keys whose `deleteAfter` has passed. Returns the kids it dropped. */
export function collectGarbage(doc: RingDocument, now: number): { doc: RingDocument; deleted: string[] } {
  const expired = (key: StoredKey) =>
    (key.state === 'retired' || key.state === 'revoked') && key.deleteAfter !== undefined && key.deleteAfter <= now;
  const deleted = doc.keys.filter(expired).map((key) => key.kid);
  if (deleted.length === 0) return { doc, deleted };
  return { doc: withKeys(doc, doc.keys.filter((key) => !expired(key)), now), deleted };
}

/** Purposes whose active key is older than the rotation interval and have nothing staged. */
export function purposesDueForRotation(doc: RingDocument, now: number, intervalMs: number): Purpose[] {
  return PURPOSES.filter((purpose) => {
    const active = activeKey(doc, purpose);
    return active !== undefined && !stagedKey(doc, purpose) && (active.activatedAt ?? active.createdAt) + intervalMs <= now;
  });
}

/** Keys a node accepts for verification: never revoked ones. */
export const verifies = (key: StoredKey) => key.state === 'staged' || key.state === 'active' || key.state === 'retired';
