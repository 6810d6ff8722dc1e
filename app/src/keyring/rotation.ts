import type { Redis } from 'ioredis';
import { liveNodes, type NodeBeat } from '../cluster/heartbeat.js';
import type { Clock } from '../lib/clock.js';
import { KeyfleetError } from '../lib/errors.js';
import { generateKey } from './generate.js';
import { activate, eligibleAt, findKey, isPrepublished, revoke, stage, stagedKey } from './lifecycle.js';
import type { Purpose } from './types.js';
import type { RingWriter } from './writer.js';

export type RotationProgress =
  | { phase: 'staged'; purpose: Purpose; kid: string; version: number; publishedAt?: number; emergency?: boolean }
  | { phase: 'confirming'; purpose: Purpose; kid: string; confirmed: string[]; pending: string[] }
  | { phase: 'active'; purpose: Purpose; kid: string; version: number }
  | { phase: 'next'; purpose: Purpose; kid: string; version: number };

export interface RotationOutcome {
  ok: boolean;
  purpose: Purpose;
  kid: string;
  /** Nodes that never reported the staged key (only when !ok). */
  pending: string[];
  nodes: number;
  stagedMs: number;
  confirmedMs: number;
  totalMs: number;
  /** Pre-published purposes: when `kid` entered the JWKS. */
  publishedAt?: number;
  /**
   * A routine rotation refused (ok false, nothing changed but a next key possibly staged):
   * `kid` has not been published for JWKS_PREPUBLISH yet and may sign from this instant.
   */
  notBefore?: number;
  /** A fresh key that external verifiers had no chance to see before it signs. */
  emergency?: boolean;
  /** The next key that an emergency rotation revoked. */
  revokedNext?: string;
  /** The next key staged (and published) after the promotion. */
  next?: string;
}

export interface RotationDeps {
  writer: RingWriter;
  redis: Redis;
  clock: Clock;
  masterKey: Buffer;
  confirmTimeoutMs: number;
  pollMs?: number;
  onProgress?: (progress: RotationProgress) => void;
  actor?: string;
  /** Replicas that must hold the staged key before activation (Redis WAIT); 0: none. */
  minReplicas?: number;
  /** How long a pre-published purpose's next key must have been in the JWKS before it signs. */
  prepublishMs?: number;
  /** `rotate --now`: a fresh key at once, skipping pre-publication (sign only; others are alike). */
  emergency?: boolean;
}

/**
 * Propagate-then-activate: stage a new key, wait until every live node reports a ring
 * version that includes it, then activate it. A node that never confirms blocks activation
 * and is named in the outcome; nothing is forced.
 *
 * For a pre-published purpose (sign) a routine rotation promotes the next key, staged and
 * in the JWKS since the previous rotation, and is refused (`notBefore`) while that key is
 * younger than `prepublishMs`; then it stages the following next key. An emergency rotation
 * revokes the next key and activates a fresh one, which external verifiers learn only when
 * their JWKS cache refreshes.
 */
