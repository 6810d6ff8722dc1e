#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Command as Program, Option } from 'commander';
import type { Redis } from 'ioredis';
import { hashPassword } from '../auth/password.js';
import { publishRevocation, waitForRevocation } from '../auth/revocations.js';
import { readReplies, sendCommand, type Reply } from '../cluster/commands.js';
import { authenticBeats, liveNodes } from '../cluster/heartbeat.js';
import { leaseHolder } from '../cluster/lease.js';
import { checkAgainstPeers } from '../keyring/holder.js';
import type { RotationOutcome } from '../keyring/rotation.js';
import { mergeRings, whatReplacingUndoes } from '../keyring/merge.js';
import { beatAuthentic, newRingId as randomRingId, openRing, type OpenedRing } from '../keyring/seal.js';
import { RingSnapshot } from '../keyring/snapshot.js';
import { readAudit, RingStore } from '../keyring/store.js';
import type { Purpose, RingDocument } from '../keyring/types.js';
import { masterKeyId, unwrapMaterial, wrapMaterial } from '../keyring/wrap.js';
import { parseAudiences } from '../config/index.js';
import { eligibleAt, isPrepublished } from '../keyring/lifecycle.js';
import { isPurpose } from '../keyring/types.js';
import { parseDuration } from '../lib/duration.js';
import { exitCodeOf, isErrorCode, KeyfleetError, type ErrorCode } from '../lib/errors.js';
import { connectRedis, redisTargetFromEnv } from '../lib/redis.js';
import { redisKeys } from '../lib/redisKeys.js';

// The operator's tool. Changes that create keys are carried out by the primary (only it
// generates keys); this process sends the command and follows its progress.

interface Globals {
  json?: boolean;
}

const actor = `cli@${hostname()}`;
const program = new Program('keyfleet')
  .description('operate a keyfleet key ring (REDIS_URL or REDIS_SENTINELS and, for rewrap, KEYRING_MASTER_KEY[_FILE] from the environment)')
  .option('--json', 'machine-readable output')
  .showHelpAfterError();

const globals = () => program.opts<Globals>();

// Exit codes come from the error catalogue (lib/errorCodes.ts): 1 for a failure, 3 when a
// live node never confirmed (ERR_NODES_UNCONFIRMED), 4 when the next signing key may not
// sign yet (ERR_NEXT_KEY_NOT_DUE).
function fail(code: ErrorCode, message: string): never {
  throw new KeyfleetError(code, message);
}

function redisFromEnv(): Redis {
  const { target, problems } = redisTargetFromEnv(process.env);
  if (!target) fail('ERR_CONFIG', problems.join('; '));
  return connectRedis(target, 'cli', { commandTimeout: undefined, maxRetriesPerRequest: 2, retryStrategy: (attempt) => (attempt > 3 ? null : 200) });
}

function readMasterKey(variable: string, fileVariable: string): Buffer {
  const text = process.env[fileVariable] ? readFileSync(process.env[fileVariable]!, 'utf8') : process.env[variable];
  if (!text) fail('ERR_CONFIG', `${variable} or ${fileVariable} is required`);
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) fail('ERR_CONFIG', `${process.env[fileVariable] ? fileVariable : variable}: must be 32 bytes, base64-encoded`);
  return key;
}

async function withRedis<T>(action: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = redisFromEnv();
  try {
    return await action(redis);
  } finally {
    redis.disconnect();
  }
}

const print = (human: string, data: unknown) => {
  process.stdout.write(globals().json ? `${JSON.stringify(data)}\n` : `${human}\n`);
};

