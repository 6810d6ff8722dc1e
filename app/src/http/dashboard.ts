import { createHash, timingSafeEqual } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import { parseCookie } from 'cookie';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import type { CredentialVerifiers } from '../auth/verifiers.js';
import type { NodeBeat } from '../cluster/heartbeat.js';
import type { ClusterStatusSource } from '../cluster/status.js';
import type { RingHolder } from '../keyring/holder.js';
import type { AuditEvent } from '../keyring/store.js';
import { ALGORITHMS, PURPOSES, type KeyState, type Purpose, type RingDocument } from '../keyring/types.js';
import type { DashboardMode } from '../config/index.js';
import type { Clock } from '../lib/clock.js';
import { KeyfleetError, type ErrorCode } from '../lib/errors.js';
import { readFigures } from '../metrics/rates.js';
import { htmlHeaders, nodeHue } from './html.js';
import { renderDashboardPage } from './dashboardPage.js';

// The operator's live view, read-only: live nodes, the key ring as a timeline per purpose,
// recent audit events. The browser polls GET /dashboard/data about once a second (polling
// rather than server-sent events: each poll may land on any node, carries a bearer header
// in token mode, and no connection outlives HAProxy's timeouts). Key material never leaves
// the node: every field shown is copied from an explicit list of metadata.

export type { DashboardMode } from '../config/index.js';

export const AUDIT_EVENTS_SHOWN = 20;

// ---- access ----------------------------------------------------------------------------

export interface AccessRequest {
  authorization?: string | undefined;
  /** The raw Cookie header. */
  cookie?: string | undefined;
}

export interface AccessVerifiers {
  /** The user of a valid access token (JWT); throws a 401 KeyfleetError otherwise. */
  token(jwt: string): Promise<string>;
  /** The user of a valid `auth` cookie; throws a 401 KeyfleetError otherwise. */
  authCookie(value: string): Promise<string>;
  /** Whether the account still exists (USERS), so a removed account loses access at once. */
  userExists(user: string): boolean;
  /** Whether the account is one of the operators DASHBOARD=login admits (DASHBOARD_USERS). */
  isOperator(user: string): boolean;
}

export type AccessDecision =
  | { allowed: true; who: string }
  | { allowed: false; status: 401 | 403 | 404; code: ErrorCode; message: string };

const deny = (status: 401 | 403 | 404, code: ErrorCode, message: string): AccessDecision => ({ allowed: false, status, code, message });

/** Constant-time comparison of two secrets of any length. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function bearer(authorization: string | undefined): string | undefined | null {
  if (authorization === undefined) return undefined;
  const match = /^Bearer ([\x21-\x7e]+)$/.exec(authorization.trim());
  return match ? match[1]! : null;
}

/**
 * Decides whether a request may see the dashboard. Never throws: every refusal is a
 * decision with a status (404 when the dashboard is off, 401 otherwise) and a stable code.
 */
