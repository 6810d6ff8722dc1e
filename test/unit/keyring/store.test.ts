import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { readAudit } from '../../../app/src/keyring/store.js';
import { capturedLog } from '../support/writeSide.js';

// The audit stream is read by the CLI (`keyfleet audit`, restore's revocations) and the
// dashboard; anyone with the password can XADD to it. Entries are checked; malformed ones skipped.

describe('readAudit', () => {
  it('returns well-formed events with numbers for version and time, and skips the rest, logging their id', async () => {
    const entries: [string, string[]][] = [
      ['3-0', ['version', '7', 'at', '1700000000000', 'actor', 'node-1', 'action', 'activate', 'purpose', 'sign', 'kid', 'sign-1']],
      ['2-0', ['version', 'seven', 'at', '1', 'actor', 'x', 'action', 'y']],
      ['1-0', ['m', 'not an audit entry']],
      ['0-1', ['version', '1', 'at', '2', 'actor', 'cli@host', 'action', 'revoke-user', 'detail', 'every credential of bob', 'extra', 'dropped']],
    ];
    const redis = { xrevrange: async () => entries } as unknown as Redis;
    const { log, lines } = capturedLog();
    expect(await readAudit(redis, 10, log)).toEqual([
      { id: '3-0', version: 7, at: 1700000000000, actor: 'node-1', action: 'activate', purpose: 'sign', kid: 'sign-1' },
      { id: '0-1', version: 1, at: 2, actor: 'cli@host', action: 'revoke-user', detail: 'every credential of bob' },
    ]);
    expect(lines.map((line) => [line.source, line.code])).toEqual([
      ['keyfleet:audit 2-0', 'ERR_BAD_SHAPE'],
      ['keyfleet:audit 1-0', 'ERR_BAD_SHAPE'],
    ]);
  });
});