const ago = (ms: number) => (ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`);
const iso = (ms?: number) => (ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));

const masterKeyFromEnv = () => readMasterKey('KEYRING_MASTER_KEY', 'KEYRING_MASTER_KEY_FILE');

/**
 * The ring in Redis, authenticated under the master key and checked against what live nodes
 * serve (their heartbeats carry MACs too). Throws with the alarm's code when it fails.
 */
async function readVerified(redis: Redis, masterKey: Buffer): Promise<OpenedRing | null> {
  // Peers first, then the ring (see RingHolder.load): a commit in between is not a rollback.
  const peers = (await authenticBeats(redis, masterKey)).filter((beat) => beat.ringId !== undefined);
  const opened = await new RingStore(redis, masterKey).read();
  if (!opened) return null;
  checkAgainstPeers(opened, peers.map((beat) => ({ id: beat.id, ringId: beat.ringId!, ringVersion: beat.ringVersion })));
  return opened;
}

/** JWKS_PREPUBLISH as the nodes read it, from this environment (the CLI runs beside them). */
function prepublishFromEnv(): { ms: number; text: string } {
  const text = process.env.JWKS_PREPUBLISH?.trim() || '30m';
  if (/^0+(\.0+)?\s*(ms|s|m|h|d)?$/i.test(text)) return { ms: 0, text };
  return { ms: parseDuration(text) ?? fail('ERR_CONFIG', `JWKS_PREPUBLISH: "${text}" is not a duration`), text };
}

program
  .command('status')
  .description('ring version, keys per purpose, the next signing key, live nodes and the lease holder (the ring is authenticated first)')
  .action(() =>
    withRedis(async (redis) => {
      const masterKey = masterKeyFromEnv();
      const [opened, nodes, holder] = await Promise.all([readVerified(redis, masterKey), liveNodes(redis), leaseHolder(redis)]);
      const doc = opened?.doc;
      const now = Date.now();
      const keys = (doc?.keys ?? []).map(({ material: _material, ...meta }) => meta);
      const prepublish = prepublishFromEnv();
      // The next key of a pre-published purpose is its staged key, in the JWKS since its creation.
      const next = keys
        .filter((k) => k.state === 'staged' && isPurpose(k.purpose) && isPrepublished(k.purpose))
        .map((k) => ({ purpose: k.purpose, kid: k.kid, publishedAt: k.createdAt, eligibleAt: eligibleAt(k, prepublish.ms) }));
      const data = { version: doc?.version ?? 0, ringId: doc?.ringId ?? null, format: opened?.legacy ? 1 : doc ? 2 : null, masterKeyId: doc?.masterKeyId ?? null, primary: holder ?? null, keys, next, jwksPrepublishMs: prepublish.ms, nodes };
      const lines = [
        `ring version ${data.version}${doc ? ` (ring ${doc.ringId}, ${opened!.legacy ? 'format 1, UNAUTHENTICATED: the primary upgrades it' : 'authenticated'})` : ' (empty: no primary has created it yet)'}`,
        `primary      ${holder ?? '(none: no node holds the lease)'}`,
        '',
        'KEYS',
        ...keys.map((k) => `  ${k.purpose.padEnd(8)} ${k.state.padEnd(8)} ${k.kid.padEnd(40)} created ${iso(k.createdAt)} active ${iso(k.activatedAt)} retired ${iso(k.retiredAt ?? k.revokedAt)} delete after ${iso(k.deleteAfter)}`),
        '',
        `NEXT KEYS (published in the JWKS ahead of use; JWKS_PREPUBLISH=${prepublish.text} in this environment)`,
        ...(next.length === 0 ? ['  (none yet: the primary stages one within a second)'] : []),
        ...next.map((n) => `  ${n.purpose.padEnd(8)} ${n.kid.padEnd(40)} published ${iso(n.publishedAt)} (${ago(now - n.publishedAt)} ago); ${n.eligibleAt <= now ? 'a routine rotation promotes it now' : `a routine rotation may promote it from ${iso(n.eligibleAt)} (in ${ago(n.eligibleAt - now)})`}`),
        '',
        'NODES',
        ...nodes.map((n) => `  ${n.id.padEnd(24)} ${n.primary ? 'primary  ' : 'secondary'} role=${n.role.padEnd(9)} ring v${n.ringVersion}${n.ringVersion === data.version ? '' : ' (behind)'}  heartbeat ${ago(now - n.at)} ago${n.draining ? '  draining' : ''}${n.mac && !masterKeyMatches(n, masterKey) ? '  (heartbeat NOT authentic)' : ''}`),
      ];
      print(lines.join('\n'), data);
    }),
  );

const masterKeyMatches = (beat: object, masterKey: Buffer) => beatAuthentic(masterKey, beat);

program
  .command('audiences')
  .description('the resource servers a client may ask a token for (AUDIENCES), and the issuer (PUBLIC_ISSUER), as this environment sets them')
  .action(() => {
    const { audiences, bad } = parseAudiences(process.env.AUDIENCES ?? '');
    if (bad.length > 0) fail('ERR_CONFIG', `AUDIENCES: ${bad.map((name) => JSON.stringify(name)).join(', ')} are not valid names`);
    const issuer = process.env.PUBLIC_ISSUER?.trim().replace(/\/+$/, '') || 'keyfleet';
    const lines = [
      `issuer   ${issuer}`,
      'AUDIENCES (POST /login {"username","password","audience"})',
      '  keyfleet (its own routes; the default)',
      ...audiences.map((name) => `  ${name}`),
    ];
    print(lines.join('\n'), { issuer, audiences: ['keyfleet', ...audiences] });
  });

/** Sends a command to the primary and follows it to its end; returns the result data. */
async function command(redis: Redis, body: Parameters<typeof sendCommand>[1], timeoutMs: number, onProgress: (data: any) => void) {
  if (!(await leaseHolder(redis))) fail('ERR_NO_PRIMARY', 'no node holds the primary lease: is any node with NODE_ROLE auto or primary running?');
  const id = await sendCommand(redis, body);
  let last: Reply | undefined;
  for await (const message of readReplies(redis, id, timeoutMs)) {
    last = message;
    if (message.type === 'progress') onProgress(message.data);
  }
  if (!last) fail('ERR_NO_REPLY', `the primary did not answer within ${timeoutMs} ms`);
  // The primary's code, when this CLI knows it (a node of another version may send others).
  if (last.type === 'error') fail(isErrorCode(last.code) ? last.code : 'ERR_OTHER', last.message);
  // Progress, then silence: the primary died or lost its lease mid-command (found by the
  // nemesis: the CLI then crashed on the missing result). What it did is in the ring.
  if (last.type !== 'result') fail('ERR_NO_REPLY', `the primary stopped answering after ${timeoutMs} ms of silence, before the end; run \`keyfleet status\` to see where the change stands, then run the command again`);
  return last.data;
}