export async function rotate(purpose: Purpose, deps: RotationDeps): Promise<RotationOutcome> {
  const { writer, redis, clock, masterKey, confirmTimeoutMs, pollMs = 25, onProgress, actor, minReplicas = 0 } = deps;
  const prepublished = isPrepublished(purpose);
  const emergency = prepublished && deps.emergency === true;
  const prepublishMs = prepublished ? (deps.prepublishMs ?? 0) : 0;
  const started = clock.now();
  let kid = '';
  let createdAt = 0;
  let revokedNext: string | undefined;
  const audit: { action: string; purpose: Purpose; actor?: string; kid?: string; detail?: string } = { action: 'stage', purpose, actor };
  const staged = await writer.update(audit, async (doc, now) => {
    const existing = stagedKey(doc, purpose);
    revokedNext = undefined; // the writer may run this again on a newer ring
    if (existing && !emergency) {
      kid = existing.kid;
      createdAt = existing.createdAt;
      return null;
    }
    const key = await generateKey(purpose, now, masterKey);
    kid = key.kid;
    createdAt = key.createdAt;
    audit.kid = kid; // read when the change commits
    if (!existing) return stage(doc, key, now);
    // Emergency: the next key is not used; it is revoked in the same change.
    revokedNext = existing.kid;
    audit.detail = `emergency: revoked next key ${existing.kid}`;
    return stage(revoke(doc, existing.kid, now, writer.lifetimes), key, now);
  });
  // The version that holds the staged key: the one just committed, or the current one when
  // a key was already staged (the writer then returns the ring as it is).
  const stagedVersion = staged.version;
  const publishedAt = prepublished ? createdAt : undefined;
  onProgress?.({ phase: 'staged', purpose, kid, version: stagedVersion, ...(prepublished ? { publishedAt: createdAt, emergency } : {}) });
  const stagedAt = clock.now();
  const base = { purpose, kid, ...(publishedAt !== undefined ? { publishedAt } : {}), ...(emergency ? { emergency, ...(revokedNext ? { revokedNext } : {}) } : {}) };

  if (prepublished && !emergency && eligibleAt({ createdAt }, prepublishMs) > stagedAt) {
    // Promoting now would sign with a key that some verifiers have not fetched yet.
    return { ok: false, pending: [], nodes: 0, stagedMs: stagedAt - started, confirmedMs: 0, totalMs: clock.now() - started, ...base, notBefore: eligibleAt({ createdAt }, prepublishMs) };
  }

  const { nodes, pending: waitingFor } = await waitForNodes(redis, stagedVersion, {
    clock,
    timeoutMs: confirmTimeoutMs,
    pollMs,
    onChange: (confirmed, waiting) => onProgress?.({ phase: 'confirming', purpose, kid, confirmed, pending: waiting }),
  });
  const pending = [...waitingFor];
  if (pending.length === 0 && minReplicas > 0) {
    // Replication is asynchronous: a key only on the master could vanish in a failover
    // after it had signed tokens. Activate only once the replicas have it too.
    const acked = await writer.options.store.waitForReplicas(minReplicas, Math.min(confirmTimeoutMs, 5_000));
    if (acked < minReplicas) pending.push(`redis replicas (${acked}/${minReplicas} acknowledged)`);
  }
  const confirmedAt = clock.now();
  const outcome = { ...base, nodes: nodes.length, stagedMs: stagedAt - started, confirmedMs: confirmedAt - stagedAt };
  if (pending.length > 0) {
    const { store, nodeId } = writer.options;
    await store
      .audit({ actor: actor ?? nodeId, action: 'rotation-blocked', purpose, kid, detail: `unconfirmed: ${pending.join(' ')}` }, clock.now())
      .catch(() => undefined);
    return { ok: false, pending, totalMs: clock.now() - started, ...outcome };
  }

  const active = await writer.update({ action: 'activate', purpose, kid, actor, ...(emergency ? { detail: 'emergency: not pre-published' } : {}) }, (doc, now) => {
    const key = findKey(doc, kid);
    if (key?.state === 'active') return null;
    if (key?.state !== 'staged') throw new KeyfleetError('ERR_KEY_STATE', `key ${kid} is no longer staged`);
    return activate(doc, kid, now, writer.lifetimes);
  });
  onProgress?.({ phase: 'active', purpose, kid, version: active.version });
  const next = prepublished ? await stageNextKey(purpose, writer, masterKey, actor) : undefined;
  if (next) onProgress?.({ phase: 'next', purpose, kid: next.kid, version: next.version });
  return { ok: true, pending: [], totalMs: clock.now() - started, ...outcome, ...(next ? { next: next.kid } : {}) };
}

/**
 * Stages the next key of a pre-published purpose unless one is staged already; it is in the
 * JWKS from this version on. Returns the staged key's id and the ring version holding it.
 */
export async function stageNextKey(purpose: Purpose, writer: RingWriter, masterKey: Buffer, actor?: string): Promise<{ kid: string; version: number }> {
  let kid = '';
  // Without an actor the writer records this node (an explicit undefined would erase it).
  const audit: { action: string; purpose: Purpose; actor?: string; kid?: string; detail: string } = {
    action: 'stage',
    purpose,
    ...(actor ? { actor } : {}),
    detail: 'next key, published in the JWKS',
  };
  const snapshot = await writer.update(audit, async (doc, now) => {
    const existing = stagedKey(doc, purpose);
    if (existing) {
      kid = existing.kid;
      return null;
    }
    const key = await generateKey(purpose, now, masterKey);
    kid = key.kid;
    audit.kid = kid;
    return stage(doc, key, now);
  });
  return { kid, version: snapshot.version };
}

export interface WaitOptions {
  clock: Clock;
  timeoutMs: number;
  pollMs?: number;
  onChange?: (confirmed: string[], pending: string[]) => void;
}

/**
 * Waits until every live node (heartbeat within its TTL) reports ring version >= `version`.
 * Nodes publish a heartbeat as soon as they load a new version, so this takes milliseconds
 * when all is well; a node that stops beating drops out after its heartbeat TTL.
 */
export async function waitForNodes(redis: Redis, version: number, { clock, timeoutMs, pollMs = 25, onChange }: WaitOptions) {
  const deadline = clock.now() + timeoutMs;
  let last = '';
  for (;;) {
    const nodes: NodeBeat[] = await liveNodes(redis);
    const confirmed = nodes.filter((node) => node.ringVersion >= version).map((node) => node.id);
    const pending = nodes.filter((node) => node.ringVersion < version).map((node) => node.id);
    const report = `${confirmed.join(',')}|${pending.join(',')}`;
    if (report !== last) {
      onChange?.(confirmed, pending);
      last = report;
    }
    if (pending.length === 0 || clock.now() >= deadline) return { nodes, confirmed, pending };
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
