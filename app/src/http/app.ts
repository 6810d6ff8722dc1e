import { createHash } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response } from 'express';
import { parseCookie } from 'cookie';
import helmet from 'helmet';
import { z } from 'zod';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import { AUDIENCE, ISSUER, type Principal } from '../auth/claims.js';
import { checkCookie, checkToken, mintToken, needsRenewal, sealCookie, type CookieLifetimes, type CredentialClaims } from '../auth/credentials.js';
import type { RefreshTokens } from '../auth/refresh.js';
import { credentialId, type CredentialRevocations, type RevocationChange } from '../auth/revocations.js';
import { SESSION_COOKIE, type SessionMiddleware } from '../auth/session.js';
import type { LoginThrottle } from '../auth/throttle.js';
import { authenticate, type UserDirectory } from '../auth/users.js';
import type { RingHolder } from '../keyring/holder.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import type { Clock } from '../lib/clock.js';
import { KeyfleetError, badRequest, unauthorized, unavailable } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { httpMetrics, observeVerification } from '../metrics/http.js';
import type { NodeMetrics } from '../metrics/nodeMetrics.js';
import { errorHandler, notFound } from './errors.js';
import { hostPrefixedCookies } from './cookiePrefix.js';
import { dashboardRouter, type DashboardOptions } from './dashboard.js';
import { htmlHeaders } from './html.js';
import { renderPage } from './page.js';
import { sameOrigin } from './sameOrigin.js';

export interface AppDeps {
  nodeId: string;
  tokenTtlMs: number;
  sessionTtlMs: number;
  clockSkewMs: number;
  trustProxy: string | boolean;
  holder: RingHolder;
  users: UserDirectory;
  session: RequestHandler;
  clock: Clock;
  log: Logger;
  /** True while shutting down: /healthz answers 503 so the balancer drains this node. */
  isDraining: () => boolean;
  /** GET /dashboard and its data (DASHBOARD; absent or off: 404). */
  dashboard?: DashboardOptions;
  /** Failed-login counters shared by every node; absent: no throttling. */
  throttle?: LoginThrottle;
  /** Origins state-changing browser requests may come from (PUBLIC_ORIGINS); absent or empty: the request's own. */
  publicOrigins?: readonly string[];
  /** Cookie names `__Host-auth` / `__Host-sid` at the edge (COOKIE_HOST_PREFIX). */
  cookieHostPrefix?: boolean;
  /** Prometheus metrics (served on METRICS_PORT, not here); absent: nothing is measured. */
  metrics?: NodeMetrics;
  /** Resource servers a login may ask a token for (AUDIENCES); keyfleet's own is always allowed. */
  audiences?: readonly string[];
  /** JWKS_PREPUBLISH: sets how long verifiers may cache the JWKS (jwksMaxAgeSeconds). */
  jwksPrepublishMs?: number;
  /** PUBLIC_ISSUER: where the discovery document says the JWKS is; absent: this request's origin. */
  publicIssuer?: string;
  /** Ended credentials, held in memory (auth/revocations.ts); absent: logout ends only the session. */
  revocations?: CredentialRevocations;
  /** Refresh-token families (auth/refresh.ts); absent: login returns none and /token/refresh is 404. */
  refresh?: RefreshTokens;
  /** The `auth` cookie's idle timeout and absolute lifetime; default: both SESSION_TTL. */
  cookieLifetimes?: CookieLifetimes;
}

declare module 'express-session' {
  interface SessionData {
    /** When the login that started this session was (ms): logging out everywhere ends older ones. */
    loginAt?: number;
  }
}

/** How long a logout waits for every live node to confirm before it answers regardless. */
const LOGOUT_CONFIRM_MS = 1_000;

const RefreshBody = z.object({ refreshToken: z.string().min(1).max(256) });

const LoginBody = z.object({
  username: z.string().min(1).max(128),
  password: z.string().min(1).max(1024),
  audience: z.string().min(1).max(128).optional(),
});

/**
 * How long a verifier may cache the JWKS (Cache-Control max-age): at most half the
 * pre-publication window, so a cache that honours it fetches every next key at least once
 * before that key signs, and at most 5 minutes, which bounds how long such a cache keeps a
 * revoked key. Retired keys stay published until nothing they signed is valid, so the
 * cache age never shortens a token's life.
 */
export const jwksMaxAgeSeconds = (prepublishMs: number) => Math.floor(Math.min(prepublishMs / 2, 300_000) / 1000);