/** What the primary answers for each purpose of a `rotate` (sent as JSON). */
type Outcome = RotationOutcome;

const EMERGENCY_WARNING =
  'was not published ahead of use: services verifying tokens with a cached JWKS may refuse the new tokens until their cache refreshes (jose: 30 s after the first unknown kid; others up to their cache age)';

function describeOutcome(o: Outcome): string {
  if (o.notBefore !== undefined) {
    const wait = Math.max(0, o.notBefore - Date.now());
    return `${o.purpose}: NOT ROTATED: the next key ${o.kid} has been published since ${iso(o.publishedAt)} and may sign from ${iso(o.notBefore)} (in ${ago(wait)}), when every verifier caching the JWKS has had time to fetch it. Run again then, add --wait, or use --now in an emergency`;
  }
  if (!o.ok) return `${o.purpose}: BLOCKED, ${o.kid} stays staged; never confirmed: ${o.pending.join(', ')}`;
  const head = `${o.purpose}: rotated to ${o.kid} in ${o.totalMs} ms (${o.nodes} nodes confirmed in ${o.confirmedMs} ms)`;
  if (o.emergency) return `${head}\n${o.purpose}: WARNING: ${o.kid} ${EMERGENCY_WARNING}${o.revokedNext ? `; the previous next key ${o.revokedNext} was revoked` : ''}${o.next ? `; next key ${o.next} published` : ''}`;
  if (o.publishedAt !== undefined) return `${head}; it was published ${ago(Date.now() - o.publishedAt)} before signing${o.next ? `; next key ${o.next} published` : ''}`;
  return head;
}

