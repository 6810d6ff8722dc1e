import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Lease, leaseHolder } from '../../../app/src/cluster/lease.js';
import { redisKeys } from '../../../app/src/lib/redisKeys.js';
import { FakeClock } from '../support/ring.js';

const TTL = 10_000;

/**
 * Just enough of Redis for the lease: one key with SET NX and the two compare-and-* scripts,
 * recognised by what they do. `latencyMs` advances the clock during each call.
 */
class FakeRedis {
  value: string | null = null;
  calls: string[] = [];
  constructor(
    private readonly clock: FakeClock,
    public latencyMs = 0,
  ) {}

  async set(key: string, value: string, px: string, ttl: number, nx: string) {
    this.clock.advance(this.latencyMs);
    expect([key, px, ttl, nx]).toEqual([redisKeys.lease, 'PX', TTL, 'NX']);
    this.calls.push('set');
    if (this.value !== null) return null;
    this.value = value;
    return 'OK';
  }

  async eval(script: string, _keys: number, key: string, token: string) {
    this.clock.advance(this.latencyMs);
    expect(key).toBe(redisKeys.lease);
    const op = script.includes('PEXPIRE') ? 'renew' : 'release';
    this.calls.push(op);
    if (this.value !== token) return 0;
    if (op === 'release') this.value = null;
    return 1;
  }

  async get(key: string) {
    expect(key).toBe(redisKeys.lease);
    return this.value;
  }
}

const setup = (latencyMs = 0) => {
  const clock = new FakeClock();
  const redis = new FakeRedis(clock, latencyMs);
  const lease = new Lease(redis as unknown as Redis, 'app-1', TTL, clock);
  return { clock, redis, lease };
};

describe('Lease', () => {
  it('takes a free lease, with a fence token that names the node', async () => {
    const { lease, redis } = setup();
    expect(lease.held).toBe(false);
    expect(await lease.acquireOrRenew()).toBe(true);
    expect(lease.held).toBe(true);
    expect(lease.fence).toBe(redis.value);
    expect(lease.fence).toMatch(/^app-1\/[0-9a-f]{16}$/);
  });

  it('does not take a lease another node holds', async () => {
    const { lease, redis } = setup();
    redis.value = 'app-2/0123456789abcdef';
    expect(await lease.acquireOrRenew()).toBe(false);
    expect(lease.fence).toBeUndefined();
    expect(redis.value).toBe('app-2/0123456789abcdef');
  });

  it('stops offering its fence once the TTL may have run out, measured from before the request', async () => {
    const { lease, clock } = setup(400);
    const started = clock.now();
    await lease.acquireOrRenew(); // the reply arrives 400 ms after the request left
    clock.t = started + TTL - 1;
    expect(lease.fence).toBeDefined();
    clock.t = started + TTL;
    expect(lease.fence).toBeUndefined();
    expect(lease.held).toBe(false);
  });

  it('renews its own lease, extending its view of it', async () => {
    const { lease, redis, clock } = setup();
    await lease.acquireOrRenew();
    const token = lease.fence;
    clock.advance(TTL - 1000);
    expect(await lease.acquireOrRenew()).toBe(true);
    expect(redis.calls).toEqual(['set', 'renew']);
    clock.advance(TTL - 1);
    expect(lease.fence).toBe(token);
  });

  it('when the lease was lost meanwhile, tries to take it afresh with a new token', async () => {
    const { lease, redis } = setup();
    await lease.acquireOrRenew();
    const first = lease.fence;
    redis.value = null; // expired in Redis
    expect(await lease.acquireOrRenew()).toBe(true);
    expect(redis.calls).toEqual(['set', 'renew', 'set']);
    expect(lease.fence).not.toBe(first);

    redis.value = 'app-2/0123456789abcdef'; // and now someone else took it
    expect(await lease.acquireOrRenew()).toBe(false);
    expect(lease.fence).toBeUndefined();
  });

  it('releases only a lease it still holds', async () => {
    const { lease, redis } = setup();
    await lease.acquireOrRenew();
    await lease.release();
    expect(redis.value).toBeNull();
    expect(lease.fence).toBeUndefined();

    await lease.acquireOrRenew();
    redis.value = 'app-2/0123456789abcdef';
    await lease.release();
    expect(redis.value).toBe('app-2/0123456789abcdef');
  });

  it('drop forgets the lease locally without touching Redis', async () => {
    const { lease, redis } = setup();
    await lease.acquireOrRenew();
    const held = redis.value;
    lease.drop();
    expect(lease.fence).toBeUndefined();
    expect(redis.value).toBe(held);
    expect(redis.calls).toEqual(['set']);
  });
});

describe('leaseHolder', () => {
  it('returns the node id from the token, or undefined when the lease is free', async () => {
    const redis = new FakeRedis(new FakeClock());
    expect(await leaseHolder(redis as unknown as Redis)).toBeUndefined();
    redis.value = 'app-2.eu-west_1/0123456789abcdef';
    expect(await leaseHolder(redis as unknown as Redis)).toBe('app-2.eu-west_1');
    // Whatever else sits at the key (anyone with the password can write it) names nobody.
    for (const value of ['no slash here', '/0123456789abcdef', 'node-1/xyz', '<script>/0123456789abcdef0']) {
      redis.value = value;
      expect(await leaseHolder(redis as unknown as Redis), value).toBeUndefined();
    }
  });
});
