import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Fence } from '../keyring/ports.js';
import type { Clock } from '../lib/clock.js';
import { redisKeys } from '../lib/redisKeys.js';

// Renew and release only while the lease still carries our token: a node that paused past
// the TTL must never extend or delete the lease another node has since taken.
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** What the primary's duties need of the lease (Lease in a node, a flag in unit tests). */
export interface PrimaryLease extends Fence {
  readonly held: boolean;
  /** Takes the lease if free, renews it if ours; whether this node holds it now. */
  acquireOrRenew(): Promise<boolean>;
  /** Gives the lease up (clean shutdown). */
  release(): Promise<void>;
}

/**
 * The primary lease: one key, set with NX and a TTL. Its token fences every ring write
 * (see RingStore.commit), so a node that lost the lease cannot change the ring.
 */
export class Lease implements PrimaryLease {
  private token: string | undefined;
  private validUntil = 0;

  constructor(
    private readonly redis: Redis,
    private readonly nodeId: string,
    private readonly ttlMs: number,
    private readonly clock: Clock,
  ) {}

  /** The token while this node believes it holds the lease; undefined once it may have expired. */
  get fence(): string | undefined {
    return this.token !== undefined && this.clock.now() < this.validUntil ? this.token : undefined;
  }

  get held(): boolean {
    return this.fence !== undefined;
  }

  /** Takes the lease if free, renews it if ours. Returns whether this node holds it now. */
  async acquireOrRenew(): Promise<boolean> {
    const started = this.clock.now();
    if (this.token !== undefined) {
      const renewed = await this.redis.eval(RENEW, 1, redisKeys.lease, this.token, String(this.ttlMs));
      if (renewed === 1) {
        this.validUntil = started + this.ttlMs;
        return true;
      }
      this.token = undefined;
    }
    const token = `${this.nodeId}/${randomBytes(8).toString('hex')}`;
    const set = await this.redis.set(redisKeys.lease, token, 'PX', this.ttlMs, 'NX');
    if (set !== 'OK') return false;
    this.token = token;
    // Measured from before the request: our view of the lease ends no later than Redis's.
    this.validUntil = started + this.ttlMs;
    return true;
  }

  /** Gives the lease up at once (clean shutdown), so another node need not wait out the TTL. */
  async release(): Promise<void> {
    const token = this.token;
    this.token = undefined;
    this.validUntil = 0;
    if (token !== undefined) await this.redis.eval(RELEASE, 1, redisKeys.lease, token);
  }

  /** Forgets the lease locally without touching Redis (it expires on its own). */
  drop(): void {
    this.token = undefined;
    this.validUntil = 0;
  }
}

/** A lease token as acquireOrRenew makes it: the node id, a slash, 16 hex digits. */
const TOKEN = /^(.{1,256})\/[0-9a-f]{16}$/s;

/** The node id of the lease holder, if any (a value that is no lease token names nobody). */
export async function leaseHolder(redis: Redis): Promise<string | undefined> {
  const token = await redis.get(redisKeys.lease);
  return token === null ? undefined : TOKEN.exec(token)?.[1];
}