program
  .command('rotate')
  .description('rotate keys: sign promotes the next key, published in the JWKS for JWKS_PREPUBLISH; others stage, wait until every live node has the key, then activate')
  .addOption(new Option('--purpose <purpose>', 'which keys').choices(['sign', 'encrypt', 'cookie', 'all']).default('all'))
  .option('--timeout <duration>', 'how long to wait for every node to confirm', '30s')
  .option('--wait', 'if the next signing key is younger than JWKS_PREPUBLISH, wait until it may sign instead of refusing')
  .option('--now', 'emergency: sign with a fresh key at once, not pre-published (external verifiers may refuse new tokens until their JWKS cache refreshes)')
  .action((options: { purpose: string; timeout: string; wait?: boolean; now?: boolean }) =>
    withRedis(async (redis) => {
      const timeoutMs = parseDuration(options.timeout) ?? fail('ERR_USAGE', `--timeout: "${options.timeout}" is not a duration`);
      if (options.now && options.wait) fail('ERR_USAGE', '--now and --wait: choose one');
      const json = globals().json;
      const results: Outcome[] = [];
      let purposes = [options.purpose];
      for (;;) {
        const outcomes = (await command(redis, { action: 'rotate', purposes, actor, confirmTimeoutMs: timeoutMs, ...(options.now ? { now: true } : {}) }, timeoutMs + 15_000, (p) => {
          if (json) return process.stdout.write(`${JSON.stringify({ progress: p })}\n`);
          if (p.phase === 'staged') console.log(`${p.purpose}: ${p.publishedAt !== undefined && !p.emergency ? `next key ${p.kid}, published ${iso(p.publishedAt)}` : `staged ${p.kid}`} (ring v${p.version})`);
          if (p.phase === 'confirming') console.log(`${p.purpose}: ${p.confirmed.length}/${p.confirmed.length + p.pending.length} nodes confirmed${p.pending.length ? ` (waiting for ${p.pending.join(', ')})` : ''}`);
          if (p.phase === 'active') console.log(`${p.purpose}: ${p.kid} active (ring v${p.version})`);
          if (p.phase === 'next') console.log(`${p.purpose}: next key ${p.kid} staged and published (ring v${p.version})`);
        })) as Outcome[];
        const early = outcomes.filter((o) => o.notBefore !== undefined);
        results.push(...outcomes.filter((o) => o.notBefore === undefined));
        if (!options.wait || early.length === 0) {
          results.push(...early);
          break;
        }
        // The primary decides; waiting on this machine's clock only saves asking too often.
        const until = Math.max(...early.map((o) => o.notBefore!));
        const waitMs = Math.max(250, until - Date.now());
        if (!json) for (const o of early) console.log(`${o.purpose}: next key ${o.kid} may sign from ${iso(o.notBefore)}: waiting ${ago(waitMs)} (--wait)`);
        await new Promise((resolve) => setTimeout(resolve, waitMs));
        purposes = early.map((o) => o.purpose);
      }
      print(results.map(describeOutcome).join('\n'), { result: results });
      // 3: a node never confirmed; 4: the next signing key is not yet published long enough.
      if (results.some((o) => !o.ok && o.notBefore === undefined)) process.exitCode = exitCodeOf('ERR_NODES_UNCONFIRMED');
      else if (results.some((o) => o.notBefore !== undefined)) process.exitCode = exitCodeOf('ERR_NEXT_KEY_NOT_DUE');
    }),
  );

program
  .command('revoke')
  .description('revoke a key now: every node stops accepting it (an active key is replaced at once)')
  .argument('<kid>', 'key id, as shown by status')
  .action((kid: string) =>
    withRedis(async (redis) => {
      const data = (await command(redis, { action: 'revoke', kid, actor }, 45_000, () => undefined)) as {
        version: number;
        nodes: number;
        pending: string[];
        ms: number;
        emergency?: boolean;
        replacedBy?: string;
        revokedNext?: string;
        next?: string;
      };
      const lines = [
        data.pending.length === 0
          ? `revoked ${kid}: ring v${data.version} loaded by all ${data.nodes} nodes in ${data.ms} ms`
          : `revoked ${kid} (ring v${data.version}), but not yet confirmed by: ${data.pending.join(', ')}`,
      ];
      if (data.emergency && data.replacedBy) {
        lines.push(`WARNING: ${data.replacedBy} signs now and ${EMERGENCY_WARNING}`);
        if (data.revokedNext) lines.push(`the next key ${data.revokedNext}, held beside the revoked key, was revoked too`);
      }
      if (data.next) lines.push(`next key ${data.next} published`);
      print(lines.join('\n'), { kid, ...data });
      if (data.pending.length > 0) process.exitCode = exitCodeOf('ERR_NODES_UNCONFIRMED');
    }),
  );

