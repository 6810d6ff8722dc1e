import type { Fault, History, Op } from './history.js';

// The invariants, checked over a whole recorded history. Each reports what it checked, what
// it set aside and why (by reason), how many violations, and the first counterexample.

export interface InvariantResult {
  name: string;
  checked: number;
  violations: number;
  excluded: Record<string, number>;
  first?: string;
  /** A figure of its own (recovery: the time measured). */
  figure?: string;
}

export interface CheckOptions {
  /** The nodes' CLOCK_SKEW: a token is valid until exp plus this. */
  clockSkewMs: number;
  /** How long after Redis is back a node may take to reconnect its session store. */
  redisReconnectGraceMs: number;
  /** The bound the cluster must be healthy within after the last fault. */
  recoveryBoundMs: number;
  /** Heartbeats of one node further apart than this split its runs as primary (samples missed). */
  beatGapMs: number;
  /** A node is live while its last heartbeat is younger than this (3 HEARTBEAT_INTERVALs). */
  livenessWindowMs: number;
}

export const DEFAULT_CHECK_OPTIONS: CheckOptions = { clockSkewMs: 5_000, redisReconnectGraceMs: 3_000, recoveryBoundMs: 30_000, beatGapMs: 2_000, livenessWindowMs: 1_500 };

const t = (ms: number) => new Date(ms).toISOString().slice(11, 23);
export const describeOp = (op: Op) =>
  `op #${op.id} ${op.kind} (worker ${op.worker}) ${t(op.start)}-${t(op.end)} -> ${op.status}${op.code ? ` ${op.code}` : ''}${op.node ? ` from ${op.node}` : ''}${op.kid ? ` kid ${op.kid}` : ''}${op.loginStart ? ` (login ${t(op.loginStart)})` : ''}`;
const describeFault = (f: Fault) => `${f.kind}${f.target ? ` ${f.target}` : ''} ${t(f.start)}-${t(f.end)}${f.kid ? ` ${f.kid}` : ''}`;

const overlaps = (op: Op, from: number, until: number) => op.start <= until && op.end >= from;
const isCredentialOp = (op: Op) => op.kind === 'me-token' || op.kind === 'me-cookie' || op.kind === 'me-session';

class Tally {
  checked = 0;
  violations = 0;
  excluded: Record<string, number> = {};
  first?: string;

  constructor(readonly name: string) {}

  exclude(reason: string) {
    this.excluded[reason] = (this.excluded[reason] ?? 0) + 1;
  }

  violate(what: string) {
    this.violations++;
    this.first ??= what;
  }

  result(figure?: string): InvariantResult {
    return { name: this.name, checked: this.checked, violations: this.violations, excluded: this.excluded, ...(this.first ? { first: this.first } : {}), ...(figure ? { figure } : {}) };
  }
}

export function check(history: History, options: CheckOptions = DEFAULT_CHECK_OPTIONS): InvariantResult[] {
  return [
    validCredentialsAccepted(history, options),
    failuresExplained(history, options),
    revokedStaysRevoked(history, options),
    ringVersionsGrow(history),
    keysKeptUntilDeleteAfter(history),
    onePrimary(history, options),
    recovers(history, options),
  ];
}

/** Revocations that returned, by kid. */
const revocations = (history: History) => history.faults.filter((f) => f.kind === 'revoke' && f.kid && f.exitCode !== undefined);

/**
 * 1. No valid, unexpired, unrevoked credential is refused (401/403) by a node, and no login
 * with the right password (401/429). Set aside: a
 * credential whose key a `revoke` had started on before the answer; a `sid` while a `cookie`
 * key was being revoked after its login (the cookie names no key); a token past exp + skew.
 */
