import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { NodeDirectory } from '../keyring/ports.js';
import { beatAuthentic, beatMac } from '../keyring/seal.js';
import { parseStored, reportMalformed } from '../lib/fromRedis.js';
import type { Logger } from '../lib/log.js';
import { redisKeys } from '../lib/redisKeys.js';
import { NODE_ROLES, type NodeRole } from './role.js';

/** What each node says about itself, every heartbeat interval, with a TTL of three. */
export interface NodeBeat {
  id: string;
  role: NodeRole;
  primary: boolean;
  ringVersion: number;
  startedAt: number;
  at: number;
  draining: boolean;
  /** The id of the ring this node serves (absent before it holds one). */
  ringId?: string;
  /** HMAC under a key derived from the master key: only such beats count as evidence. */
  mac?: string;
  /**
   * Verifications per second and cache hit ratio over the last seconds, as metrics/rates.ts
   * computes them; opaque here, checked where they are read (readFigures).
   */
  figures?: unknown;
  /** The sequence number of the last credential revocation this node applied (auth/revocations.ts). */
  revocationSeq?: number;
}

// What a heartbeat must look like; anything else in the node keyspace is skipped, never fatal.
// Unknown fields pass through: the MAC covers the beat as its node wrote it.
const BeatSchema = z
  .object({
    id: z.string().max(256),
    role: z.enum(NODE_ROLES),
    primary: z.boolean(),
    ringVersion: z.number(),
    startedAt: z.number(),
    at: z.number(),
    draining: z.boolean(),
    ringId: z.string().optional(),
    mac: z.string().optional(),
    figures: z.unknown().optional(),
    revocationSeq: z.number().int().nonnegative().optional(),
  })
  .passthrough();

export async function publishBeat(redis: Redis, beat: NodeBeat, ttlMs: number, masterKey?: Buffer): Promise<void> {
  const signed = masterKey ? { ...beat, mac: beatMac(masterKey, beat) } : beat;
  await redis.set(redisKeys.node(beat.id), JSON.stringify(signed), 'PX', ttlMs);
}

/** Live nodes whose heartbeat carries a valid MAC: what they say of their ring can be trusted. */
export async function authenticBeats(redis: Redis, masterKey: Buffer, log?: Logger): Promise<NodeBeat[]> {
  return (await liveNodes(redis, log)).filter((beat) => beatAuthentic(masterKey, beat));
}

export async function removeBeat(redis: Redis, id: string): Promise<void> {
  await redis.del(redisKeys.node(id));
}

/** Every node with a live heartbeat (SCAN, never KEYS); a malformed beat is logged and skipped. */
export async function liveNodes(redis: Redis, log?: Logger): Promise<NodeBeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${redisKeys.nodePrefix}*`, 'COUNT', 200);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  return values
    .flatMap((value, i) => {
      if (value === null) return []; // expired between SCAN and MGET
      const parsed = parseStored(BeatSchema, value);
      if (parsed.ok) return [parsed.value as NodeBeat];
      reportMalformed(log, keys[i]!, parsed.code);
      return [];
    })
    .sort((a, b) => a.id.localeCompare(b.id));
}

/** The live nodes, from their heartbeats: what rotations and revocations wait on. */
export class HeartbeatDirectory implements NodeDirectory {
  constructor(
    private readonly redis: Redis,
    private readonly log?: Logger,
  ) {}

  liveNodes(): Promise<NodeBeat[]> {
    return liveNodes(this.redis, this.log);
  }
}