export async function checkDashboardAccess(
  mode: DashboardMode,
  dashboardToken: string | undefined,
  request: AccessRequest,
  verifiers: AccessVerifiers,
): Promise<AccessDecision> {
  if (mode === 'off') return deny(404, 'ERR_NOT_FOUND', 'not found');
  if (mode === 'public') return { allowed: true, who: 'anyone' };
  const presented = bearer(request.authorization);
  if (presented === null) return deny(401, 'ERR_BAD_AUTHORIZATION', 'expected "Authorization: Bearer <token>"');

  if (mode === 'token') {
    if (presented === undefined) return deny(401, 'ERR_DASHBOARD_TOKEN_REQUIRED', 'the dashboard needs its token (Authorization: Bearer <DASHBOARD_TOKEN>)');
    if (!dashboardToken || !sameSecret(presented, dashboardToken)) return deny(401, 'ERR_DASHBOARD_TOKEN_INVALID', 'wrong dashboard token');
    return { allowed: true, who: 'dashboard token' };
  }

  // mode === 'login': an access token from POST /login, else the `auth` cookie it set.
  let user: string;
  try {
    if (presented !== undefined) {
      user = await verifiers.token(presented);
    } else {
      let cookies: Record<string, string | undefined>;
      try {
        cookies = parseCookie(request.cookie ?? '');
      } catch {
        return deny(401, 'ERR_BAD_COOKIE', 'unreadable Cookie header');
      }
      const auth = cookies[AUTH_COOKIE];
      if (auth === undefined || auth === '') return deny(401, 'ERR_DASHBOARD_LOGIN_REQUIRED', 'log in first (POST /login, or the form at /)');
      user = await verifiers.authCookie(auth);
    }
  } catch (error) {
    if (error instanceof KeyfleetError && error.status === 401) return deny(401, error.code, error.message);
    return deny(401, 'ERR_DASHBOARD_LOGIN_INVALID', 'login not accepted');
  }
  if (!verifiers.userExists(user)) return deny(401, 'ERR_DASHBOARD_USER_UNKNOWN', 'this account no longer exists');
  // Logged in is not enough: only the operators listed in DASHBOARD_USERS see the ring.
  if (!verifiers.isOperator(user)) return deny(403, 'ERR_DASHBOARD_NOT_OPERATOR', 'this account may not see the dashboard (DASHBOARD_USERS)');
  return { allowed: true, who: user };
}

// ---- data --------------------------------------------------------------------------------

/** Where the dashboard reads from: Redis in a node (cluster/status.ts), anything in tests. */
export type DashboardSource = ClusterStatusSource;

/** Everything the view is built from, as read at one moment. */
export interface DashboardInput {
  now: number;
  servedBy: string;
  heartbeatIntervalMs: number;
  /** False when any read from Redis failed: what is shown may be partial. */
  redis: boolean;
  /** The ring in Redis, else the one this node holds (Redis unreachable, or a non-shared mode). */
  ring: RingDocument | null;
  ringSource: 'redis' | 'node' | 'none';
  nodes: NodeBeat[];
  primary: string | null;
  audit: AuditEvent[];
}

/** Reads every part side by side; a failing part leaves the others shown. */
export async function gatherDashboard(
  source: DashboardSource,
  localRing: () => RingDocument | undefined,
  base: { now: number; servedBy: string; heartbeatIntervalMs: number },
): Promise<DashboardInput> {
  const [nodes, primary, ring, audit] = await Promise.allSettled([source.nodes(), source.primary(), source.ring(), source.audit(AUDIT_EVENTS_SHOWN)]);
  const fromRedis = ring.status === 'fulfilled' ? ring.value : null;
  const local = fromRedis ? undefined : localRing();
  return {
    ...base,
    redis: [nodes, primary, ring, audit].every((part) => part.status === 'fulfilled'),
    ring: fromRedis ?? local ?? null,
    ringSource: fromRedis ? 'redis' : local ? 'node' : 'none',
    nodes: nodes.status === 'fulfilled' ? nodes.value : [],
    primary: primary.status === 'fulfilled' ? (primary.value ?? null) : null,
    audit: audit.status === 'fulfilled' ? audit.value : [],
  };
}

// ---- view model (pure) ---------------------------------------------------------------

export interface NodeView {
  id: string;
  hue: number;
  role: string;
  /** Holds the primary lease (from the lease itself, else from its own heartbeat). */
  primary: boolean;
  ringVersion: number;
  /** Holds an older ring version than the one in Redis. */
  behind: boolean;
  heartbeatAgeMs: number;
  /** The heartbeat is older than two intervals: the node may be in trouble. */
  late: boolean;
  uptimeMs: number;
  draining: boolean;
  /** The node that answered this request. */
  self: boolean;
  /** From the node's own heartbeat: credential checks per second, and the share the cache answered. */
  verificationsPerSecond: number | null;
  cacheHitRatio: number | null;
}

export interface Segment {
  state: KeyState;
  from: number;
  to: number;
  /** Position on the purpose's timeline, in percent. */
  left: number;
  width: number;
}

