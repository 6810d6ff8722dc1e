import type { Redis } from 'ioredis';
import { readAudit, type AuditEvent, type RingStore } from '../keyring/store.js';
import type { RingDocument } from '../keyring/types.js';
import type { Logger } from '../lib/log.js';
import { liveNodes, type NodeBeat } from './heartbeat.js';
import { leaseHolder } from './lease.js';

/**
 * The cluster as it stands, for people to look at (the dashboard): live nodes, the lease
 * holder, the authenticated ring, the newest audit events. Read-only.
 */
export interface ClusterStatusSource {
  nodes(): Promise<NodeBeat[]>;
  primary(): Promise<string | undefined>;
  ring(): Promise<RingDocument | null>;
  audit(count: number): Promise<AuditEvent[]>;
}

/** The status as Redis holds it; every read is checked (malformed entries are logged and skipped). */
export function redisStatusSource(redis: Redis, store: RingStore, log?: Logger): ClusterStatusSource {
  return {
    nodes: () => liveNodes(redis, log),
    primary: () => leaseHolder(redis),
    ring: () => store.read().then((opened) => opened?.doc ?? null),
    audit: (count) => readAudit(redis, count, log),
  };
}