/**
 * RFC 9110 §13.1.2: If-None-Match, weak comparison, `*` matches. Evaluated even with
 * `Cache-Control: no-cache` (which fetch() adds to every conditional request): answering the
 * validation is the origin's part of it. Express's req.fresh treats that as a reload.
 */
function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => opaque(tag) === opaque(etag));
}

/** The JWKS of one ring version, serialized once, with its strong ETag (the same on every node). */
const jwksBodies = new WeakMap<RingSnapshot, { json: string; etag: string }>();
function jwksBody(ring: RingSnapshot) {
  let body = jwksBodies.get(ring);
  if (!body) {
    const json = JSON.stringify(ring.jwks());
    body = { json, etag: `"${createHash('sha256').update(json).digest('base64url').slice(0, 27)}"` };
    jwksBodies.set(ring, body);
  }
  return body;
}

/** Builds the Express app; never listens and never exits (server.ts owns the process). */
export function createApp(deps: AppDeps) {
  const { nodeId, holder, clock, log } = deps;
  const app = express();
  app.disable('x-powered-by');
  // No ETag: answers are per-caller and not cached (no-store), and hashing every JSON body
  // cost 2-3.5 % of CPU in the profiles (docs/performance.md).
  app.set('etag', false);
  app.set('trust proxy', deps.trustProxy);
  if (deps.metrics) app.use(httpMetrics(deps.metrics));
  app.use((_req, res, next) => {
    res.setHeader('X-Node-Id', nodeId);
    next();
  });
  // Security headers on every response. HTML views set their own Content-Security-Policy
  // (html.ts); HSTS comes from the balancer, which terminates TLS.
  app.use(helmet({ contentSecurityPolicy: false, strictTransportSecurity: false }));
  app.use(sameOrigin({ publicOrigins: deps.publicOrigins }));
  if (deps.cookieHostPrefix) app.use(hostPrefixedCookies());

  const verifyOptions = () => ({ now: clock.now(), clockSkewMs: deps.clockSkewMs });
  const cookieOptions = (req: Request) => ({
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: req.secure,
    path: '/',
  });
  const ready = () => holder.current?.complete === true && !deps.isDraining();
  const lifetimes: CookieLifetimes = deps.cookieLifetimes ?? { idleMs: deps.sessionTtlMs, absoluteMs: deps.sessionTtlMs };
  const identifyOptions = (req: Request, countVisits: boolean): IdentifyOptions => ({ countVisits, lifetimes, cookieOptions: cookieOptions(req) });

  app.get('/healthz', (_req, res) => {
    const ring = holder.current;
    // An alarm (Redis holds a ring this node refuses) is shown, code only: the node keeps
    // serving its last good ring, or stays not ready when it has none.
    const alarm = holder.alarm?.code;
    const body = {
      status: ready() ? 'ok' : deps.isDraining() ? 'draining' : 'starting',
      node: nodeId,
      ring: ring ? { version: ring.version, keys: ring.document.keys.length, complete: ring.complete, ...(alarm ? { alarm } : {}) } : null,
      ...(alarm ? { alarm } : {}),
    };
    res.status(ready() ? 200 : 503).json(body);
  });

  // The active signing key, the next one (published JWKS_PREPUBLISH before it signs) and
  // retired ones until nothing they signed is valid; never a revoked key.
  const jwksCacheControl = `public, max-age=${jwksMaxAgeSeconds(deps.jwksPrepublishMs ?? 0)}`;
  app.get('/.well-known/jwks.json', (req, res) => {
    const ring = holder.current;
    if (!ring) throw unavailable('ERR_NOT_READY', 'key ring not loaded yet');
    const { json, etag } = jwksBody(ring);
    res.setHeader('Cache-Control', jwksCacheControl);
    res.setHeader('ETag', etag);
    if (ifNoneMatch(req.headers['if-none-match'], etag)) {
      res.status(304).end();
      return;
    }
    res.type('application/json').send(json);
  });

  // OpenID Connect Discovery 1.0 §3, limited to what keyfleet does: it issues ES256 JWTs and
  // publishes their keys. No authorization or token endpoint in the OAuth sense.
  app.get('/.well-known/openid-configuration', (req, res) => {
    const base = deps.publicIssuer ?? `${req.protocol}://${req.get('host') ?? 'localhost'}`;
    // Derived from the request's Host, the answer must not be shared by caches.
    res.setHeader('Cache-Control', deps.publicIssuer ? 'public, max-age=300' : 'no-store');
    res.json({
      issuer: ISSUER,
      jwks_uri: `${base}/.well-known/jwks.json`,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: [ALGORITHMS.sign],
      claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'],
    });
  });

  app.post('/login', express.json({ limit: '8kb', strict: true }), async (req, res) => {
    const parsed = LoginBody.safeParse(req.body);
    if (!parsed.success) throw badRequest('ERR_BAD_LOGIN_BODY', 'expected JSON {"username","password"} and optionally "audience"');
    const { username, password, audience } = parsed.data;
    if (audience !== undefined && audience !== AUDIENCE && !deps.audiences?.includes(audience)) {
      throw badRequest('ERR_UNKNOWN_AUDIENCE', 'unknown audience: ask for a resource server registered in AUDIENCES (keyfleet audiences)');
    }
    const address = req.ip ?? 'unknown';
    // Counted before the password is checked: over a limit, no scrypt work at all.
    const ticket = await deps.throttle?.admit(username, address);
    if (!(await authenticate(deps.users, username, password))) {
      throw unauthorized('ERR_BAD_CREDENTIALS', 'wrong username or password');
    }
    await deps.throttle?.succeeded(ticket);
    const ring = holder.current;
    if (!ring?.complete) throw unavailable('ERR_NOT_READY', 'key ring not loaded yet');
    const now = clock.now();
    // Like the session, the refresh token needs Redis: without it the login still succeeds.
    const refresh = await deps.refresh?.issue(username, now).catch((error: unknown) => {
      log.warn({ err: error instanceof Error ? error.message : String(error) }, 'login without a refresh token: Redis is unavailable');
      return undefined;
    });
    const { token, expiresIn } = await mintToken(ring, { user: username, ttlMs: deps.tokenTtlMs, now, family: refresh?.family, ...(audience ? { audience } : {}) });
    const sealed = await sealCookie(ring, { user: username, now }, lifetimes);
    res.cookie(AUTH_COOKIE, sealed.value, { ...cookieOptions(req), maxAge: sealed.maxAgeMs });
    // The session is a bonus that needs Redis; tokens and the auth cookie do not.
    const session = await startSession(req, res, deps.session, username, nodeId, now).catch((error: unknown) => {
      log.warn({ err: error }, 'login without a session: the session store is unavailable');
      // No `sid` for a session that was never stored: every node would refuse it.
      (req as { session?: unknown }).session = undefined;
      return false;
    });
    res.setHeader('Cache-Control', 'no-store');
    res.json({ token, tokenType: 'Bearer', expiresIn, ...(refresh ? { refreshToken: refresh.refreshToken, refreshExpiresIn: Math.floor(Math.min(deps.refresh!.options.idleMs, deps.refresh!.options.absoluteMs) / 1000) } : {}), node: nodeId, session, ...(audience ? { audience } : {}) });
  });

  // Refresh-token rotation (auth/refresh.ts): a new access token and the next refresh token.
  app.post('/token/refresh', express.json({ limit: '8kb', strict: true }), async (req, res) => {
    const refresh = deps.refresh;
    if (!refresh) throw new KeyfleetError('ERR_NOT_FOUND', 'not found', 404);
    const parsed = RefreshBody.safeParse(req.body);
    if (!parsed.success) throw badRequest('ERR_BAD_REFRESH_BODY', 'expected JSON {"refreshToken"}');
    const ring = holder.current;
    if (!ring?.complete) throw unavailable('ERR_NOT_READY', 'key ring not loaded yet');
    const now = clock.now();
    // A family's access tokens all expire within TOKEN_TTL (and the skew) of now: its id is refused that long.
    const redeemed = await refresh.redeem(parsed.data.refreshToken, { now, actor: nodeId, revokeForMs: deps.tokenTtlMs + deps.clockSkewMs });
    res.setHeader('Cache-Control', 'no-store');
    if (redeemed.status === 'reuse') {
      deps.metrics?.refreshTokenReuse();
      // Never the token: the family id names it in the audit stream and here.
      log.warn({ user: redeemed.user, family: redeemed.family, generation: redeemed.generation }, 'refresh token reused: family revoked with every access token it issued');
      throw unauthorized('ERR_REFRESH_REUSED', 'refresh token already used; its whole family is revoked');
    }
    if (!deps.users.has(redeemed.user)) throw unauthorized('ERR_REFRESH_INVALID', 'refresh token unknown, expired or revoked');
    const { token, expiresIn } = await mintToken(ring, { user: redeemed.user, ttlMs: deps.tokenTtlMs, now, family: redeemed.family });
    res.json({ token, tokenType: 'Bearer', expiresIn, refreshToken: redeemed.refreshToken, node: nodeId });
  });

  app.get('/me', async (req, res) => {
    // The API reads; only page views count visits. So /me costs no Redis round trip by
    // token or auth cookie, and exactly one (the session read) by sid.
    const { cookie: _generation, ...principal } = await identify(req, res, deps, verifyOptions, identifyOptions(req, false));
    res.setHeader('Cache-Control', 'no-store');
    res.json({ ...principal, node: nodeId, ...sessionView(req, principal) });
  });

  // Ends every credential presented: the bearer token (by jti, and its refresh family), the
  // `auth` cookie (by jti: every renewal of it), on every node; the `sid` session in Redis.
  app.post('/logout', async (req, res) => {
    let cookies: Record<string, string | undefined>;
    try {
      cookies = parseCookie(req.headers.cookie ?? '');
    } catch {
      cookies = {};
    }
    res.clearCookie(AUTH_COOKIE, cookieOptions(req));
    res.clearCookie(SESSION_COOKIE, cookieOptions(req));
    const now = clock.now();
    const change: Required<RevocationChange> = { ids: [], users: [] };
    const ended: string[] = [];
    const bearer = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(req.headers.authorization?.trim() ?? '')?.[1];
    // Only a credential that verifies names something to end; a bad one ends nothing (and says so).
    const accepted = <T,>(check: Promise<T>) => check.catch((error: unknown) => {
      if (error instanceof KeyfleetError && error.status === 401) return undefined;
      throw error;
    });
    if (bearer && deps.revocations) {
      const claims = await accepted(checkToken(holder, deps.revocations, bearer, verifyOptions()));
      if (claims?.jti) {
        change.ids.push({ id: credentialId.jti(claims.jti), until: (claims.expMs ?? now) + deps.clockSkewMs });
        ended.push('token');
      }
      if (claims?.family) {
        // Every access token of its refresh family is refused (they all expire within TOKEN_TTL),
        // and the family is deleted below, once the revocation is written.
        change.ids.push({ id: credentialId.family(claims.family), until: now + deps.tokenTtlMs + deps.clockSkewMs });
        ended.push('refresh');
      }
    }
    const auth = cookies[AUTH_COOKIE];
    if (auth && deps.revocations) {
      const claims = await accepted(checkCookie(holder, deps.revocations, auth, verifyOptions()));
      if (claims?.jti) {
        change.ids.push({ id: credentialId.jti(claims.jti), until: (claims.startedAtMs ?? now) + lifetimes.absoluteMs + deps.clockSkewMs });
        ended.push('cookie');
      }
    }
    if (cookies[SESSION_COOKIE] !== undefined) {
      await runMiddleware(deps.session, req, res);
      await new Promise<void>((resolve, reject) => req.session.destroy((error) => (error ? reject(unavailable('ERR_SESSION_STORE_UNAVAILABLE', 'the session store is unavailable')) : resolve())));
      ended.push('session');
    }
    let nodes: { confirmed: number; live: number } | undefined;
    if (change.ids.length > 0) {
      // This node refuses them at once; the others when the announcement reaches them.
      const seq = await deps.revocations!.revoke(change).catch((error: unknown) => {
        log.warn({ err: error instanceof Error ? error.message : String(error) }, 'logout not announced: Redis is unavailable');
        throw unavailable('ERR_REVOCATION_UNAVAILABLE', 'logged out on this node only: the other nodes cannot be told while Redis is unavailable; try again');
      });
      for (const { id } of change.ids) {
        if (!id.startsWith('fam:')) continue;
        await deps.refresh?.end(id.slice('fam:'.length)).catch(() => {
          throw unavailable('ERR_REVOCATION_UNAVAILABLE', 'the refresh token could not be ended while Redis is unavailable; try again');
        });
      }
      // Answer once every live node says it refuses them (their heartbeats), within a bound:
      // a node cut off from Redis is not waited for longer (it applies them when it is back).
      nodes = await deps.revocations!.confirmed(seq, LOGOUT_CONFIRM_MS).catch(() => undefined);
    }
    res.setHeader('Cache-Control', 'no-store');
    res.json({ loggedOut: true, ended, ...(nodes ? { nodes } : {}), node: nodeId });
  });

  // Ends every credential of the caller's user issued before now, on every node: a per-user
  // not-before (auth/revocations.ts); refresh families older than it stop redeeming too.
  app.post('/logout/everywhere', async (req, res) => {
    const principal = await identify(req, res, deps, verifyOptions, identifyOptions(req, false));
    if (!deps.revocations) throw new KeyfleetError('ERR_NOT_FOUND', 'not found', 404);
    const at = clock.now();
    const seq = await deps.revocations.revoke({ users: [{ user: principal.user, at }] }).catch((error: unknown) => {
      log.warn({ err: error instanceof Error ? error.message : String(error) }, 'log out everywhere not announced: Redis is unavailable');
      throw unavailable('ERR_REVOCATION_UNAVAILABLE', 'the other nodes cannot be told while Redis is unavailable; try again');
    });
    res.clearCookie(AUTH_COOKIE, cookieOptions(req));
    res.clearCookie(SESSION_COOKIE, cookieOptions(req));
    res.setHeader('Cache-Control', 'no-store');
    const nodes = await deps.revocations.confirmed(seq, LOGOUT_CONFIRM_MS).catch(() => undefined);
    res.json({ loggedOut: true, user: principal.user, before: new Date(at).toISOString(), ...(nodes ? { nodes } : {}), node: nodeId });
  });

  // The page identifies its caller like /me, on the node that serves it; a refused
  // credential is a notice on the page, not an error.
  app.get('/', async (req, res) => {
    const view = await identify(req, res, deps, verifyOptions, identifyOptions(req, true)).then(
      (principal) => ({ ...principal, ...sessionView(req, principal) }),
      (error: unknown) => {
        if (!(error instanceof KeyfleetError)) throw error;
        return error.code === 'ERR_NO_CREDENTIALS' ? {} : { notice: error.code };
      },
    );
    const nonce = htmlHeaders(res);
    res.send(renderPage({ nodeId, ...view, demoHint: deps.users.has('demo'), dashboard: (deps.dashboard?.mode ?? 'off') !== 'off', nonce }));
  });

  if (deps.dashboard) {
    // The dashboard polls with the `auth` cookie: keep it sliding there too (its own check
    // decides access; a cookie that is refused here is left to it).
    app.use('/dashboard', async (req, res, next) => {
      const auth = req.headers.authorization === undefined ? cookieValue(req.headers.cookie, AUTH_COOKIE) : undefined;
      if (auth) {
        await checkCookie(holder, deps.revocations, auth, verifyOptions())
          .then((claims) => renewCookie(deps, res, claims, lifetimes, cookieOptions(req)))
          .catch(() => undefined);
      }
      next();
    });
    app.use(dashboardRouter({ ...deps.dashboard, nodeId, holder, users: deps.users, clock, clockSkewMs: deps.clockSkewMs, revocations: deps.revocations }));
  }

  app.use(notFound);
  app.use(errorHandler(log));
  return app;
}