export interface KeyView {
  kid: string;
  state: KeyState;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  revokedAt: number | null;
  deleteAfter: number | null;
  segments: Segment[];
}

export interface PurposeView {
  purpose: Purpose;
  alg: string;
  active: string | null;
  /** The timeline runs from the oldest key's creation to now. */
  from: number;
  to: number;
  keys: KeyView[];
}

export interface AuditView {
  id: string;
  at: number;
  version: number;
  action: string;
  actor: string;
  purpose: string | null;
  kid: string | null;
  detail: string | null;
}

export interface DashboardView {
  servedBy: string;
  servedByHue: number;
  at: number;
  redis: boolean;
  ring: { version: number | null; updatedAt: number | null; source: DashboardInput['ringSource'] };
  primary: string | null;
  nodes: NodeView[];
  purposes: PurposeView[];
  audit: AuditView[];
}

const round = (value: number) => Math.round(value * 100) / 100;
const orNull = (value: number | undefined) => (typeof value === 'number' ? value : null);
const text = (value: unknown) => (typeof value === 'string' && value !== '' ? value : null);
const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id, 'en', { numeric: true });

/** The life of one key as consecutive state segments, clipped to [from, to]. */
export function keySegments(key: Pick<KeyView, 'createdAt' | 'activatedAt' | 'retiredAt' | 'revokedAt'>, from: number, to: number): Segment[] {
  const span = Math.max(1, to - from);
  const end = key.revokedAt ?? to;
  const marks: [KeyState, number | null, number | null][] = [
    ['staged', key.createdAt, key.activatedAt ?? end],
    ['active', key.activatedAt, key.retiredAt ?? end],
    ['retired', key.retiredAt, end],
    ['revoked', key.revokedAt, to],
  ];
  const segments: Segment[] = [];
  for (const [state, start, stop] of marks) {
    if (start === null || stop === null) continue;
    const a = Math.min(Math.max(start, from), to);
    const b = Math.min(Math.max(stop, a), to);
    if (b <= a && !(state === 'revoked' && start <= to)) continue;
    segments.push({ state, from: start, to: Math.min(stop, to), left: round(((a - from) / span) * 100), width: round(((b - a) / span) * 100) });
  }
  return segments;
}

/** Turns what was read into what the page shows. Copies metadata field by field: never `material`. */
export function buildDashboard(input: DashboardInput): DashboardView {
  const { now, ring } = input;
  const ringVersion = ring?.version ?? null;
  const nodes = [...input.nodes].sort(byId).map((beat): NodeView => {
    const heartbeatAgeMs = Math.max(0, now - beat.at);
    const figures = readFigures(beat.figures);
    return {
      id: beat.id,
      hue: nodeHue(beat.id),
      role: beat.role,
      primary: input.primary !== null ? input.primary === beat.id : beat.primary === true,
      ringVersion: beat.ringVersion,
      behind: ringVersion !== null && beat.ringVersion < ringVersion,
      heartbeatAgeMs,
      late: heartbeatAgeMs > 2 * input.heartbeatIntervalMs,
      uptimeMs: Math.max(0, now - beat.startedAt),
      draining: beat.draining === true,
      self: beat.id === input.servedBy,
      verificationsPerSecond: figures?.verificationsPerSecond ?? null,
      cacheHitRatio: figures?.cacheHitRatio ?? null,
    };
  });
  const purposes = PURPOSES.map((purpose): PurposeView => {
    const keys = (ring?.keys ?? []).filter((key) => key.purpose === purpose);
    const from = Math.min(now, ...keys.map((key) => key.createdAt));
    return {
      purpose,
      alg: ALGORITHMS[purpose],
      active: keys.find((key) => key.state === 'active')?.kid ?? null,
      from,
      to: now,
      keys: keys
        .map((key): KeyView => {
          const meta = {
            kid: key.kid,
            state: key.state,
            createdAt: key.createdAt,
            activatedAt: orNull(key.activatedAt),
            retiredAt: orNull(key.retiredAt),
            revokedAt: orNull(key.revokedAt),
            deleteAfter: orNull(key.deleteAfter),
          };
          return { ...meta, segments: keySegments(meta, from, now) };
        })
        .sort((a, b) => b.createdAt - a.createdAt || a.kid.localeCompare(b.kid)),
    };
  });
  const audit = input.audit.map((event): AuditView => ({
    id: event.id,
    at: event.at,
    version: event.version,
    action: event.action,
    actor: event.actor,
    purpose: text(event.purpose),
    kid: text(event.kid),
    detail: text(event.detail),
  }));
  return {
    servedBy: input.servedBy,
    servedByHue: nodeHue(input.servedBy),
    at: now,
    redis: input.redis,
    ring: { version: ringVersion, updatedAt: ring?.updatedAt ?? null, source: input.ringSource },
    primary: input.primary,
    nodes,
    purposes,
    audit,
  };
}

