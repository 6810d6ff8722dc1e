import type { Redis } from 'ioredis';
import type { NodeRole } from '../config/index.js';
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
  /** Verifications per second and cache hit ratio over the last seconds (the dashboard shows them). */
  figures?: NodeFigures;
}

export async function publishBeat(redis: Redis, beat: NodeBeat, ttlMs: number): Promise<void> {
  await redis.set(redisKeys.node(beat.id), JSON.stringify(beat), 'PX', ttlMs);
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
    .filter((value): value is string => value !== null)
    .map((value) => JSON.parse(value) as NodeBeat)
    .sort((a, b) => a.id.localeCompare(b.id));
}
