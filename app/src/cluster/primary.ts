import type { Redis } from 'ioredis';
import type { NodeRole } from '../config/index.js';
import { generateKey } from '../keyring/generate.js';
import type { RingHolder } from '../keyring/holder.js';
import {
  activate,
  activateFresh,
  activeKey,
  collectGarbage,
  findKey,
  isPrepublished,
  purposesDueForRotation,
  purposesWithoutActiveKey,
  purposesWithoutNextKey,
  revoke,
  stage,
  stagedKey,
} from '../keyring/lifecycle.js';
import { rotate, stageNextKey, waitForNodes, type RotationOutcome } from '../keyring/rotation.js';
import { newRingId, type OpenedRing } from '../keyring/seal.js';
import type { RingStore } from '../keyring/store.js';
import { PURPOSES, isPurpose, type Purpose, type RingDocument } from '../keyring/types.js';
import type { RingWriter } from '../keyring/writer.js';
import type { Clock } from '../lib/clock.js';
import { KeyfleetError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { redisKeys } from '../lib/redisKeys.js';
import { parseCommand, reply, type Command } from './commands.js';
import type { Lease } from './lease.js';
import type { MetricsObserver } from '../metrics/nodeMetrics.js';

export interface PrimaryDutyOptions {
  role: NodeRole;
  redis: Redis;
  /** A connection of its own for the blocking pop of operator commands. */
  commandRedis: Redis;
  store: RingStore;
  holder: RingHolder;
  lease: Lease;
  writer: RingWriter;
  clock: Clock;
  log: Logger;
  masterKey: Buffer;
  rotationIntervalMs: number;
  confirmTimeoutMs: number;
  /** Replicas that must hold a staged key before it is activated. */
  minReplicas?: number;
  metrics?: MetricsObserver;
  /** JWKS_PREPUBLISH: how long the next signing key is published before a routine rotation uses it. */
  prepublishMs?: number;
}

/** What `revoke` changed, for the operator's answer. */
export interface RevokeOutcome {
  /** The revoked key was the active one of a pre-published purpose: a fresh key signs now. */
  emergency: boolean;
  /** The key that replaced a revoked active key. */
  replacedBy?: string;
  /** The next key revoked with the active key, and the next key staged in their place. */
  revokedNext?: string;
  next?: string;
}

/**
 * What the lease holder does, and only it: create the ring, restore it if Redis lost it,
 * replace revoked active keys, rotate on schedule, delete expired keys, and carry out
 * operators' commands.
 */
export class PrimaryDuty {
  private readonly rotating = new Set<Purpose>();
  private ticking = false;
  private listening = false;
  private stopped = false;
  private wasPrimary = false;

  constructor(private readonly options: PrimaryDutyOptions) {}

  get isPrimary(): boolean {
    return this.options.lease.held;
  }

  /** One election round and, if this node is primary, one round of ring keeping. */
  async tick(): Promise<void> {
    const { role, lease, log } = this.options;
    if (role === 'secondary' || this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      const held = await lease.acquireOrRenew().catch((error: unknown) => {
        log.warn({ err: error }, 'lease renewal failed');
        return lease.held;
      });
      if (held !== this.wasPrimary) log.info({ primary: held }, held ? 'took the primary lease' : 'no longer primary');
      if (held !== this.wasPrimary) this.options.metrics?.leaseChanged(held);
      this.wasPrimary = held;
      if (!held) return;
      this.listenForCommands();
      await this.keepRing();
    } catch (error) {
      log.error({ err: error }, 'primary duty failed; will retry');
    } finally {
      this.ticking = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.options.lease.release().catch(() => undefined);
  }

  private async keepRing(): Promise<void> {
    const { store, holder, writer, masterKey, log } = this.options;
    const held = holder.current;
    let opened: OpenedRing | null;
    let refused: string | undefined;
    try {
      opened = await store.read();
    } catch (error) {
      const code = error instanceof KeyfleetError ? error.code : '';
      // A ring that fails its authentication check was written by someone without the master
      // key: write back the good ring held here. Never for a ring of another master key (a rewrap).
      if (!held || (code !== 'ERR_RING_INTEGRITY' && code !== 'ERR_RING_FORMAT')) throw error;
      opened = null;
      refused = code;
    }
    const doc = opened?.doc ?? null;
    if (held && (refused || doc === null || doc.version < held.version || (!opened!.legacy && held.document.ringId !== 'legacy' && doc.ringId !== held.document.ringId))) {
      // Redis lost the ring (flushed, a fresh instance), its latest writes (a failover to a
      // replica behind the master), or holds one that is not ours: write back the ring this
      // node holds, at a version above Redis's, rather than mint keys that would log everyone out.
      const action = refused ? 'integrity-restore' : doc === null ? 'restore-from-memory' : 'self-heal';
      log.warn({ held: held.version, redis: doc?.version ?? null, action, refused }, 'Redis holds less than this node; writing back the ring held in memory');
      await writer.update({ action, detail: `redis ${refused ?? `v${doc?.version ?? 0}`} -> held v${held.version}` }, () => held.document, { repair: true });
      return;
    }
    if (doc === null) {
      await writer.update({ action: 'create' }, (empty, now) => createInitialRing(empty, now, masterKey, writer));
      return;
    }
    if (opened!.legacy) {
      // keyfleet 0.1 stored an unauthenticated ring: upgrade it once (the version CAS makes
      // sure only one primary does), giving it an id of its own and a MAC from now on.
      await writer.update({ action: 'migrate', detail: 'ring format 1 -> 2' }, (latest) => (latest.ringId === 'legacy' ? { ...latest, ringId: newRingId() } : null));
      return;
    }
    await this.keepKeys(doc);
  }

  private async keepKeys(doc: RingDocument): Promise<void> {
    const { writer, clock, masterKey, rotationIntervalMs } = this.options;
    for (const purpose of purposesWithoutActiveKey(doc)) {
      await writer.update({ action: 'replace', purpose }, (latest, now) => replaceActive(latest, purpose, now, masterKey, writer));
    }
    for (const purpose of purposesWithoutNextKey(doc)) {
      if (!this.rotating.has(purpose)) await stageNextKey(purpose, writer, masterKey);
    }
    for (const purpose of purposesDueForRotation(doc, clock.now(), rotationIntervalMs, this.options.prepublishMs ?? 0)) {
      void this.rotateInBackground(purpose, 'schedule');
    }
    const { deleted } = collectGarbage(doc, clock.now());
    if (deleted.length > 0) {
      await writer.update({ action: 'delete', detail: deleted.join(' ') }, (latest, now) => {
        const result = collectGarbage(latest, now);
        return result.deleted.length > 0 ? result.doc : null;
      });
    }
  }

  async rotate(
    purpose: Purpose,
    actor: string,
    onProgress?: Parameters<typeof rotate>[1]['onProgress'],
    confirmTimeoutMs?: number,
    emergency = false,
  ): Promise<RotationOutcome> {
    if (this.rotating.has(purpose)) throw new KeyfleetError('ERR_ROTATION_RUNNING', `a ${purpose} rotation is already running`);
    this.rotating.add(purpose);
    const { writer, redis, clock, masterKey, log } = this.options;
    try {
      const outcome = await rotate(purpose, {
        writer,
        redis,
        clock,
        masterKey,
        confirmTimeoutMs: confirmTimeoutMs ?? this.options.confirmTimeoutMs,
        onProgress,
        actor,
        minReplicas: this.options.minReplicas,
        prepublishMs: this.options.prepublishMs ?? 0,
        emergency,
      });
      if (outcome.notBefore !== undefined) {
        log.info({ ...outcome }, `rotation not due: next key ${outcome.kid} may sign from ${new Date(outcome.notBefore).toISOString()}`);
        return outcome;
      }
      this.options.metrics?.rotationRun(purpose, outcome.ok);
      const level = outcome.ok ? (outcome.emergency ? 'warn' : 'info') : 'error';
      const done = outcome.emergency ? 'emergency rotation done: external verifiers may refuse new tokens until their JWKS cache refreshes' : 'rotation done';
      log[level]({ ...outcome }, outcome.ok ? done : `rotation blocked: ${outcome.pending.join(', ')} never confirmed`);
      return outcome;
    } finally {
      this.rotating.delete(purpose);
    }
  }

  private async rotateInBackground(purpose: Purpose, actor: string) {
    if (this.rotating.has(purpose)) return;
    await this.rotate(purpose, actor).catch((error: unknown) => this.options.log.error({ err: error, purpose }, 'scheduled rotation failed'));
  }

  async revoke(kid: string, actor: string) {
    const { writer, masterKey } = this.options;
    const outcome: RevokeOutcome = { emergency: false };
    const audit: { action: string; kid: string; actor: string; detail?: string } = { action: 'revoke', kid, actor };
    const snapshot = await writer.update(audit, async (doc, now) => {
      const key = findKey(doc, kid);
      if (!key) throw new KeyfleetError('ERR_UNKNOWN_KID', `no key ${kid} in the ring`);
      if (key.state === 'revoked') return null;
      Object.assign(outcome, { emergency: false, replacedBy: undefined, revokedNext: undefined, next: undefined });
      const revoked = revoke(doc, kid, now, writer.lifetimes);
      if (!isPrepublished(key.purpose)) {
        // A revoked active key is replaced in the same change, so minting never stops.
        return key.state === 'active' ? replaceActive(revoked, key.purpose, now, masterKey, writer) : revoked;
      }
      if (key.state !== 'active' && key.state !== 'staged') return revoked;
      // The active or next signing key: a fresh key signs at once (never the next key, which
      // lived beside the revoked one), and a new next key is published, in the same change.
      let changed = revoked;
      if (key.state === 'active') {
        const fresh = await generateKey(key.purpose, now, masterKey);
        outcome.emergency = true;
        outcome.replacedBy = fresh.kid;
        outcome.revokedNext = stagedKey(revoked, key.purpose)?.kid;
        changed = activateFresh(revoked, fresh, now, writer.lifetimes);
      }
      const next = await generateKey(key.purpose, now, masterKey);
      outcome.next = next.kid;
      audit.detail = [outcome.replacedBy && `replaced by ${outcome.replacedBy}`, outcome.revokedNext && `next key ${outcome.revokedNext} revoked too`, `next key ${next.kid}`]
        .filter(Boolean)
        .join('; ');
      return stage(changed, next, now);
    });
    if (outcome.emergency) this.options.log.warn({ kid, ...outcome }, 'active signing key revoked: external verifiers may refuse new tokens until their JWKS cache refreshes');
    return { snapshot, outcome };
  }

  /** Pops operator commands while primary; one at a time, in order. */
  private listenForCommands() {
    if (this.listening) return;
    this.listening = true;
    const { commandRedis, lease, log } = this.options;
    void (async () => {
      while (!this.stopped && lease.held) {
        const popped = await commandRedis.blpop(redisKeys.commands, 1).catch(() => null);
        if (!popped) continue;
        const command = parseCommand(popped[1]);
        if (!command) {
          // Anyone who can write to Redis can push here: a malformed entry is logged and skipped.
          log.warn({ bytes: popped[1].length }, 'skipped a malformed operator command');
          continue;
        }
        await this.execute(command).catch((error: unknown) => log.error({ err: error, command }, 'command failed'));
      }
      this.listening = false;
    })();
  }

  private async execute(command: Command): Promise<void> {
    const { redis, log } = this.options;
    log.info({ command }, 'operator command');
    try {
      if (command.action === 'revoke') {
        const started = this.options.clock.now();
        const { snapshot, outcome } = await this.revoke(command.kid, command.actor);
        // Answer once every live node has loaded the change: then the key is dead everywhere.
        const { nodes, pending } = await waitForNodes(redis, snapshot.version, {
          clock: this.options.clock,
          timeoutMs: this.options.confirmTimeoutMs,
        });
        const data = { kid: command.kid, version: snapshot.version, nodes: nodes.length, pending, ms: this.options.clock.now() - started, ...outcome };
        await reply(redis, command.id, { type: 'result', data });
        return;
      }
      const purposes = command.purposes.includes('all') ? [...PURPOSES] : command.purposes;
      const bad = purposes.filter((purpose) => !isPurpose(purpose));
      if (bad.length > 0) throw new KeyfleetError('ERR_BAD_PURPOSE', `unknown purpose ${bad.join(', ')} (sign, encrypt, cookie or all)`);
      const outcomes = await Promise.all(
        (purposes as Purpose[]).map((purpose) =>
          this.rotate(purpose, command.actor, (progress) => void reply(redis, command.id, { type: 'progress', data: progress }), command.confirmTimeoutMs, command.now === true),
        ),
      );
      await reply(redis, command.id, { type: 'result', data: outcomes });
    } catch (error) {
      const known = error instanceof KeyfleetError ? error : new KeyfleetError('ERR_INTERNAL', 'command failed');
      await reply(redis, command.id, { type: 'error', code: known.code, message: known.message });
    }
  }
}

async function createInitialRing(empty: RingDocument, now: number, masterKey: Buffer, writer: RingWriter) {
  if (empty.keys.length > 0) return null;
  let doc = empty;
  // Nothing can have been minted yet, so the first keys are active at once; the next signing
  // key is published from the start.
  for (const purpose of PURPOSES) doc = await replaceActive(doc, purpose, now, masterKey, writer);
  for (const purpose of purposesWithoutNextKey(doc)) doc = stage(doc, await generateKey(purpose, now, masterKey), now);
  return doc;
}

async function replaceActive(doc: RingDocument, purpose: Purpose, now: number, masterKey: Buffer, writer: RingWriter) {
  if (activeKey(doc, purpose)) return doc;
  const key = await generateKey(purpose, now, masterKey);
  // If a rotation had staged a key, that one is known to more nodes already: use it.
  const staged = doc.keys.find((candidate) => candidate.purpose === purpose && candidate.state === 'staged');
  const withStaged = staged ? doc : stage(doc, key, now);
  return activate(withStaged, staged?.kid ?? key.kid, now, writer.lifetimes);
}