function validCredentialsAccepted(history: History, options: CheckOptions): InvariantResult {
  const tally = new Tally('no valid credential refused');
  const revokes = revocations(history);
  for (const op of history.ops) {
    if (op.worker < 0) continue;
    if (op.kind === 'login') {
      // The right password, refused (401, or 429 from the login throttle).
      tally.checked++;
      if (op.status === 401 || op.status === 429) tally.violate(describeOp(op));
      continue;
    }
    if (!isCredentialOp(op)) continue;
    tally.checked++;
    if (op.status !== 401 && op.status !== 403) continue;
    if (op.kid && revokes.some((r) => r.kid === op.kid && r.start <= op.end)) tally.exclude('its key was revoked');
    else if (op.kind === 'me-session' && revokes.some((r) => r.purpose === 'cookie' && r.start <= op.end && r.end >= (op.loginStart ?? 0))) tally.exclude('a cookie key was revoked since its login');
    else if (op.expiresAt !== undefined && op.end >= op.expiresAt + options.clockSkewMs) tally.exclude('expired');
    else tally.violate(describeOp(op));
  }
  return tally.result();
}

/**
 * 2. No request fails (no answer, or 5xx) unless the fault explains it: an operation that needs
 * Redis (a `sid` session, a logout) while Redis was down or a node was reconnecting to it (503
 * ERR_SESSION_STORE_UNAVAILABLE, as the contract says); a logout (a POST, which HAProxy never
 * replays) in flight while a node was killed, paused or cut off; a logout answered 503 by a
 * node cut off from Redis (it cannot end the session, says so, and the POST is not replayed).
 */
function failuresExplained(history: History, options: CheckOptions): InvariantResult {
  const tally = new Tally('no request failed unexplained');
  const redisDown = history.faults.filter((f) => f.kind === 'restart-redis' && f.activeFrom !== undefined);
  const nodeLost = history.faults.filter((f) => (f.kind === 'kill' || f.kind === 'cut-all' || f.kind === 'pause-short' || f.kind === 'pause-long') && f.activeFrom !== undefined);
  const cutFromRedis = history.faults.filter((f) => (f.kind === 'cut-redis' || f.kind === 'cut-all') && f.activeFrom !== undefined);
  for (const op of history.ops) {
    if (op.worker < 0) continue;
    tally.checked++;
    if (op.status !== 0 && op.status < 500) continue;
    const needsRedis = op.kind === 'me-session' || op.kind === 'logout';
    if (needsRedis && redisDown.some((f) => overlaps(op, f.activeFrom!, (f.activeUntil ?? f.end) + options.redisReconnectGraceMs))) tally.exclude('needs Redis, Redis was down');
    else if (op.kind === 'logout' && nodeLost.some((f) => overlaps(op, f.activeFrom!, f.activeUntil ?? f.end))) tally.exclude('a POST in flight on a lost node');
    else if (op.kind === 'logout' && op.code === 'ERR_SESSION_STORE_UNAVAILABLE' && cutFromRedis.some((f) => f.target === op.node && overlaps(op, f.activeFrom!, (f.activeUntil ?? f.end) + options.redisReconnectGraceMs)))
      tally.exclude('a logout on a node cut from Redis (503; HAProxy replays no POST but /login)');
    else tally.violate(describeOp(op));
  }
  return tally.result();
}

/**
 * 3. Once `revoke` has returned, no node accepts a credential of the revoked key. Set aside
 * (and counted): an answer from a node that was not live at some moment of the revoke (no
 * heartbeat within the liveness window: cut off, paused, or back but not yet heartbeating).
 * `revoke` waits only for the nodes live when it checks; such a node learns of the revocation
 * when it reaches Redis again: a known limit (docs/reliability.md), not hidden.
 */