interface IdentifyOptions {
  countVisits: boolean;
  lifetimes: CookieLifetimes;
  cookieOptions: CookieOptions;
}

/**
 * Bearer token, else `auth` cookie, else `sid` session. A credential that is present but bad
 * (or revoked: checked in memory, auth/revocations.ts) is a 401. An `auth` cookie past half
 * its idle window, or sealed with a key no longer active, is renewed in the answer.
 */
async function identify(
  req: Request,
  res: Response,
  deps: AppDeps,
  verifyOptions: () => { now: number; clockSkewMs: number },
  { countVisits, lifetimes, cookieOptions }: IdentifyOptions,
): Promise<Principal> {
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(authorization.trim());
    if (!match) throw unauthorized('ERR_BAD_AUTHORIZATION', 'expected "Authorization: Bearer <token>"');
    const verify = async () => (await checkToken(deps.holder, deps.revocations, match[1]!, verifyOptions())).user;
    return { user: await observeVerification(deps.metrics, deps.holder, 'sign', match[1]!, verifyOptions().now, verify), via: 'token' };
  }
  let cookies: Record<string, string | undefined>;
  try {
    cookies = parseCookie(req.headers.cookie ?? '');
  } catch {
    throw unauthorized('ERR_BAD_COOKIE', 'unreadable Cookie header');
  }
  const auth = cookies[AUTH_COOKIE];
  if (auth !== undefined && auth !== '') {
    let claims: CredentialClaims | undefined;
    const verify = async () => (claims = await checkCookie(deps.holder, deps.revocations, auth, verifyOptions())).user;
    const user = await observeVerification(deps.metrics, deps.holder, 'encrypt', auth, verifyOptions().now, verify);
    const cookie = await renewCookie(deps, res, claims!, lifetimes, cookieOptions);
    // A browser sends both cookies: count the visit in its session too. Only when a `sid`
    // came along, so auth-cookie-only requests never wait on Redis; the cookie alone decides
    // who you are, and a session that is gone, unreachable or someone else's is left alone.
    if (countVisits && cookies[SESSION_COOKIE] !== undefined) {
      await runMiddleware(deps.session, req, res).then(
        () => req.session?.user === user && countVisit(req, deps.nodeId),
        (error: unknown) => deps.log.debug({ err: error }, 'visit not counted: session store unavailable'),
      );
    }
    return { user, via: 'cookie', cookie };
  }
  if (cookies[SESSION_COOKIE] !== undefined) {
    // Only reading (the API): the session without express-session's load-and-save machinery.
    const read = countVisits ? undefined : (deps.session as Partial<SessionMiddleware>).read;
    await (read ? read(req) : runMiddleware(deps.session, req, res));
    const user = req.session?.user;
    deps.metrics?.verification('cookie', user ? 'OK' : 'ERR_SESSION_INVALID', 'none');
    if (user && deps.revocations?.check(user, [], req.session.loginAt ?? 0)) {
      deps.metrics?.verification('cookie', 'ERR_SESSION_REVOKED', 'none');
      throw unauthorized('ERR_SESSION_REVOKED', 'session ended (logged out everywhere)');
    }
    if (!user) {
      // The `sid` signature may be by a cookie key this node has not loaded (cut off from
      // Redis while a rotation went ahead): let a node that can vouch for its ring answer.
      if (!deps.holder.inSync) throw unavailable('ERR_RING_STALE', 'this node cannot confirm its key ring is current; another node can answer');
      throw unauthorized('ERR_SESSION_INVALID', 'session unknown, expired or tampered with');
    }
    if (countVisits) countVisit(req, deps.nodeId);
    return { user, via: 'session' };
  }
  throw unauthorized('ERR_NO_CREDENTIALS', 'no token, auth cookie or session');
}