program
  .command('revoke-user')
  .description('end every credential of a user issued before now (tokens, auth cookies, sessions, refresh families), on every node')
  .argument('<name>', 'the user name (as in USERS)')
  .option('--timeout <duration>', 'how long to wait for every live node to confirm', '10s')
  .action((name: string, options: { timeout: string }) =>
    withRedis(async (redis) => {
      const timeoutMs = parseDuration(options.timeout) ?? fail('ERR_USAGE', `--timeout: "${options.timeout}" is not a duration`);
      if (!/^[^\s]{1,128}$/.test(name)) fail('ERR_USAGE', 'the user name must be 1-128 characters without spaces');
      const get = (variable: string, fallback: string) => parseDuration(process.env[variable] || fallback) ?? fail('ERR_CONFIG', `${variable}: not a duration`);
      // Redis keeps the not-before as long as anything issued before it can live (refresh families included).
      const horizonMs = Math.max(get('REFRESH_ABSOLUTE_LIFETIME', '30d'), get('SESSION_TTL', '8h'), get('AUTH_ABSOLUTE_LIFETIME', '8h'), get('TOKEN_TTL', '15m')) + get('CLOCK_SKEW', '30s');
      const at = Date.now();
      const seq = await publishRevocation(redis, { users: [{ user: name, at }] }, at, horizonMs);
      const version = (await redis.get(redisKeys.ringVersion)) ?? '0';
      await redis.xadd(redisKeys.audit, 'MAXLEN', '~', '10000', '*', 'version', version, 'at', String(at), 'actor', actor, 'action', 'revoke-user', 'detail', `every credential of ${name} issued before ${iso(at)}`);
      const { confirmed, pending } = await waitForRevocation(redis, seq, { clock: { now: () => Date.now() }, timeoutMs });
      const ms = Date.now() - at;
      const total = confirmed.length + pending.length;
      print(
        pending.length === 0
          ? `revoked every credential of ${name} issued before ${iso(at)}: ${confirmed.length}/${total} nodes confirmed in ${ms} ms`
          : `revoked every credential of ${name} issued before ${iso(at)}, but only ${confirmed.length}/${total} nodes confirmed; not yet: ${pending.join(', ')}`,
        { user: name, before: at, seq, nodes: total, confirmed, pending, ms },
      );
      if (pending.length > 0) process.exitCode = exitCodeOf('ERR_NODES_UNCONFIRMED');
    }),
  );

program
  .command('backup')
  .description('export the ring as JSON, key material still encrypted and the whole ring still authenticated under the master key')
  .option('-o, --out <file>', 'write to a file instead of standard output')
  .action((options: { out?: string }) =>
    withRedis(async (redis) => {
      const masterKey = masterKeyFromEnv();
      // Refuse to back up a ring that fails its check: a backup must be one worth restoring.
      const opened = await readVerified(redis, masterKey);
      if (!opened) fail('ERR_RING_EMPTY', 'there is no key ring in Redis to back up');
      const text = `${(await new RingStore(redis, masterKey).readRaw())!.trim()}\n`;
      if (options.out) {
        writeFileSync(options.out, text, { mode: 0o600 });
        console.error(`backed up ring v${opened.doc.version} (${opened.doc.keys.length} keys) to ${options.out}`);
      } else process.stdout.write(text);
    }),
  );

/** Kids the audit stream says were revoked, with when (it can only add revocations). */
async function revocationsInAudit(store: RingStore): Promise<Map<string, number>> {
  const revoked = new Map<string, number>();
  for (const event of await store.auditTail(10_000)) if (event.action === 'revoke' && event.kid) revoked.set(event.kid, event.at);
  return revoked;
}

const retentionFromEnv = (): Record<Purpose, number> => {
  const get = (name: string, fallback: string) => parseDuration(process.env[name] || fallback) ?? fail('ERR_CONFIG', `${name}: not a duration`);
  const skew = get('CLOCK_SKEW', '30s');
  const session = get('SESSION_TTL', '8h');
  return { sign: get('TOKEN_TTL', '15m') + skew, encrypt: session + skew, cookie: session + skew };
};

