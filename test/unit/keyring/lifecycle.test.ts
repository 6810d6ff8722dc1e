import { describe, expect, it } from 'vitest';
import {
  activate,
  activateFresh,
  activeKey,
  eligibleAt,
  collectGarbage,
  emptyRing,
  findKey,
  purposesDueForRotation,
  purposesWithoutActiveKey,
  purposesWithoutNextKey,
  revoke,
  stage,
  stagedKey,
  verifies,
} from '../../../app/src/keyring/lifecycle.js';
import { ALGORITHMS, type KeyState, type Purpose, type RingDocument, type StoredKey } from '../../../app/src/keyring/types.js';
import { caught, LIFETIMES, T0 } from '../support/ring.js';

// Pure transitions: hand-made keys, no crypto needed.
const key = (kid: string, purpose: Purpose, state: KeyState, extra: Partial<StoredKey> = {}): StoredKey => ({
  kid,
  purpose,
  alg: ALGORITHMS[purpose],
  state,
  createdAt: T0,
  material: `material-of-${kid}`,
  ...extra,
});

const ring = (...keys: StoredKey[]): RingDocument => ({ ...emptyRing('mk', T0), version: 3, keys });

const HOUR = 3_600_000;

describe('emptyRing', () => {
  it('is format 2, version 0, with no keys and every purpose lacking an active key', () => {
    const doc = emptyRing('mk-id', T0, 'ring-1');
    expect(doc).toEqual({ format: 2, ringId: 'ring-1', version: 0, masterKeyId: 'mk-id', updatedAt: T0, keys: [] });
    expect(purposesWithoutActiveKey(doc)).toEqual(['sign', 'encrypt', 'cookie']);
  });

  it('gives every new ring an id of its own', () => {
    expect(emptyRing('mk-id', T0).ringId).not.toBe(emptyRing('mk-id', T0).ringId);
  });
});

describe('stage', () => {
  it('adds a staged key without touching the input document', () => {
    const doc = ring(key('s1', 'sign', 'active'));
    const next = stage(doc, key('s2', 'sign', 'staged'), T0 + 5);
    expect(next.keys.map((k) => k.kid)).toEqual(['s1', 's2']);
    expect(stagedKey(next, 'sign')?.kid).toBe('s2');
    expect(next.updatedAt).toBe(T0 + 5);
    expect(next.version).toBe(doc.version); // the writer, not stage, bumps the version
    expect(doc.keys).toHaveLength(1);
  });

  it('refuses a second staged key for the same purpose with ERR_ALREADY_STAGED (409)', async () => {
    const doc = stage(ring(), key('s1', 'sign', 'staged'), T0);
    const error = await caught(() => stage(doc, key('s2', 'sign', 'staged'), T0));
    expect(error.code).toBe('ERR_ALREADY_STAGED');
    expect(error.status).toBe(409);
  });

  it('allows one staged key per purpose', () => {
    let doc = stage(ring(), key('s1', 'sign', 'staged'), T0);
    doc = stage(doc, key('e1', 'encrypt', 'staged'), T0);
    doc = stage(doc, key('c1', 'cookie', 'staged'), T0);
    expect(doc.keys.map((k) => k.kid)).toEqual(['s1', 'e1', 'c1']);
  });

  it('refuses a key that is not in state staged with ERR_KEY_STATE', async () => {
    const error = await caught(() => stage(ring(), key('s1', 'sign', 'active'), T0));
    expect(error.code).toBe('ERR_KEY_STATE');
  });
});

