import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { KeyfleetError } from '../lib/errors.js';
import { ALGORITHMS, PURPOSES, RING_FORMAT, type RingDocument, type SealedRing, type StoredKey } from './types.js';
import { masterKeyId } from './wrap.js';

// The whole ring is authenticated under the master key, not only each key's material: an
// HMAC-SHA256 over the canonical JSON of the document, keyed by a key derived from the master
// key (HKDF, RFC 5869, its own `info`, so it never doubles as the AES key that wraps material).
// Whoever can write to Redis but lacks the master key can neither change a public key, a
// state, a time or the version, nor drop or splice in an entry: every such edit fails here.

const RING_MAC_INFO = 'keyfleet ring mac v2';
const BEAT_MAC_INFO = 'keyfleet heartbeat mac v2';

const derived = new WeakMap<Buffer, { ring: Buffer; beat: Buffer; id: string }>();
function keysOf(masterKey: Buffer) {
  let keys = derived.get(masterKey);
  if (!keys) {
    const derive = (info: string) => Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), info, 32));
    keys = { ring: derive(RING_MAC_INFO), beat: derive(BEAT_MAC_INFO), id: masterKeyId(masterKey) };
    derived.set(masterKey, keys);
  }
  return keys;
}

/** JSON with object keys sorted at every level: one byte string per value, whoever wrote it. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
}

const mac = (key: Buffer, value: unknown) => createHmac('sha256', key).update(canonicalJson(value)).digest('base64url');

function macMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const [a, b] = [Buffer.from(expected), Buffer.from(given)];
  return a.length === b.length && timingSafeEqual(a, b);
}

export const newRingId = () => randomBytes(9).toString('base64url');

/** The document as Redis stores it: the ring plus its MAC. */
export function sealRing(masterKey: Buffer, doc: RingDocument): SealedRing {
  const { mac: _old, ...body } = doc as SealedRing;
  return { ...body, mac: mac(keysOf(masterKey).ring, body) };
}

// What a stored ring must look like. Unknown fields are refused (a MAC covers what it covers,
// and nothing else may ride along); strict types make a malformed document an error, not a cast.
const KeySchema = z
  .object({
    kid: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/),
    purpose: z.enum(PURPOSES),
    alg: z.string(),
    state: z.enum(['staged', 'active', 'retired', 'revoked']),
    createdAt: z.number(),
    activatedAt: z.number().optional(),
    retiredAt: z.number().optional(),
    deleteAfter: z.number().optional(),
    revokedAt: z.number().optional(),
    material: z.string().max(16_384),
  })
  .strict()
  .refine((key) => key.alg === ALGORITHMS[key.purpose], { message: 'algorithm does not match purpose' });

const SealedSchema = z
  .object({
    format: z.literal(RING_FORMAT),
    ringId: z.string().min(1).max(64),
    version: z.number().int().nonnegative(),
    masterKeyId: z.string(),
    updatedAt: z.number(),
    keys: z.array(KeySchema).max(1_000),
    mac: z.string(),
  })
  .strict();

// Format 1 (keyfleet 0.1): no MAC, public keys stored beside the material. Read only so that
// the primary can upgrade it once (see openRing's `legacy`).
const LegacySchema = z.object({
  format: z.literal(1),
  version: z.number().int().nonnegative(),
  masterKeyId: z.string(),
  updatedAt: z.number(),
  keys: z.array(z.object({ publicJwk: z.unknown().optional() }).passthrough()).max(1_000),
});

export interface OpenedRing {
  doc: RingDocument;
  /** True for a format-1 ring: unauthenticated, to be upgraded by the primary. */
  legacy: boolean;
}

/**
 * Parses and authenticates a ring read from Redis or a backup. Throws ERR_RING_FORMAT for
 * something that is not a ring, ERR_MASTER_KEY_MISMATCH for a ring of another master key, and
 * ERR_RING_INTEGRITY when the MAC does not match: the document was changed without the key.
 */
export function openRing(masterKey: Buffer, raw: string | unknown): OpenedRing {
  let value: unknown = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch (cause) {
      throw new KeyfleetError('ERR_RING_FORMAT', 'the key ring is not valid JSON', { cause });
    }
  }
  const keys = keysOf(masterKey);
  const format = (value as { format?: unknown } | null)?.format;
  if (format === 1) {
    const doc = upgradeLegacy(value);
    if (doc.masterKeyId !== keys.id) throw mismatch(doc.masterKeyId, keys.id);
    return { doc, legacy: true };
  }
  const parsed = SealedSchema.safeParse(value);
  if (!parsed.success) {
    throw new KeyfleetError('ERR_RING_FORMAT', `the key ring is not in format ${RING_FORMAT} (${parsed.error.issues[0]?.path.join('.') || 'document'}: ${parsed.error.issues[0]?.message})`);
  }
  const { mac: given, ...doc } = parsed.data;
  if (doc.masterKeyId !== keys.id) throw mismatch(doc.masterKeyId, keys.id);
  if (!macMatches(mac(keys.ring, doc), given)) {
    throw new KeyfleetError('ERR_RING_INTEGRITY', 'the key ring fails its authentication check: it was changed by someone without the master key');
  }
  return { doc: doc as RingDocument, legacy: false };
}

const mismatch = (theirs: string, ours: string) =>
  new KeyfleetError(
    'ERR_MASTER_KEY_MISMATCH',
    `the key ring was written under another master key (id ${theirs}, this process has ${ours}): check KEYRING_MASTER_KEY`,
  );

function upgradeLegacy(value: unknown): RingDocument {
  const parsed = LegacySchema.safeParse(value);
  if (!parsed.success) throw new KeyfleetError('ERR_RING_FORMAT', 'the key ring is not in format 1 or 2');
  const keys = parsed.data.keys.map(({ publicJwk: _ignored, ...key }) => KeySchema.safeParse(key));
  const bad = keys.find((key) => !key.success);
  if (bad) throw new KeyfleetError('ERR_RING_FORMAT', `a key of the format-1 ring is malformed (${bad.error?.issues[0]?.message})`);
  const { version, masterKeyId: id, updatedAt } = parsed.data;
  // Public keys are not carried over: they are derived from the private keys when opened.
  return { format: RING_FORMAT, ringId: 'legacy', version, masterKeyId: id, updatedAt, keys: keys.map((key) => key.data as StoredKey) };
}

/** A heartbeat's MAC: peers' ring versions count as evidence only when they carry one. */
export function beatMac(masterKey: Buffer, beat: object): string {
  const { mac: _old, ...body } = beat as { mac?: string };
  return mac(keysOf(masterKey).beat, body);
}

export function beatAuthentic(masterKey: Buffer, beat: object & { mac?: unknown }): boolean {
  return macMatches(beatMac(masterKey, beat), beat.mac);
}