// ---- routes ----------------------------------------------------------------------------

export interface DashboardOptions {
  mode: DashboardMode;
  token?: string | undefined;
  /** The accounts login mode admits (DASHBOARD_USERS); absent or empty: none. */
  operators?: ReadonlySet<string> | undefined;
  source: DashboardSource;
  heartbeatIntervalMs: number;
}

export interface DashboardDeps extends DashboardOptions {
  nodeId: string;
  holder: RingHolder;
  /** Whether the account still exists (USERS, or the app's own user store). */
  userExists: (user: string) => boolean;
  clock: Clock;
  clockSkewMs: number;
  /** The node's verifiers (auth/verifiers.ts): logged-out credentials are refused here as everywhere. */
  verifiers: CredentialVerifiers;
}

/** GET /dashboard (the page) and GET /dashboard/data (its JSON); nothing at all when off. */
export function dashboardRouter(deps: DashboardDeps): Router {
  const router = Router();
  if (deps.mode === 'off') return router;
  const verifyOptions = () => ({ now: deps.clock.now(), clockSkewMs: deps.clockSkewMs });
  const verifiers: AccessVerifiers = {
    token: async (jwt) => (await deps.verifiers.token.check(jwt, verifyOptions())).user,
    authCookie: async (value) => (await deps.verifiers.cookie.check(value, verifyOptions())).user,
    userExists: deps.userExists,
    isOperator: (user) => deps.operators?.has(user) === true,
  };
  const access = (req: Request) =>
    checkDashboardAccess(deps.mode, deps.token, { authorization: req.headers.authorization, cookie: req.headers.cookie }, verifiers);
  const refusal = (decision: Extract<AccessDecision, { allowed: false }>, res: Response) => {
    if (deps.mode === 'token') res.setHeader('WWW-Authenticate', 'Bearer realm="keyfleet dashboard"');
    res.setHeader('Cache-Control', 'no-store');
    return new KeyfleetError(decision.code, decision.message);
  };

  router.get('/dashboard', async (req, res) => {
    const decision = await access(req);
    if (!decision.allowed) {
      const error = refusal(decision, res);
      if (decision.status === 404 || req.accepts(['json', 'html']) !== 'html') throw error;
      // A browser without access still gets the page, with the 401: it holds no data, and
      // asks for the token (token mode) or points to the login (login mode).
    }
    const nonce = htmlHeaders(res);
    res.status(decision.allowed ? 200 : decision.status).send(renderDashboardPage({ nodeId: deps.nodeId, mode: deps.mode, nonce }));
  });

  router.get('/dashboard/data', async (req, res) => {
    const decision = await access(req);
    if (!decision.allowed) throw refusal(decision, res);
    const input = await gatherDashboard(deps.source, () => deps.holder.current?.document, {
      now: deps.clock.now(),
      servedBy: deps.nodeId,
      heartbeatIntervalMs: deps.heartbeatIntervalMs,
    });
    res.setHeader('Cache-Control', 'no-store');
    res.json(buildDashboard(input));
  });

  return router;
}