function revokedStaysRevoked(history: History, options: CheckOptions): InvariantResult {
  const tally = new Tally('revoked key refused after revoke returns');
  const beatsOf = new Map<string, number[]>();
  for (const beat of history.beats) beatsOf.set(beat.node, [...(beatsOf.get(beat.node) ?? []), beat.at]);
  const liveAt = (node: string, at: number) => (beatsOf.get(node) ?? []).some((beat) => beat <= at && beat > at - options.livenessWindowMs);
  const liveThroughout = (node: string, from: number, until: number) => {
    for (let at = from; at < until; at += 250) if (!liveAt(node, at)) return false;
    return liveAt(node, until);
  };
  for (const revoke of revocations(history)) {
    if (revoke.exitCode !== 0) {
      tally.exclude('revoke exited 3 (not confirmed by every node)');
      continue;
    }
    for (const op of history.ops) {
      if (op.kid !== revoke.kid || op.start <= revoke.end) continue;
      tally.checked++;
      if (op.status !== 200) continue;
      if (op.node && !liveThroughout(op.node, revoke.start, revoke.end)) tally.exclude('answered by a node that was not live throughout the revoke');
      else tally.violate(`${describeOp(op)} after ${describeFault(revoke)} returned`);
    }
  }
  return tally.result();
}

/** 4. Ring versions only grow: on every node (its /healthz) and in Redis. */
function ringVersionsGrow(history: History): InvariantResult {
  const tally = new Tally('ring versions only grow');
  const highest = new Map<string, { version: number; at: number }>();
  const samples = [
    ...history.health.filter((s) => s.version !== undefined).map((s) => ({ who: s.node, at: s.at, version: s.version! })),
    ...history.rings.map((s) => ({ who: 'redis', at: s.at, version: s.version })),
    ...history.beats.map((b) => ({ who: `${b.node} (heartbeat)`, at: b.at, version: b.ringVersion })),
  ].sort((a, b) => a.at - b.at);
  for (const sample of samples) {
    tally.checked++;
    const before = highest.get(sample.who);
    if (before && sample.version < before.version) tally.violate(`${sample.who} at v${sample.version} at ${t(sample.at)}, after v${before.version} at ${t(before.at)}`);
    else highest.set(sample.who, { version: sample.version, at: sample.at });
  }
  return tally.result();
}

/** 5. No key that was ever active leaves the ring before its deleteAfter. */
function keysKeptUntilDeleteAfter(history: History): InvariantResult {
  const tally = new Tally('no active-once key gone before deleteAfter');
  const known = new Map<string, { deleteAfter?: number; at: number }>();
  for (const ring of [...history.rings].sort((a, b) => a.at - b.at)) {
    const present = new Set(ring.keys.map((key) => key.kid));
    for (const key of ring.keys) if (key.activatedAt !== undefined || key.state !== 'staged') known.set(key.kid, { deleteAfter: key.deleteAfter, at: ring.at });
    for (const [kid, last] of known) {
      if (present.has(kid)) continue;
      tally.checked++;
      known.delete(kid);
      if (last.deleteAfter === undefined || ring.at < last.deleteAfter)
        tally.violate(`${kid} gone at ${t(ring.at)}, deleteAfter ${last.deleteAfter === undefined ? 'unset' : t(last.deleteAfter)}`);
    }
  }
  tally.checked += known.size;
  return tally.result();
}

/**
 * 6. One primary at a time: no two nodes' runs of heartbeats saying "primary" overlap, and a
 * lease token, once replaced, never comes back.
 */