program
  .command('restore')
  .description('merge a ring exported by backup into the ring in Redis (revocations and newer keys are kept); nodes load it at once')
  .argument('<file>', 'a backup file, or - for standard input')
  .option('--force', 'replace the ring wholesale instead of merging (says what it undoes)')
  .action((file: string, options: { force?: boolean }) =>
    withRedis(async (redis) => {
      const masterKey = masterKeyFromEnv();
      const backup = openRing(masterKey, readFileSync(file === '-' ? 0 : file, 'utf8')).doc;
      const store = new RingStore(redis, masterKey);
      const current = (await store.read())?.doc ?? null;
      const nodes = await liveNodes(redis);
      const expected = await store.readVersion();
      // Above every version a node holds, so every node takes it as new.
      const version = Math.max(expected, backup.version, current?.version ?? 0, ...nodes.map((n) => n.ringVersion)) + 1;
      const now = Date.now();
      let next: RingDocument;
      let summary: string;
      let data: Record<string, unknown>;
      if (options.force) {
        const undone = whatReplacingUndoes(current, backup);
        for (const line of undone) console.error(`restore --force undoes: ${line}`);
        next = { ...backup, ringId: current?.ringId ?? backup.ringId, version, updatedAt: now };
        summary = `replaced the ring with the backup of v${backup.version} (${backup.keys.length} keys) as ring v${version}; undid ${undone.length} change(s)`;
        data = { version, keys: backup.keys.length, undone };
      } else {
        const merged = mergeRings(current, backup, { revokedInAudit: await revocationsInAudit(store), now, retention: retentionFromEnv() });
        next = { ...merged.doc, version };
        summary = `restored ring v${version}: ${merged.doc.keys.length} keys (${merged.restored.length} from the backup, ${merged.kept.length} newer kept, ${merged.revoked.length} kept revoked)`;
        data = { version, keys: merged.doc.keys.length, restored: merged.restored, kept: merged.kept, revoked: merged.revoked };
      }
      const result = await store.commit(expected, next, undefined, { actor, action: options.force ? 'restore-force' : 'restore', detail: `backup of v${backup.version}` }, now);
      if (!result.ok) fail('ERR_RING_CONFLICT', 'the ring changed while restoring; run restore again');
      print(summary, data);
    }),
  );

program
  .command('rewrap')
  .description('re-encrypt all key material and re-authenticate the ring under a new master key (KEYRING_NEW_MASTER_KEY[_FILE])')
  .action(() =>
    withRedis(async (redis) => {
      const oldKey = masterKeyFromEnv();
      const newKey = readMasterKey('KEYRING_NEW_MASTER_KEY', 'KEYRING_NEW_MASTER_KEY_FILE');
      const opened = await readVerified(redis, oldKey); // proves the old key is right and the ring is good before anything changes
      if (!opened) fail('ERR_RING_EMPTY', 'there is no key ring in Redis');
      const doc = opened.doc;
      await RingSnapshot.open(doc, oldKey);
      const keys = doc.keys.map((key) => ({ ...key, material: wrapMaterial(newKey, key.kid, key.purpose, unwrapMaterial(oldKey, key.kid, key.purpose, key.material)) }));
      const ringId = opened.legacy ? randomRingId() : doc.ringId;
      const next: RingDocument = { ...doc, ringId, keys, masterKeyId: masterKeyId(newKey), version: doc.version + 1, updatedAt: Date.now() };
      // Sealed under the new key: nodes restarted with it accept the ring, nodes still on the old key refuse it.
      const result = await new RingStore(redis, newKey).commit(doc.version, next, undefined, { actor, action: 'rewrap', detail: `${doc.masterKeyId} -> ${next.masterKeyId}` }, Date.now());
      if (!result.ok) fail('ERR_RING_CONFLICT', 'the ring changed while rewrapping; run rewrap again');
      print(`rewrapped ${keys.length} keys under master key ${next.masterKeyId} (ring v${next.version}); now restart every node with the new key`, { version: next.version, masterKeyId: next.masterKeyId });
    }),
  );

program
  .command('audit')
  .description('the most recent ring changes')
  .option('-n <count>', 'how many', '20')
  .action((options: { n: string }) =>
    withRedis(async (redis) => {
      const events = await readAudit(redis, Number(options.n) || 20);
      print(events.map((e) => `${iso(e.at)} v${e.version} ${e.actor} ${e.action} ${e.purpose ?? ''} ${e.kid ?? ''} ${e.detail ?? ''}`.trimEnd()).join('\n'), events);
    }),
  );

program
  .command('hash-password')
  .description('print an scrypt hash for the USERS variable (reads the password from standard input)')
  .action(async () => {
    const password = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
    if (!password) fail('ERR_USAGE', 'give the password on standard input');
    const hash = await hashPassword(password);
    print(hash, { hash });
  });

program.parseAsync().catch((error: unknown) => {
  const known = error instanceof KeyfleetError;
  const code: ErrorCode = known ? error.code : 'ERR_CLI';
  const message = error instanceof Error ? error.message : String(error);
  if (globals().json) process.stdout.write(`${JSON.stringify({ error: message, code })}\n`);
  else console.error(`keyfleet: ${message}${known ? ` (${code})` : ''}`);
  process.exitCode = exitCodeOf(code);
});

