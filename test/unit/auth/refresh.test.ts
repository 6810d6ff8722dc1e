import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { DEFAULT_REFRESH_OPTIONS, REDEEM_LUA, RefreshTokens, familyKey, hashToken } from '../../../app/src/auth/refresh.js';
import { revocationKeys } from '../../../app/src/auth/revocations.js';
import type { KeyfleetError } from '../../../app/src/lib/errors.js';
import { caught, T0 } from '../support/ring.js';

// RefreshTokens without Redis: what it sends (hashes, never tokens), how it reads the
// script's answers, and how it fails. The script itself runs against a real Redis, from two
// nodes at once, in test/integration/credentials.test.ts.

function stubRedis(reply: unknown, status = 'ready') {
  const evals: string[][] = [];
  const writes: unknown[][] = [];
  const redis = {
    status,
    async eval(_script: string, _count: number, ...rest: (string | number)[]) {
      evals.push(rest.map(String));
      if (reply instanceof Error) throw reply;
      return reply;
    },
    multi() {
      const chain = {
        hset: (...args: unknown[]) => (writes.push(['hset', ...args]), chain),
        pexpire: (...args: unknown[]) => (writes.push(['pexpire', ...args]), chain),
        exec: async () => [[null, 1], [null, 1]],
      };
      return chain;
    },
  };
  return { redis: redis as unknown as Redis, evals, writes };
}

const masterKey = randomBytes(32);
const redeem = (tokens: RefreshTokens, token: string) => tokens.redeem(token, { now: T0, actor: 'node-1', revokeForMs: 60_000 });

describe('RefreshTokens', () => {
  it('issues <family>.<secret> and stores only its hash', async () => {
    const { redis, writes } = stubRedis(null);
    const { refreshToken, family } = await new RefreshTokens(redis, masterKey).issue('alice', T0);
    expect(refreshToken).toMatch(/^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    expect(refreshToken.startsWith(`${family}.`)).toBe(true);
    const stored = JSON.stringify(writes);
    expect(stored).not.toContain(refreshToken.split('.')[1]);
    expect(stored).toContain(hashToken(refreshToken));
    expect(writes[0]![1]).toBe(familyKey(family));
  });

  it('derives the same successor every time, a different one per master key and per token', () => {
    const { redis } = stubRedis(null);
    const tokens = new RefreshTokens(redis, masterKey);
    const token = `${'a'.repeat(22)}.${'b'.repeat(43)}`;
    expect(tokens.successor(token)).toBe(tokens.successor(token));
    expect(tokens.successor(token)).toMatch(/^a{22}\.[A-Za-z0-9_-]{43}$/);
    expect(new RefreshTokens(redis, randomBytes(32)).successor(token)).not.toBe(tokens.successor(token));
    expect(tokens.successor(`${'a'.repeat(22)}.${'c'.repeat(43)}`)).not.toBe(tokens.successor(token));
  });

  it('sends hashes, the lifetimes and the family id to one script; reads each answer', async () => {
    const token = `${'f'.repeat(22)}.${'s'.repeat(43)}`;
    const { redis, evals } = stubRedis(['ok', 'alice', 3]);
    const tokens = new RefreshTokens(redis, masterKey, { graceMs: 5_000 });
    const redeemed = await redeem(tokens, token);
    expect(redeemed).toEqual({ status: 'ok', user: 'alice', family: 'f'.repeat(22), generation: 3, refreshToken: tokens.successor(token) });
    const sent = evals[0]!;
    expect(sent.slice(0, 6)).toEqual([familyKey('f'.repeat(22)), revocationKeys.users, revocationKeys.ids, revocationKeys.seq, 'keyfleet:audit', 'keyfleet:ring:version']);
    expect(sent.slice(6, 12)).toEqual([hashToken(token), hashToken(tokens.successor(token)), String(T0), '5000', String(DEFAULT_REFRESH_OPTIONS.idleMs), String(DEFAULT_REFRESH_OPTIONS.absoluteMs)]);
    expect(sent.join(' ')).not.toContain('s'.repeat(43));
    expect(REDEEM_LUA).toContain("'refresh-reuse'");

    expect((await redeem(new RefreshTokens(stubRedis(['reuse', 'alice', 1]).redis, masterKey), token)).status).toBe('reuse');
    for (const [answer, code] of [[['expired'], 'ERR_REFRESH_EXPIRED'], [['revoked'], 'ERR_REFRESH_REVOKED'], [['invalid'], 'ERR_REFRESH_INVALID']] as const) {
      const error = await caught(() => redeem(new RefreshTokens(stubRedis(answer).redis, masterKey), token));
      expect([error.status, error.code]).toEqual([401, code]);
    }
  });

  it('refuses a malformed token without asking Redis; answers 503 while Redis is away or failing', async () => {
    const { redis, evals } = stubRedis(['ok', 'alice', 2]);
    for (const bad of ['', 'x', `${'a'.repeat(22)}.${'b'.repeat(42)}`, `${'a'.repeat(22)}:${'b'.repeat(43)}`]) {
      expect((await caught(() => redeem(new RefreshTokens(redis, masterKey), bad))).code).toBe('ERR_REFRESH_INVALID');
    }
    expect(evals).toHaveLength(0);
    const token = `${'a'.repeat(22)}.${'b'.repeat(43)}`;
    const away = await caught(() => redeem(new RefreshTokens(stubRedis(null, 'reconnecting').redis, masterKey), token));
    expect([away.status, away.code]).toEqual([503, 'ERR_REFRESH_UNAVAILABLE']);
    const failing = (await caught(() => redeem(new RefreshTokens(stubRedis(new Error('timeout')).redis, masterKey), token))) as KeyfleetError;
    expect([failing.status, failing.code]).toEqual([503, 'ERR_REFRESH_UNAVAILABLE']);
    expect((await caught(() => new RefreshTokens(stubRedis(null, 'end').redis, masterKey).issue('alice', T0))).code).toBe('ERR_REFRESH_UNAVAILABLE');
  });
});

describe('RefreshTokens: what the script answers is checked', () => {
  const token = `${randomBytes(16).toString('base64url')}.${randomBytes(32).toString('base64url')}`;

  it.each([
    ['nothing', null],
    ['a number', 7],
    ['an unknown status', ['granted', 'alice', 2]],
    ['ok without a user', ['ok']],
    ['ok with an empty user', ['ok', '', 2]],
    ['ok with a user that is not text', ['ok', 12, 2]],
  ])('%s is an unknown token (401), never a cast or a 5xx', async (_label, reply) => {
    const { redis } = stubRedis(reply);
    const error = await caught(() => redeem(new RefreshTokens(redis, masterKey), token));
    expect([error.code, error.status]).toEqual(['ERR_REFRESH_INVALID', 401]);
  });

  it('a reuse answer without a generation is still a reuse', async () => {
    const { redis } = stubRedis(['reuse', 'alice']);
    expect(await redeem(new RefreshTokens(redis, masterKey), token)).toMatchObject({ status: 'reuse', user: 'alice', generation: 0 });
  });
});
