import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { CredentialRevocations, parseChange, revocationKeys, revokeArgs, type RevocationChange } from '../../../app/src/auth/revocations.js';
import { FakeClock, silentLog, T0 } from '../support/ring.js';

// The in-memory side of revocations with an injected clock and a Redis stand-in that counts
// every command: what is refused, for how long, what a gap or a bad message does, and that a
// check never reads Redis. The Lua script runs against a real Redis in
// test/integration/credentials.test.ts.

const HORIZON_MS = 60_000;

/** Answers the few commands the module sends, from `ids`/`users`/`seq`; counts them. */
class FakeRedis {
  ids = new Map<string, string>();
  users = new Map<string, string>();
  seq = 0;
  commands: string[] = [];
  failing = false;

  async get(key: string) {
    this.commands.push(`GET ${key}`);
    if (this.failing) throw new Error('connection lost');
    return key === revocationKeys.seq ? String(this.seq) : null;
  }

  async eval(..._args: unknown[]) {
    this.commands.push('EVAL');
    if (this.failing) throw new Error('connection lost');
    return ++this.seq;
  }

  multi() {
    this.commands.push('MULTI');
    const replies = () => {
      const flat = (map: Map<string, string>) => [...map].flat();
      return [[null, String(this.seq)], [null, flat(this.ids)], [null, flat(this.users)]];
    };
    const chain = {
      get: () => chain,
      zrangebyscore: () => chain,
      exec: async () => {
        if (this.failing) throw new Error('connection lost');
        return replies();
      },
    };
    return chain;
  }
}