describe('activate', () => {
  it('makes the staged key active and retires the previous active key of that purpose', () => {
    const now = T0 + 24 * HOUR;
    const doc = ring(key('s1', 'sign', 'active', { activatedAt: T0 }), key('s2', 'sign', 'staged'));
    const next = activate(doc, 's2', now, LIFETIMES);

    expect(findKey(next, 's2')).toMatchObject({ state: 'active', activatedAt: now });
    expect(findKey(next, 's1')).toMatchObject({
      state: 'retired',
      activatedAt: T0,
      retiredAt: now,
      deleteAfter: now + LIFETIMES.sign + LIFETIMES.clockSkewMs,
    });
    expect(activeKey(next, 'sign')?.kid).toBe('s2');
    expect(stagedKey(next, 'sign')).toBeUndefined();
    expect(next.updatedAt).toBe(now);
    // The input is not mutated.
    expect(findKey(doc, 's1')?.state).toBe('active');
    expect(findKey(doc, 's2')?.state).toBe('staged');
  });

  it('uses the lifetime of the retired key’s own purpose for deleteAfter', () => {
    const now = T0 + HOUR;
    const doc = ring(key('c1', 'cookie', 'active'), key('c2', 'cookie', 'staged'));
    const next = activate(doc, 'c2', now, LIFETIMES);
    expect(findKey(next, 'c1')?.deleteAfter).toBe(now + LIFETIMES.cookie + LIFETIMES.clockSkewMs);
    expect(LIFETIMES.cookie).not.toBe(LIFETIMES.sign); // guards the test against equal lifetimes
  });

  it('leaves the keys of other purposes alone', () => {
    const doc = ring(
      key('s1', 'sign', 'active'),
      key('e1', 'encrypt', 'active'),
      key('c1', 'cookie', 'active'),
      key('s2', 'sign', 'staged'),
    );
    const next = activate(doc, 's2', T0 + HOUR, LIFETIMES);
    expect(findKey(next, 'e1')).toEqual(findKey(doc, 'e1'));
    expect(findKey(next, 'c1')).toEqual(findKey(doc, 'c1'));
  });

  it('works on a ring with no previous active key', () => {
    const next = activate(ring(key('e1', 'encrypt', 'staged')), 'e1', T0, LIFETIMES);
    expect(activeKey(next, 'encrypt')?.kid).toBe('e1');
    expect(next.keys.filter((k) => k.state === 'retired')).toEqual([]);
  });

  it.each([
    ['an active key', 'a'],
    ['a retired key', 'r'],
    ['a revoked key', 'x'],
    ['an unknown kid', 'nope'],
  ])('refuses %s with ERR_KEY_STATE', async (_label, kid) => {
    const doc = ring(key('a', 'sign', 'active'), key('r', 'sign', 'retired'), key('x', 'sign', 'revoked'));
    const error = await caught(() => activate(doc, kid, T0, LIFETIMES));
    expect(error.code).toBe('ERR_KEY_STATE');
  });
});

describe('revoke', () => {
  it('revokes a key with revokedAt and a deleteAfter of now + lifetime + skew', () => {
    const now = T0 + HOUR;
    const next = revoke(ring(key('e1', 'encrypt', 'active')), 'e1', now, LIFETIMES);
    expect(findKey(next, 'e1')).toMatchObject({
      state: 'revoked',
      revokedAt: now,
      deleteAfter: now + LIFETIMES.encrypt + LIFETIMES.clockSkewMs,
    });
    expect(verifies(findKey(next, 'e1')!)).toBe(false);
    expect(next.updatedAt).toBe(now);
  });

  it('leaves the purpose without an active key when the active key is revoked', () => {
    const doc = ring(key('s1', 'sign', 'active'), key('e1', 'encrypt', 'active'), key('c1', 'cookie', 'active'));
    expect(purposesWithoutActiveKey(doc)).toEqual([]);
    expect(purposesWithoutActiveKey(revoke(doc, 's1', T0, LIFETIMES))).toEqual(['sign']);
  });

  it.each(['staged', 'retired'] as const)('can revoke a %s key', (state) => {
    const next = revoke(ring(key('k', 'cookie', state)), 'k', T0, LIFETIMES);
    expect(findKey(next, 'k')?.state).toBe('revoked');
  });

  it('returns the same document when the key is already revoked', () => {
    const doc = ring(key('k', 'sign', 'revoked', { revokedAt: T0, deleteAfter: T0 + 1 }));
    expect(revoke(doc, 'k', T0 + HOUR, LIFETIMES)).toBe(doc);
  });

  it('refuses an unknown kid with ERR_UNKNOWN_KID (404)', async () => {
    const error = await caught(() => revoke(ring(key('k', 'sign', 'active')), 'other', T0, LIFETIMES));
    expect(error.code).toBe('ERR_UNKNOWN_KID');
    expect(error.status).toBe(404);
  });
});

