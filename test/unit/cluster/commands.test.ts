import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { parseCommand, readReplies, RedisCommandChannel, type Reply } from '../../../app/src/cluster/commands.js';
import { capturedLog } from '../support/writeSide.js';

// The primary pops operator commands from a Redis list that anyone with the nodes' password
// can push to: an entry that is not a command must be skipped, never crash the primary.

describe('parseCommand', () => {
  it('accepts the two commands the CLI sends', () => {
    expect(parseCommand(JSON.stringify({ action: 'rotate', id: 'a', purposes: ['sign'], actor: 'cli@x', confirmTimeoutMs: 30_000, now: true }))).toMatchObject({ action: 'rotate', purposes: ['sign'], now: true });
    expect(parseCommand(JSON.stringify({ action: 'revoke', id: 'b', kid: 'sign-1', actor: 'cli@x' }))).toMatchObject({ action: 'revoke', kid: 'sign-1' });
  });

  it.each([
    ['not JSON', 'rotate everything'],
    ['JSON null', 'null'],
    ['an unknown action', JSON.stringify({ action: 'flush', id: 'a', actor: 'x' })],
    ['a rotate without purposes', JSON.stringify({ action: 'rotate', id: 'a', actor: 'x' })],
    ['a revoke with a number for a kid', JSON.stringify({ action: 'revoke', id: 'a', kid: 7, actor: 'x' })],
    ['an absurd timeout', JSON.stringify({ action: 'rotate', id: 'a', purposes: ['sign'], actor: 'x', confirmTimeoutMs: -1 })],
  ])('skips %s', (_label, raw) => {
    expect(parseCommand(raw)).toBeUndefined();
  });
});

describe('RedisCommandChannel', () => {
  function fakeRedis(blpop: () => Promise<[string, string] | null>, keyType = 'stream') {
    const calls: string[] = [];
    const blocking = { blpop: async (...args: unknown[]) => (calls.push(`blpop ${args.join(' ')}`), blpop()) } as unknown as Redis;
    const shared = {
      eval: async (script: string, _n: number, key: string) => {
        calls.push(`eval ${key}`);
        expect(script).toContain("redis.call('DEL', KEYS[1])");
        return keyType === 'list' ? null : keyType;
      },
    } as unknown as Redis;
    return { blocking, shared, calls };
  }

  it('pops raw entries, unparsed, with the timeout in seconds', async () => {
    const { blocking, shared, calls } = fakeRedis(async () => ['keyfleet:commands', 'not json']);
    expect(await new RedisCommandChannel(blocking, shared).pop(1_000)).toBe('not json');
    expect(calls).toEqual(['blpop keyfleet:commands 1']);
  });

  it('removes a value of another type at the command key (WRONGTYPE), logs it, and answers nothing', async () => {
    const { log, lines } = capturedLog();
    const { blocking, shared, calls } = fakeRedis(async () => {
      throw new Error('WRONGTYPE Operation against a key holding the wrong kind of value');
    });
    expect(await new RedisCommandChannel(blocking, shared, log).pop(1_000)).toBeNull();
    expect(calls).toEqual(['blpop keyfleet:commands 1', 'eval keyfleet:commands']);
    expect(lines).toMatchObject([{ code: 'ERR_COMMANDS_WRONGTYPE', type: 'stream' }]);
  });

  it('passes other failures on (the primary backs off)', async () => {
    const { blocking, shared } = fakeRedis(async () => {
      throw new Error('Connection is closed.');
    });
    await expect(new RedisCommandChannel(blocking, shared).pop(1_000)).rejects.toThrow('Connection is closed.');
  });
});

describe('readReplies', () => {
  it('yields replies in order, skipping entries that are not replies, until the result', async () => {
    const entries: [string, string[]][] = [
      ['1-0', ['m', JSON.stringify({ type: 'progress', data: { phase: 'staged' } })]],
      ['2-0', ['m', 'not json']],
      ['3-0', ['m', JSON.stringify({ type: 'error', code: 7 })]],
      ['4-0', []],
      ['5-0', ['m', JSON.stringify({ type: 'result', data: [1] })]],
      ['6-0', ['m', JSON.stringify({ type: 'progress', data: 'after the result' })]],
    ];
    let reads = 0;
    const redis = { xread: async () => (reads++ === 0 ? [['keyfleet:reply:x', entries]] : null) } as unknown as Redis;
    const seen: Reply[] = [];
    for await (const message of readReplies(redis, 'x', 1_000)) seen.push(message);
    expect(seen).toEqual([
      { type: 'progress', data: { phase: 'staged' } },
      { type: 'result', data: [1] },
    ]);
  });
});
