import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { Network, type StartedNetwork } from 'testcontainers';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CredentialRevocations, revocationKeys } from '../../app/src/auth/revocations.js';
import { RingHolder } from '../../app/src/keyring/holder.js';
import { RingStore } from '../../app/src/keyring/store.js';
import { systemClock } from '../../app/src/lib/clock.js';
import { createLogger } from '../../app/src/lib/log.js';
import { connectRedis } from '../../app/src/lib/redis.js';
import { redisKeys } from '../../app/src/lib/redisKeys.js';
import { startRedis, type StartedRedis } from '../support/cluster.js';

// A node that starts its ring holder and its revocations while its Redis connections are
// between ioredis's 'connect' and 'ready' events (an app that awaits something between
// createKeyfleet() and start(): found by examples/notes-api) must still hear every
// announcement. Before the fix, a SUBSCRIBE sent then was lost without an error, and the
// node learnt of rotations and revocations only from its periodic reload.

describe('subscriptions made while a connection is still starting', () => {
  let network: StartedNetwork;
  let redis: StartedRedis;
  let admin: Redis;

  beforeAll(async () => {
    network = await new Network().start();
    redis = await startRedis(network);
    admin = redis.admin();
  });
  afterAll(async () => {
    admin?.disconnect();
    await redis?.container.stop({ timeout: 0 });
    await network?.stop();
  });

  it('the ring holder and the revocations are subscribed when started on the connection\'s connect event', async () => {
    const log = createLogger('silent');
    const masterKey = randomBytes(32);
    const target = { kind: 'url' as const, url: redis.hostUrl };
    const subscribers = async (channel: string) => Number(((await admin.pubsub('NUMSUB', channel)) as [string, number])[1]);
    const trials = 5;
    for (let trial = 0; trial < trials; trial++) {
      const main = connectRedis(target, 'main');
      const subscriber = connectRedis(target, 'sub', { maxRetriesPerRequest: null, commandTimeout: undefined });
      try {
        await once(subscriber, 'connect');
        expect(subscriber.status).toBe('connect');
        const holder = new RingHolder({ store: new RingStore(main, masterKey), subscriber, masterKey, clock: systemClock, log, reloadIntervalMs: 60_000 });
        const revocations = new CredentialRevocations({ redis: main, subscriber, clock: systemClock, log, horizonMs: 60_000, storeHorizonMs: 60_000, reloadIntervalMs: 60_000 });
        await Promise.all([holder.start(), revocations.start()]);
        expect(await subscribers(redisKeys.ringChannel)).toBe(1);
        expect(await subscribers(revocationKeys.channel)).toBe(1);
        holder.stop();
        revocations.stop();
      } finally {
        subscriber.disconnect();
        main.disconnect();
      }
      // Gone once the connection is: the next trial starts from none.
      await expect.poll(() => subscribers(redisKeys.ringChannel)).toBe(0);
    }
  });
});
