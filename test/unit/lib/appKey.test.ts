import { describe, expect, it } from 'vitest';
import { appKey, APP_KEY_PREFIX } from '../../../app/src/index.js';

describe('appKey()', () => {
  it("puts an app's keys under keyfleet:app:<app>: (inside the nodes' ACL pattern keyfleet:*)", () => {
    expect(APP_KEY_PREFIX).toBe('keyfleet:app:');
    expect(appKey('notes-api', 'notes', 'ann')).toBe('keyfleet:app:notes-api:notes:ann');
    expect(appKey('notes-api', 'counter', 7)).toBe('keyfleet:app:notes-api:counter:7');
    expect(appKey('notes-api')).toBe('keyfleet:app:notes-api');
  });

  it('refuses an app name that could reach into another app’s keys, naming the rule', () => {
    for (const name of ['', 'a:b', 'notes api', 'x'.repeat(65)]) expect(() => appKey(name, 'k')).toThrow(/letters, digits/);
  });
});
