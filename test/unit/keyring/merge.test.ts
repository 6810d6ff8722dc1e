import { describe, expect, it } from 'vitest';
import { activeKey, findKey } from '../../../app/src/keyring/lifecycle.js';
import { mergeRings, whatReplacingUndoes } from '../../../app/src/keyring/merge.js';
import { buildRing, newMasterKey, revokeActive, rotateKey, T0 } from '../support/ring.js';

const RETENTION = { sign: 16 * 60_000, encrypt: 8 * 3_600_000, cookie: 8 * 3_600_000 };
const none = new Map<string, number>();

describe('mergeRings (keyfleet restore)', () => {
  it('keeps a revocation made after the backup: backup, revoke, restore -> still revoked', async () => {
    const masterKey = newMasterKey();
    const backup = await buildRing(masterKey);
    const current = revokeActive(backup, 'sign', T0 + 1000);
    const kid = activeKey(backup, 'sign')!.kid;
    const { doc, revoked } = mergeRings(current, backup, { revokedInAudit: none, now: T0 + 2000, retention: RETENTION });
    expect(findKey(doc, kid)!.state).toBe('revoked');
    expect(revoked).toEqual([kid]);
  });

  it('keeps a revocation the audit stream remembers when Redis lost the ring', async () => {
    const backup = await buildRing(newMasterKey());
    const kid = activeKey(backup, 'encrypt')!.kid;
    const { doc } = mergeRings(null, backup, { revokedInAudit: new Map([[kid, T0 + 500]]), now: T0 + 2000, retention: RETENTION });
    expect(findKey(doc, kid)).toMatchObject({ state: 'revoked', revokedAt: T0 + 500 });
  });

  it('keeps keys newer than the backup and brings back keys only the backup has', async () => {
    const masterKey = newMasterKey();
    const backup = await buildRing(masterKey);
    const rotated = await rotateKey(backup, 'sign', T0 + 1000, masterKey);
    const newKid = activeKey(rotated, 'sign')!.kid;
    const lost = backup.keys.find((key) => key.purpose === 'cookie')!.kid;
    const current = { ...rotated, keys: rotated.keys.filter((key) => key.kid !== lost) };
    const merged = mergeRings(current, backup, { revokedInAudit: none, now: T0 + 2000, retention: RETENTION });
    expect(activeKey(merged.doc, 'sign')!.kid).toBe(newKid);
    expect(findKey(merged.doc, activeKey(backup, 'sign')!.kid)!.state).toBe('retired');
    expect(merged.kept).toEqual([newKid]);
    expect(merged.restored).toEqual([lost]);
    expect(merged.doc.ringId).toBe(current.ringId);
  });

  it('leaves one active key per purpose: the newest, the other retired and still verifying', async () => {
    const masterKey = newMasterKey();
    const base = await buildRing(masterKey);
    const a = await rotateKey(base, 'sign', T0 + 1000, masterKey);
    // The backup's active sign key was retired in the current ring but lost from it entirely.
    const backup = { ...base, keys: base.keys };
    const current = { ...a, keys: a.keys.filter((key) => key.kid !== activeKey(base, 'sign')!.kid) };
    const merged = mergeRings(current, backup, { revokedInAudit: none, now: T0 + 2000, retention: RETENTION });
    const signs = merged.doc.keys.filter((key) => key.purpose === 'sign');
    expect(signs.filter((key) => key.state === 'active')).toHaveLength(1);
    expect(signs.find((key) => key.kid === activeKey(base, 'sign')!.kid)).toMatchObject({ state: 'retired', deleteAfter: T0 + 2000 + RETENTION.sign });
  });
});

describe('whatReplacingUndoes (keyfleet restore --force)', () => {
  it('names un-revocations and lost keys', async () => {
    const masterKey = newMasterKey();
    const backup = await buildRing(masterKey);
    const current = await rotateKey(revokeActive(backup, 'sign', T0 + 1000), 'encrypt', T0 + 2000, masterKey);
    const undone = whatReplacingUndoes(current, backup);
    expect(undone.some((line) => line.includes('UN-REVOKED'))).toBe(true);
    expect(undone.some((line) => line.includes('absent from the backup'))).toBe(true);
  });
});
