import type { Redis } from 'ioredis';
import { z } from 'zod';
import { KeyfleetError } from '../lib/errors.js';
import { checkStored, reportMalformed } from '../lib/fromRedis.js';
import type { Logger } from '../lib/log.js';
import { redisKeys } from '../lib/redisKeys.js';
import type { AuditEntry, CommitResult, RingCommitter, RingReader } from './ports.js';
import { openRing, sealRing, type OpenedRing } from './seal.js';
import type { RingDocument } from './types.js';

export type { AuditEntry, CommitResult } from './ports.js';


export interface AuditEvent extends AuditEntry {
  id: string;
  at: number;
  version: number;
}

// One atomic step: check the version (compare-and-set), check the writer still holds the
// lease (fencing), write the document, bump the version, audit, announce.
// A new version is passed in rather than computed: after Redis lost its data, the primary
// writes back the ring it holds with a version above any node's, so every node accepts it.
const COMMIT_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then return {-1, current} end
local next = tonumber(ARGV[2])
if next <= current then return {-2, current} end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], next)
local fields = {'version', tostring(next), 'at', ARGV[6]}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '10000', '*', unpack(fields))
redis.call('PUBLISH', ARGV[5], next)
return {1, next}
`;


/**
 * Reads and writes the ring in Redis. Holds no state of its own. Every read is authenticated
 * and every write sealed under the master key (seal.ts).
 */
export class RingStore implements RingReader, RingCommitter {
  constructor(
    private readonly redis: Redis,
    private readonly masterKey: Buffer,
  ) {}

  /** The ring, authenticated: throws ERR_RING_INTEGRITY (or _FORMAT, ERR_MASTER_KEY_MISMATCH) when it is not. */
  async read(): Promise<OpenedRing | null> {
    const raw = await this.readRaw();
    return raw === null ? null : openRing(this.masterKey, raw);
  }

  /** The stored text, unchecked (backups copy it as it is; alarms fingerprint it). */
  async readRaw(): Promise<string | null> {
    return this.redis.get(redisKeys.ring);
  }

  async readVersion(): Promise<number> {
    return Number((await this.redis.get(redisKeys.ringVersion)) ?? '0');
  }

  /**
   * Writes `doc` as version `doc.version` if Redis still holds `expectedVersion`, and, when
   * `fence` is given, only while the lease holds that token.
   */
  async commit(expectedVersion: number, doc: RingDocument, fence: string | undefined, audit: AuditEntry, now: number): Promise<CommitResult> {
    const fields = Object.entries(audit).flatMap(([key, value]) => (value === undefined ? [] : [key, String(value)]));
    const [status, version] = (await this.redis.eval(
      COMMIT_SCRIPT,
      4,
      redisKeys.ring,
      redisKeys.ringVersion,
      redisKeys.lease,
      redisKeys.audit,
      String(expectedVersion),
      String(doc.version),
      fence ?? '',
      JSON.stringify(sealRing(this.masterKey, doc)),
      redisKeys.ringChannel,
      String(now),
      ...fields,
    )) as [number, number];
    if (status === 1) return { ok: true, version };
    if (status === -2) throw new KeyfleetError('ERR_RING_VERSION', `new ring version ${doc.version} is not above ${version}`);
    return { ok: false, reason: status === -1 ? 'fenced' : 'conflict', current: version };
  }

  /**
   * Blocks until `replicas` replicas have acknowledged every write made on this connection,
   * or `timeoutMs` passed; returns how many did (Redis WAIT).
   */
  async waitForReplicas(replicas: number, timeoutMs: number): Promise<number> {
    return this.redis.wait(replicas, timeoutMs);
  }

  /** An audit entry for something that did not change the ring (a blocked rotation, say). */
  async audit(entry: AuditEntry, now: number): Promise<void> {
    const fields = Object.entries(entry).flatMap(([key, value]) => (value === undefined ? [] : [key, String(value)]));
    await this.redis.xadd(redisKeys.audit, 'MAXLEN', '~', '10000', '*', 'version', String(await this.readVersion()), 'at', String(now), ...fields);
  }

  async auditTail(count: number): Promise<AuditEvent[]> {
    return readAudit(this.redis, count);
  }
}

// An audit entry as the stream holds it (flat field/value pairs): version and at are numbers,
// the rest bounded strings. The stream is writable by whoever holds the password.
const AuditFieldsSchema = z
  .object({
    version: z.string().regex(/^\d{1,15}$/),
    at: z.string().regex(/^\d{1,15}$/),
    actor: z.string().max(512).default(''),
    action: z.string().max(128).default(''),
    purpose: z.string().max(32).optional(),
    kid: z.string().max(256).optional(),
    detail: z.string().max(65_536).optional(),
  })
  .strip();

/**
 * The newest `count` audit events (no master key needed: the audit stream is not secret).
 * A malformed entry is skipped and reported by its stream id.
 */
export async function readAudit(redis: Redis, count: number, log?: Logger): Promise<AuditEvent[]> {
  const entries = await redis.xrevrange(redisKeys.audit, '+', '-', 'COUNT', count);
  return entries.flatMap(([id, flat]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    const checked = checkStored(AuditFieldsSchema, fields);
    if (!checked.ok) {
      reportMalformed(log, `${redisKeys.audit} ${id}`, checked.code);
      return [];
    }
    const { version, at, ...rest } = checked.value;
    const event: AuditEvent = { id, version: Number(version), at: Number(at), ...rest };
    for (const key of ['purpose', 'kid', 'detail'] as const) if (event[key] === undefined) delete event[key];
    return [event];
  });
}
