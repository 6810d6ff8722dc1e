import express from 'express';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { errorHandler } from '../../../app/src/http/errors.js';
import { isRedisUnavailable, KeyfleetError, REDIS_UNAVAILABLE_CODES, ERRORS } from '../../../app/src/index.js';
import { silentLog } from '../support/ring.js';

describe('isRedisUnavailable()', () => {
  it("recognises keyfleet's 503 codes for Redis, and no other KeyfleetError", () => {
    for (const code of REDIS_UNAVAILABLE_CODES) {
      expect(ERRORS[code].status).toBe(503);
      expect(isRedisUnavailable(new KeyfleetError(code))).toBe(true);
    }
    expect(isRedisUnavailable(new KeyfleetError('ERR_RING_STALE'))).toBe(false);
    expect(isRedisUnavailable(new KeyfleetError('ERR_TOKEN_EXPIRED'))).toBe(false);
  });

  it('recognises an ioredis command that got no answer, from a real client with nothing listening', async () => {
    // Port 1 on loopback: refused at once; one retry per request, then MaxRetriesPerRequestError.
    const client = new Redis({ host: '127.0.0.1', port: 1, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    client.on('error', () => undefined);
    const error = await client.connect().then(() => client.get('keyfleet:app:x'), (e: unknown) => e).catch((e: unknown) => e);
    client.disconnect();
    expect(isRedisUnavailable(error)).toBe(true);
    const closed = await client.get('keyfleet:app:x').catch((e: unknown) => e);
    expect(isRedisUnavailable(closed)).toBe(true);
  });

  it('leaves replies that are the caller’s bug, and other errors, alone', () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    expect(isRedisUnavailable(reply('NOPERM this user has no permissions to access one of the keys'))).toBe(false);
    expect(isRedisUnavailable(reply('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe(false);
    expect(isRedisUnavailable(reply('LOADING Redis is loading the dataset in memory'))).toBe(true);
    expect(isRedisUnavailable(new Error('Command timed out'))).toBe(true);
    expect(isRedisUnavailable(new TypeError('x is undefined'))).toBe(false);
    expect(isRedisUnavailable('Connection is closed.')).toBe(false);
  });

  it('errorHandler() answers an app’s Redis error with 503 ERR_REDIS_UNAVAILABLE, any other with 500', async () => {
    const app = express();
    app.get('/down', () => {
      throw new Error('Connection is closed.');
    });
    app.get('/bug', () => {
      throw new TypeError('x is undefined');
    });
    app.use(errorHandler(silentLog));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const down = await fetch(`${base}/down`);
      expect([down.status, await down.json()]).toEqual([503, { error: ERRORS.ERR_REDIS_UNAVAILABLE.message, code: 'ERR_REDIS_UNAVAILABLE' }]);
      const bug = await fetch(`${base}/bug`);
      expect([bug.status, (await bug.json()).code]).toEqual([500, 'ERR_INTERNAL']);
    } finally {
      server.close();
    }
  });
});