function onePrimary(history: History, options: CheckOptions): InvariantResult {
  const tally = new Tally('one primary at a time');
  const byNode = new Map<string, Map<number, boolean>>();
  for (const beat of history.beats) {
    const beats = byNode.get(beat.node) ?? new Map<number, boolean>();
    beats.set(beat.at, beat.primary);
    byNode.set(beat.node, beats);
  }
  const runs: { node: string; from: number; until: number }[] = [];
  for (const [node, beats] of byNode) {
    let run: { node: string; from: number; until: number } | undefined;
    for (const [at, primary] of [...beats].sort((a, b) => a[0] - b[0])) {
      if (primary && run && at - run.until <= options.beatGapMs) run.until = at;
      else {
        if (run) runs.push(run);
        run = primary ? { node, from: at, until: at } : undefined;
      }
    }
    if (run) runs.push(run);
  }
  runs.sort((a, b) => a.from - b.from);
  for (let i = 0; i < runs.length; i++) {
    tally.checked++;
    for (let j = i + 1; j < runs.length && runs[j]!.from <= runs[i]!.until; j++) {
      if (runs[j]!.node !== runs[i]!.node) tally.violate(`${runs[i]!.node} primary ${t(runs[i]!.from)}-${t(runs[i]!.until)} and ${runs[j]!.node} primary ${t(runs[j]!.from)}-${t(runs[j]!.until)}`);
    }
  }
  const seen = new Set<string>();
  let current: string | null = null;
  for (const sample of [...history.leases].sort((a, b) => a.at - b.at)) {
    if (sample.token === current) continue;
    tally.checked++;
    if (sample.token !== null && seen.has(sample.token)) tally.violate(`lease token of ${sample.token.split('/')[0]} came back at ${t(sample.at)} after another`);
    if (sample.token !== null) seen.add(sample.token);
    current = sample.token;
  }
  return tally.result(`${runs.length} runs as primary, ${seen.size} lease tokens`);
}

/** 7. After the last fault, every node is ready on one ring version with one primary within the bound. */
function recovers(history: History, options: CheckOptions): InvariantResult {
  const tally = new Tally('healthy again after the last fault');
  tally.checked = 1;
  if (history.lastFaultEnd === undefined) return tally.result('no fault');
  if (history.healthyAt === undefined) {
    tally.violate('never healthy again');
    return tally.result();
  }
  const ms = history.healthyAt - history.lastFaultEnd;
  if (ms > options.recoveryBoundMs) tally.violate(`healthy ${ms} ms after the last fault, bound ${options.recoveryBoundMs} ms`);
  return tally.result(`${ms} ms (bound ${options.recoveryBoundMs} ms)`);
}

/** The run in figures: operations by kind and outcome, faults by kind, and each invariant. */
export function summarize(history: History, results: InvariantResult[]): string {
  const lines: string[] = [];
  const ops = history.ops.filter((op) => op.worker >= 0);
  const byKind = new Map<string, Record<string, number>>();
  for (const op of ops) {
    const row = byKind.get(op.kind) ?? {};
    const outcome = op.status === 0 ? `no answer (${op.code})` : `${op.status}${op.code ? ` ${op.code}` : ''}`;
    row[outcome] = (row[outcome] ?? 0) + 1;
    byKind.set(op.kind, row);
  }
  lines.push(`operations: ${ops.length} through the balancer (+${history.ops.length - ops.length} revocation probes)`);
  for (const [kind, row] of byKind) lines.push(`  ${kind.padEnd(10)} ${Object.entries(row).map(([k, n]) => `${k}: ${n}`).join(', ')}`);
  const faults = new Map<string, Fault[]>();
  for (const fault of history.faults) faults.set(fault.kind, [...(faults.get(fault.kind) ?? []), fault]);
  lines.push(`faults and operator actions: ${history.faults.length}`);
  for (const [kind, list] of faults) {
    const failed = list.filter((f) => !f.ok).length;
    const exit3 = list.filter((f) => f.exitCode === 3).length;
    const mean = Math.round(list.reduce((sum, f) => sum + (f.end - f.start), 0) / list.length);
    lines.push(`  ${kind.padEnd(15)} ${list.length}${failed ? ` (${failed} failed)` : ''}${exit3 ? ` (${exit3} exited 3)` : ''}, mean ${mean} ms`);
  }
  lines.push('invariants:');
  for (const r of results) {
    const excluded = Object.entries(r.excluded).map(([why, n]) => `${n} ${why}`).join('; ');
    lines.push(`  ${r.violations === 0 ? 'PASS' : 'FAIL'} ${r.name}: ${r.checked} checked, ${r.violations} violations${excluded ? `, set aside: ${excluded}` : ''}${r.figure ? ` [${r.figure}]` : ''}${r.first ? `\n       first: ${r.first}` : ''}`);
  }
  return lines.join('\n');
}