describe('collectGarbage', () => {
  const now = T0 + 10 * HOUR;
  const doc = ring(
    key('retired-expired', 'sign', 'retired', { deleteAfter: now - 1 }),
    key('retired-at-now', 'sign', 'retired', { deleteAfter: now }),
    key('retired-live', 'sign', 'retired', { deleteAfter: now + 1 }),
    key('revoked-expired', 'encrypt', 'revoked', { deleteAfter: now - 1 }),
    key('revoked-live', 'encrypt', 'revoked', { deleteAfter: now + 1 }),
    key('retired-no-deadline', 'cookie', 'retired'),
    // Only retired and revoked keys are ever collected, whatever their deleteAfter says.
    key('active-old', 'sign', 'active', { deleteAfter: now - HOUR }),
    key('staged-old', 'cookie', 'staged', { deleteAfter: now - HOUR }),
  );

  it('drops only retired and revoked keys whose deleteAfter has passed', () => {
    const { doc: next, deleted } = collectGarbage(doc, now);
    expect(deleted).toEqual(['retired-expired', 'retired-at-now', 'revoked-expired']);
    expect(next.keys.map((k) => k.kid)).toEqual([
      'retired-live',
      'revoked-live',
      'retired-no-deadline',
      'active-old',
      'staged-old',
    ]);
    expect(next.updatedAt).toBe(now);
    expect(doc.keys).toHaveLength(8);
  });

  it('returns the same document when nothing has expired', () => {
    const result = collectGarbage(doc, T0);
    expect(result.deleted).toEqual([]);
    expect(result.doc).toBe(doc);
  });

  it('collects a retired key exactly when its deleteAfter from activate is reached', () => {
    const retiredAt = T0 + HOUR;
    const rotated = activate(ring(key('s1', 'sign', 'active'), key('s2', 'sign', 'staged')), 's2', retiredAt, LIFETIMES);
    const deadline = retiredAt + LIFETIMES.sign + LIFETIMES.clockSkewMs;
    expect(collectGarbage(rotated, deadline - 1).deleted).toEqual([]);
    expect(collectGarbage(rotated, deadline).deleted).toEqual(['s1']);
  });
});

