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
    throw new KeyfleetError('ERR_ALREADY_STAGED', `a ${key.purpose} key is already staged`);
  }
  return withKeys(doc, [...doc.keys, key], now);
}

/** The staged key becomes the one that mints; the previous active key only verifies. */
export function activate(doc: RingDocument, kid: string, now: number, lifetimes: Lifetimes): RingDocument {
  const target = findKey(doc, kid);
  if (!target || target.state !== 'staged') {
    throw new KeyfleetError('ERR_KEY_STATE', `key ${kid} is ${target ? target.state : 'not in the ring'}, not staged`);
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
  if (!target) throw new KeyfleetError('ERR_UNKNOWN_KID', `no key ${kid} in the ring`);
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

/**
 * Purposes whose next key is published ahead of its use. Only `sign` has verifiers outside
 * the ring: resource servers that cache the JWKS for minutes to hours (jose 10 min, Envoy
 * 10 min, Istio 20 min) and, as OpenID Connect Core §10.1.1 expects, look a key up before it
 * signs. `encrypt` and `cookie` keys are read by keyfleet nodes alone, which
 * propagate-then-activate already covers.
 */
export const PREPUBLISHED: readonly Purpose[] = ['sign'];

export const isPrepublished = (purpose: Purpose) => PREPUBLISHED.includes(purpose);

/**
 * When a staged key of a pre-published purpose may sign: once it has been in the JWKS for
 * `prepublishMs`. It is published from its creation (`createdAt`): nodes load a new ring
 * version within milliseconds and serve its JWKS at once.
 */
export const eligibleAt = (key: Pick<StoredKey, 'createdAt'>, prepublishMs: number) => key.createdAt + prepublishMs;

/**
 * Purposes due for a scheduled rotation: the active key is at least one interval old and,
 * for `sign`, the next key has been published for `prepublishMs` (so the schedule promotes
 * it the moment it becomes eligible); other purposes must have nothing staged.
 */
export function purposesDueForRotation(doc: RingDocument, now: number, intervalMs: number, prepublishMs = 0): Purpose[] {
  return PURPOSES.filter((purpose) => {
    const active = activeKey(doc, purpose);
    if (active === undefined || (active.activatedAt ?? active.createdAt) + intervalMs > now) return false;
    const staged = stagedKey(doc, purpose);
    if (!isPrepublished(purpose)) return staged === undefined;
    return staged !== undefined && eligibleAt(staged, prepublishMs) <= now;
  });
}

/** Pre-published purposes with an active key but no next key: the primary stages one. */
export const purposesWithoutNextKey = (doc: RingDocument) =>
  PREPUBLISHED.filter((purpose) => activeKey(doc, purpose) !== undefined && stagedKey(doc, purpose) === undefined);

/**
 * An emergency change: `fresh` (just generated, never published) becomes the active key now.
 * The previous active key retires as in any rotation; the next key of the purpose is revoked,
 * as it lived beside the keys an emergency distrusts and never signed anything, so revoking
 * it costs nothing. The caller stages a new next key.
 */
export function activateFresh(doc: RingDocument, fresh: StoredKey, now: number, lifetimes: Lifetimes): RingDocument {
  const next = stagedKey(doc, fresh.purpose);
  const withoutNext = next ? revoke(doc, next.kid, now, lifetimes) : doc;
  return activate(stage(withoutNext, fresh, now), fresh.kid, now, lifetimes);
}

/** Keys a node accepts for verification: never revoked ones. */
export const verifies = (key: StoredKey) => key.state === 'staged' || key.state === 'active' || key.state === 'retired';
