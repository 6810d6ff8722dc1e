import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { NodeRole } from '../config/index.js';
import { beatAuthentic, beatMac } from '../keyring/seal.js';
import { redisKeys } from '../lib/redisKeys.js';
import type { NodeFigures } from '../metrics/rates.js';

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
  /** Verifications per second and cache hit ratio over the last seconds (the dashboard shows them). */
  figures?: NodeFigures;
  /** The sequence number of the last credential revocation this node applied (auth/revocations.ts). */
  revocationSeq?: number;
}

// What a heartbeat must look like; anything else in the node keyspace is skipped, never fatal.
const BeatSchema = z
  .object({
    id: z.string(),
    role: z.enum(['auto', 'primary', 'secondary']),
    primary: z.boolean(),
    ringVersion: z.number(),
    startedAt: z.number(),
    at: z.number(),
    draining: z.boolean(),
    ringId: z.string().optional(),
    mac: z.string().optional(),
  })
  .passthrough();

export async function publishBeat(redis: Redis, beat: NodeBeat, ttlMs: number, masterKey?: Buffer): Promise<void> {
  const signed = masterKey ? { ...beat, mac: beatMac(masterKey, beat) } : beat;
  await redis.set(redisKeys.node(beat.id), JSON.stringify(signed), 'PX', ttlMs);
}

/** Live nodes whose heartbeat carries a valid MAC: what they say of their ring can be trusted. */
export async function authenticBeats(redis: Redis, masterKey: Buffer): Promise<NodeBeat[]> {
  return (await liveNodes(redis)).filter((beat) => beatAuthentic(masterKey, beat));
}

export async function removeBeat(redis: Redis, id: string): Promise<void> {
  await redis.del(redisKeys.node(id));
}

/** Every node with a live heartbeat (SCAN, never KEYS). */
export async function liveNodes(redis: Redis): Promise<NodeBeat[]> {
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
    .flatMap((value) => {
      if (value === null) return [];
      try {
        const parsed = BeatSchema.safeParse(JSON.parse(value));
        return parsed.success ? [parsed.data as NodeBeat] : [];
      } catch {
        return []; // not JSON: skipped, like any malformed entry
      }
    })
    .sort((a, b) => a.id.localeCompare(b.id));
}
