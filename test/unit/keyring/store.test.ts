import { describe, expect, it } from 'vitest';
import { parseRing } from '../../../app/src/keyring/store.js';
import { caught, T0 } from '../support/ring.js';

describe('parseRing', () => {
  it('returns a format-1 document', () => {
    const doc = { format: 1, version: 7, masterKeyId: 'mk', updatedAt: T0, keys: [] };
    expect(parseRing(JSON.stringify(doc))).toEqual(doc);
  });

  it.each([
    ['invalid JSON', '{"format":1,'],
    ['null', 'null'],
    ['another format', JSON.stringify({ format: 2, version: 1, keys: [] })],
    ['keys not a list', JSON.stringify({ format: 1, version: 1, keys: {} })],
    ['no version', JSON.stringify({ format: 1, keys: [] })],
  ])('refuses %s with ERR_RING_FORMAT', async (_label, raw) => {
    expect((await caught(() => parseRing(raw))).code).toBe('ERR_RING_FORMAT');
  });
});