function setup() {
  const clock = new FakeClock();
  const redis = new FakeRedis();
  const subscriber = Object.assign(new EventEmitter(), { subscribe: async () => 1 });
  const revocations = new CredentialRevocations({
    redis: redis as unknown as Redis,
    subscriber: subscriber as unknown as Redis,
    clock,
    log: silentLog,
    horizonMs: HORIZON_MS,
    reloadIntervalMs: 60_000,
  });
  const announce = (seq: number, change: RevocationChange) => subscriber.emit('message', revocationKeys.channel, `${seq} ${JSON.stringify(change)}`);
  return { clock, redis, subscriber, revocations, announce };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('CredentialRevocations', () => {
  it('refuses a revoked id until the credential would have expired, then forgets it', async () => {
    const { clock, revocations, announce } = setup();
    await revocations.start();
    announce(1, { ids: [{ id: 'jti:a', until: T0 + 10_000 }] });
    expect(revocations.check('alice', ['jti:a'], T0)).toBe('revoked');
    expect(revocations.check('alice', ['jti:b', undefined], T0)).toBeUndefined();
    clock.advance(10_000);
    expect(revocations.check('alice', ['jti:a'], T0)).toBeUndefined();
    revocations.prune(clock.now());
    expect(revocations.size.ids).toBe(0);
    revocations.stop();
  });

  it('refuses what a user was issued before logging out everywhere, not what came after, for as long as anything older can live', async () => {
    const { clock, revocations, announce } = setup();
    await revocations.start();
    announce(1, { users: [{ user: 'alice', at: T0 + 500 }] });
    expect(revocations.check('alice', [], T0 + 499)).toBe('logged-out-everywhere');
    expect(revocations.check('alice', [], T0 + 500)).toBeUndefined();
    expect(revocations.check('bob', [], T0)).toBeUndefined();
    clock.advance(HORIZON_MS + 500);
    revocations.prune(clock.now());
    expect(revocations.size.users).toBe(0);
    revocations.stop();
  });

  it('checks without a single Redis command', async () => {
    const { redis, revocations, announce } = setup();
    await revocations.start();
    announce(1, { ids: [{ id: 'jti:a', until: T0 + 10_000 }], users: [{ user: 'alice', at: T0 }] });
    const before = redis.commands.length;
    for (let i = 0; i < 10_000; i++) revocations.check('alice', ['jti:a', `jti:${i}`], T0 + i);
    expect(redis.commands.length).toBe(before);
    revocations.stop();
  });

  it('applies announcements in order without reading, and reads everything again after a gap', async () => {
    const { redis, revocations, announce } = setup();
    const seen: number[] = [];
    revocations.on('change', (seq) => seen.push(seq));
    await revocations.start();
    const reads = () => redis.commands.filter((c) => c === 'MULTI').length;
    expect(reads()).toBe(1);
    announce(1, { ids: [{ id: 'jti:a', until: T0 + 10_000 }] });
    announce(2, { ids: [{ id: 'jti:b', until: T0 + 10_000 }] });
    expect(revocations.seq).toBe(2);
    expect(reads()).toBe(1);
    // Message 3 was lost: 4 is applied at once, and the reload brings what Redis holds.
    redis.seq = 4;
    redis.ids.set('jti:c', String(T0 + 10_000));
    announce(4, { ids: [{ id: 'jti:d', until: T0 + 10_000 }] });
    expect(revocations.check('x', ['jti:d'], T0)).toBe('revoked');
    await settle();
    expect(reads()).toBe(2);
    expect(revocations.seq).toBe(4);
    expect(revocations.check('x', ['jti:c'], T0)).toBe('revoked');
    expect(seen.at(-1)).toBe(4);
    revocations.stop();
  });

  it('skips an unreadable announcement and malformed entries in Redis, never throwing', async () => {
    const { redis, subscriber, revocations } = setup();
    redis.ids.set('jti:bad', 'not-a-number');
    redis.ids.set('jti:good', String(T0 + 10_000));
    redis.seq = 3;
    await revocations.start();
    expect(revocations.check('x', ['jti:good'], T0)).toBe('revoked');
    expect(revocations.size.ids).toBe(1);
    expect(() => subscriber.emit('message', revocationKeys.channel, '4 {not json')).not.toThrow();
    expect(() => subscriber.emit('message', revocationKeys.channel, '5 {"ids":[{"id":7}]}')).not.toThrow();
    expect(() => subscriber.emit('message', revocationKeys.channel, 'garbage')).not.toThrow();
    await settle();
    expect(revocations.seq).toBe(3);
    revocations.stop();
  });

  it('keeps what it holds while Redis is unreachable, and reconciles after: a union, never a loss', async () => {
    const { redis, subscriber, revocations, announce } = setup();
    await revocations.start();
    announce(1, { ids: [{ id: 'jti:a', until: T0 + 10_000 }] });
    redis.failing = true;
    await expect(revocations.backstop()).rejects.toThrow(); // the timer tries again next interval
    expect(revocations.check('x', ['jti:a'], T0)).toBe('revoked');
    // Meanwhile another node logged someone out; Redis (restarted without jti:a) holds it.
    redis.failing = false;
    redis.seq = 2;
    redis.ids.clear();
    redis.users.set('alice', String(T0));
    subscriber.emit('ready');
    await settle();
    expect(revocations.seq).toBe(2);
    expect(revocations.check('alice', [], T0 - 1)).toBe('logged-out-everywhere');
    expect(revocations.check('x', ['jti:a'], T0)).toBe('revoked');
    revocations.stop();
  });

  it('the backstop reads only the sequence number while nothing changed', async () => {
    const { redis, revocations } = setup();
    await revocations.start();
    redis.commands.length = 0;
    await revocations.backstop();
    expect(redis.commands).toEqual([`GET ${revocationKeys.seq}`]);
    redis.seq = 1;
    await revocations.backstop();
    expect(redis.commands).toEqual([`GET ${revocationKeys.seq}`, `GET ${revocationKeys.seq}`, 'MULTI']);
    revocations.stop();
  });

  it('a revocation made here refuses at once, even when Redis cannot be told', async () => {
    const { redis, revocations } = setup();
    await revocations.start();
    redis.failing = true;
    await expect(revocations.revoke({ ids: [{ id: 'jti:a', until: T0 + 10_000 }] })).rejects.toThrow('connection lost');
    expect(revocations.check('x', ['jti:a'], T0)).toBe('revoked');
    redis.failing = false;
    expect(await revocations.revoke({ users: [{ user: 'alice', at: T0 }] })).toBe(1);
    revocations.stop();
  });
});

describe('the revocation script and its messages', () => {
  it('sends the change as JSON with the keys, the channel, now and the horizon', () => {
    const [script, count, ...rest] = revokeArgs({ ids: [{ id: 'jti:a', until: 5 }] }, 7, 9);
    expect(script).toContain("redis.call('PUBLISH'");
    expect(count).toBe(3);
    expect(rest).toEqual([revocationKeys.ids, revocationKeys.users, revocationKeys.seq, '{"ids":[{"id":"jti:a","until":5}]}', revocationKeys.channel, '7', '9']);
  });

  it('parses announced changes and refuses anything else', () => {
    expect(parseChange({ ids: [{ id: 'a', until: 1 }] })).toEqual({ ids: [{ id: 'a', until: 1 }], users: [] });
    for (const bad of [null, 3, { ids: 'x' }, { ids: [{ id: 1, until: 1 }] }, { users: [{ user: 'a' }] }]) expect(() => parseChange(bad)).toThrow();
  });
});