function countVisit(req: Request, nodeId: string): void {
  req.session.visits = (req.session.visits ?? 0) + 1;
  const seen = new Set(req.session.nodesSeen ?? []);
  seen.add(nodeId);
  req.session.nodesSeen = [...seen];
}

/** The visit counter, when this request's session belongs to the caller (never for tokens). */
function sessionView(req: Request, principal: Principal): { visits?: number; nodesSeen?: string[] } {
  if (principal.via === 'token' || req.session?.user !== principal.user) return {};
  return { visits: req.session.visits, nodesSeen: req.session.nodesSeen };
}

function runMiddleware(handler: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    void handler(req, res, (error?: unknown) => (error ? reject(error) : resolve()));
  });
}

/** One cookie's value from a Cookie header; undefined when absent or unreadable. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  try {
    return parseCookie(header ?? '')[name] || undefined;
  } catch {
    return undefined;
  }
}

type CookieOptions = { httpOnly: boolean; sameSite: 'lax'; secure: boolean; path: string };

/** Seals the next generation of an accepted `auth` cookie when it is due (credentials.ts needsRenewal). */
async function renewCookie(deps: AppDeps, res: Response, claims: CredentialClaims, lifetimes: CookieLifetimes, options: CookieOptions): Promise<Principal['cookie']> {
  const now = deps.clock.now();
  const ring = deps.holder.current;
  const startedAt = claims.startedAtMs ?? claims.issuedAtMs;
  if (!ring?.complete || !needsRenewal(claims, ring, now, lifetimes)) return { issuedAt: claims.issuedAtMs, startedAt, renewed: false };
  const next = await sealCookie(ring, { user: claims.user, now, jti: claims.jti, startedAtMs: startedAt }, lifetimes);
  res.cookie(AUTH_COOKIE, next.value, { ...options, maxAge: next.maxAgeMs });
  return { issuedAt: now, startedAt, renewed: true };
}

async function startSession(req: Request, res: Response, handler: RequestHandler, user: string, nodeId: string, now: number): Promise<boolean> {
  await runMiddleware(handler, req, res);
  // A new id at login (no session fixation), then persist before answering.
  await new Promise<void>((resolve, reject) => req.session.regenerate((error) => (error ? reject(error) : resolve())));
  req.session.user = user;
  req.session.loginAt = now;
  req.session.visits = 0;
  req.session.nodesSeen = [nodeId];
  await new Promise<void>((resolve, reject) => req.session.save((error) => (error ? reject(error) : resolve())));
  return true;
}