describe('purposesDueForRotation', () => {
  const interval = 24 * HOUR;
  const PREPUBLISH = 30 * 60_000;
  // sign keeps a next key staged at all times (pre-publication): the schedule promotes it.
  const next = (createdAt = T0) => key('s-next', 'sign', 'staged', { createdAt });

  it('lists purposes whose active key is at least one interval old', () => {
    const doc = ring(
      key('s1', 'sign', 'active', { activatedAt: T0 }),
      next(),
      key('e1', 'encrypt', 'active', { activatedAt: T0 + HOUR }),
      key('c1', 'cookie', 'active', { activatedAt: T0 + 2 * HOUR }),
    );
    expect(purposesDueForRotation(doc, T0 + interval - 1, interval, PREPUBLISH)).toEqual([]);
    expect(purposesDueForRotation(doc, T0 + interval, interval, PREPUBLISH)).toEqual(['sign']);
    expect(purposesDueForRotation(doc, T0 + interval + HOUR, interval, PREPUBLISH)).toEqual(['sign', 'encrypt']);
    expect(purposesDueForRotation(doc, T0 + 2 * interval, interval, PREPUBLISH)).toEqual(['sign', 'encrypt', 'cookie']);
  });

  it('skips encrypt and cookie while a key of theirs is staged (a rotation is under way)', () => {
    const doc = ring(key('e1', 'encrypt', 'active', { activatedAt: T0 }), key('e2', 'encrypt', 'staged'));
    expect(purposesDueForRotation(doc, T0 + 10 * interval, interval)).toEqual([]);
  });

  it('rotates sign only once its next key has been published for the pre-publication window', () => {
    // Next key staged 10 minutes before the active key is due: the schedule waits 20 more.
    const stagedAt = T0 + interval - 10 * 60_000;
    const doc = ring(key('s1', 'sign', 'active', { activatedAt: T0 }), next(stagedAt));
    expect(eligibleAt(findKey(doc, 's-next')!, PREPUBLISH)).toBe(stagedAt + PREPUBLISH);
    expect(purposesDueForRotation(doc, T0 + interval, interval, PREPUBLISH)).toEqual([]);
    expect(purposesDueForRotation(doc, stagedAt + PREPUBLISH - 1, interval, PREPUBLISH)).toEqual([]);
    expect(purposesDueForRotation(doc, stagedAt + PREPUBLISH, interval, PREPUBLISH)).toEqual(['sign']);
  });

  it('never rotates sign without a next key (the primary stages one first)', () => {
    const doc = ring(key('s1', 'sign', 'active', { activatedAt: T0 }));
    expect(purposesDueForRotation(doc, T0 + 10 * interval, interval, 0)).toEqual([]);
    expect(purposesWithoutNextKey(doc)).toEqual(['sign']);
    expect(purposesWithoutNextKey(ring(key('s1', 'sign', 'active'), next()))).toEqual([]);
    // Only sign is pre-published; a ring with no active sign key is purposesWithoutActiveKey's job.
    expect(purposesWithoutNextKey(ring(key('e1', 'encrypt', 'active')))).toEqual([]);
  });

  it('skips a purpose with no active key (that is purposesWithoutActiveKey’s job)', () => {
    const doc = ring(key('s1', 'sign', 'retired', { activatedAt: T0 }), key('e1', 'encrypt', 'revoked'));
    expect(purposesDueForRotation(doc, T0 + 10 * interval, interval)).toEqual([]);
    expect(purposesWithoutActiveKey(doc)).toEqual(['sign', 'encrypt', 'cookie']);
  });

  it('falls back to createdAt when activatedAt is missing', () => {
    const doc = ring(key('c1', 'cookie', 'active', { createdAt: T0 + HOUR }));
    expect(purposesDueForRotation(doc, T0 + interval, interval)).toEqual([]);
    expect(purposesDueForRotation(doc, T0 + HOUR + interval, interval)).toEqual(['cookie']);
  });
});

describe('activateFresh (rotate --now, revoke of the active signing key)', () => {
  it('activates the fresh key, retires the active one and revokes the next key, which never signed', () => {
    const now = T0 + HOUR;
    const doc = ring(key('s1', 'sign', 'active', { activatedAt: T0 }), key('s-next', 'sign', 'staged'));
    const next = activateFresh(doc, key('s-fresh', 'sign', 'staged', { createdAt: now }), now, LIFETIMES);
    expect(activeKey(next, 'sign')?.kid).toBe('s-fresh');
    expect(findKey(next, 's1')).toMatchObject({ state: 'retired', deleteAfter: now + LIFETIMES.sign + LIFETIMES.clockSkewMs });
    expect(findKey(next, 's-next')).toMatchObject({ state: 'revoked', revokedAt: now });
    expect(verifies(findKey(next, 's-next')!)).toBe(false);
    expect(stagedKey(next, 'sign')).toBeUndefined();
  });

  it('works without a next key', () => {
    const next = activateFresh(ring(key('s1', 'sign', 'active')), key('s2', 'sign', 'staged'), T0, LIFETIMES);
    expect(activeKey(next, 'sign')?.kid).toBe('s2');
    expect(next.keys.filter((k) => k.state === 'revoked')).toEqual([]);
  });
});

describe('verifies', () => {
  it.each([
    ['staged', true],
    ['active', true],
    ['retired', true],
    ['revoked', false],
  ] as const)('%s -> %s', (state, expected) => {
    expect(verifies(key('k', 'sign', state))).toBe(expected);
  });
});
