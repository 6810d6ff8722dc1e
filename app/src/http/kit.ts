import { createHash } from 'node:crypto';
import express, { Router, type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { parseCookie } from 'cookie';
import helmet from 'helmet';
import { z } from 'zod';
import { checkAppClaims, readAppClaims, type Claims, type ClaimsSchema } from '../auth/appClaims.js';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import { AUDIENCE, ISSUER, type Principal } from '../auth/claims.js';
import { checkCookie, checkToken, mintToken, needsRenewal, sealCookie, type CookieLifetimes, type CredentialClaims } from '../auth/credentials.js';
import type { RefreshTokens } from '../auth/refresh.js';
import { credentialId, type CredentialRevocations, type RevocationChange } from '../auth/revocations.js';
import { SESSION_COOKIE, type SessionMiddleware } from '../auth/session.js';
import type { RingHolder } from '../keyring/holder.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import type { Clock } from '../lib/clock.js';
import { KeyfleetError, badRequest, unauthorized, unavailable } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { httpMetrics, observeVerification } from '../metrics/http.js';
import type { NodeMetrics } from '../metrics/nodeMetrics.js';
import { hostPrefixedCookies } from './cookiePrefix.js';
import { dashboardRouter, type DashboardOptions } from './dashboard.js';
import { errorHandler, notFound } from './errors.js';
import { sameOrigin } from './sameOrigin.js';

// The request side of keyfleet as a library: the kit's own routes, the middleware that
// authenticates a request, and credential minting for an app's own login route. The node
// (node.ts) supplies the ring and the Redis-backed parts; tests supply stand-ins.

export interface KitDeps {
  nodeId: string;
  tokenTtlMs: number;
  sessionTtlMs: number;
  clockSkewMs: number;
  /** TRUST_PROXY: applied to an app that has not set `trust proxy` itself. */
  trustProxy: string | boolean;
  holder: RingHolder;
  session: RequestHandler;
  clock: Clock;
  log: Logger;
  /** True while shutting down: /healthz answers 503 so the balancer drains this node. */
  isDraining: () => boolean;
  /** Whether an account still exists: refresh tokens and the dashboard's login mode ask. Default: every account does. */
  userExists?: (user: string) => boolean;
  /** The app's claims schema: login() checks claims with it, authenticate() reads them through it. */
  claims?: ClaimsSchema;
  /** GET /dashboard and its data (DASHBOARD; absent or off: 404). */
  dashboard?: DashboardOptions;
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
    /** The app's claims given at login (checked then): a session-authenticated request reads them here. */
    claims?: Record<string, unknown>;
  }
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by keyfleet's authenticate() and requireUser() once a credential is accepted. */
      principal?: Principal;
    }
  }
}

export interface AuthenticateOptions {
  /**
   * What a request carrying a `sid` gets: `read` (default) looks the session up without
   * express-session's load-and-save machinery (`req.session` is then read-only, and a request
   * authenticated by token or `auth` cookie never waits on Redis); `load` runs the session
   * middleware whenever a `sid` comes along, so the route may change `req.session` and have
   * it saved.
   */
  session?: 'read' | 'load';
}

export interface LoginOptions<C extends Claims = Claims> {
  /** The user, as the app's own user store names them (the token's `sub`). */
  user: string;
  /** The app's own claims, carried by the token, the `auth` cookie and the session (≤ 1 KiB, no reserved names). */
  claims?: C;
  /** A resource server registered in AUDIENCES; default keyfleet's own. */
  audience?: string;
}

export interface LoginResult {
  token: string;
  tokenType: 'Bearer';
  /** Seconds the access token lives (TOKEN_TTL). */
  expiresIn: number;
  /** Present when Redis could store its family. */
  refreshToken?: string;
  refreshExpiresIn?: number;
  node: string;
  /** Whether a `sid` session was started (it needs Redis; the token and `auth` cookie do not). */
  session: boolean;
  audience?: string;
}

export interface RoutesOptions {
  /** Mount the dashboard (as DASHBOARD says). Default true. */
  dashboard?: boolean;
}

/** The request side of a keyfleet node: what an Express app mounts and calls. */
export interface KeyfleetHttp<C extends Claims = Claims> {
  /** NODE_ID: in `X-Node-Id` and every answer of the kit's routes. */
  readonly nodeId: string;
  /** The kit's routes: /healthz, /.well-known/*, POST /logout, /logout/everywhere, /token/refresh, /dashboard. */
  routes(options?: RoutesOptions): Router;
  /** Sets `req.principal` when a credential is presented; a bad one is a 401 (next(err)); none: no principal. */
  authenticate(options?: AuthenticateOptions): RequestHandler;
  /** Like authenticate(), but no credential at all is a 401 ERR_NO_CREDENTIALS. */
  requireUser(options?: AuthenticateOptions): RequestHandler;
  /** The principal authenticate() set, its claims typed by the app's schema; undefined when none. */
  principal(req: Request): Principal<C> | undefined;
  /** Mints the access token (and refresh token), sets the `auth` cookie and starts a `sid` session. */
  login(req: Request, res: Response, options: LoginOptions<C>): Promise<LoginResult>;
  /** Throws ERR_UNKNOWN_AUDIENCE unless `audience` is keyfleet's own or registered in AUDIENCES. */
  checkAudience(audience: string | undefined): void;
  /** An access token for `user` outside any request (a job, a test); no cookie, no session, no refresh token. */
  mintToken(user: string, options?: { claims?: C; audience?: string }): Promise<{ token: string; expiresIn: number }>;
  /** Checks a bearer token as requireUser() does (in memory: ring and revocations); throws a 401 KeyfleetError. */
  verifyToken(token: string): Promise<Principal<C>>;
  /** express-session on the Redis store, `sid` signed with the ring's rotating cookie keys. */
  session(): RequestHandler;
  /** KeyfleetError (and body-parser errors) → JSON `{error, code}` with its status; 5xx detail hidden. */
  errorHandler(): ErrorRequestHandler;
  /** 404 JSON `{error, code: 'ERR_NOT_FOUND'}`. */
  notFound(): RequestHandler;
}

/** How long a logout waits for every live node to confirm before it answers regardless. */
const LOGOUT_CONFIRM_MS = 1_000;

const RefreshBody = z.object({ refreshToken: z.string().min(1).max(256) });

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

type CookieOptions = { httpOnly: boolean; sameSite: 'lax'; secure: boolean; path: string };

/** Builds the request side from its dependencies; never listens and never exits. */
export function createKit<C extends Claims = Claims>(deps: KitDeps): KeyfleetHttp<C> {
  const { nodeId, holder, clock, log } = deps;
  const verifyOptions = () => ({ now: clock.now(), clockSkewMs: deps.clockSkewMs });
  const cookieOptions = (req: Request): CookieOptions => ({ httpOnly: true, sameSite: 'lax', secure: req.secure, path: '/' });
  const ready = () => holder.current?.complete === true && !deps.isDraining();
  const lifetimes: CookieLifetimes = deps.cookieLifetimes ?? { idleMs: deps.sessionTtlMs, absoluteMs: deps.sessionTtlMs };
  const userExists = deps.userExists ?? (() => true);
  const trustApplied = new WeakSet<object>();

  /** Seals the next generation of an accepted `auth` cookie when it is due (credentials.ts needsRenewal). */
  async function renewCookie(res: Response, claims: CredentialClaims, options: CookieOptions): Promise<Principal['cookie']> {
    const now = clock.now();
    const ring = holder.current;
    const startedAt = claims.startedAtMs ?? claims.issuedAtMs;
    if (!ring?.complete || !needsRenewal(claims, ring, now, lifetimes)) return { issuedAt: claims.issuedAtMs, startedAt, renewed: false };
    const next = await sealCookie(ring, { user: claims.user, now, jti: claims.jti, startedAtMs: startedAt, claims: claims.app }, lifetimes);
    res.cookie(AUTH_COOKIE, next.value, { ...options, maxAge: next.maxAgeMs });
    return { issuedAt: now, startedAt, renewed: true };
  }

  /**
   * Bearer token, else `auth` cookie, else `sid` session. A credential that is present but bad
   * (or revoked: checked in memory, auth/revocations.ts) is a 401. An `auth` cookie past half
   * its idle window, or sealed with a key no longer active, is renewed in the answer.
   */
  async function identify(req: Request, res: Response, load: boolean): Promise<Principal> {
    const authorization = req.headers.authorization;
    if (authorization !== undefined) {
      const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(authorization.trim());
      if (!match) throw unauthorized('ERR_BAD_AUTHORIZATION', 'expected "Authorization: Bearer <token>"');
      let claims: CredentialClaims | undefined;
      const verify = async () => (claims = await checkToken(holder, deps.revocations, match[1]!, verifyOptions())).user;
      const user = await observeVerification(deps.metrics, holder, 'sign', match[1]!, verifyOptions().now, verify);
      return { user, via: 'token', claims: readAppClaims(claims!.app, deps.claims) };
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
      const verify = async () => (claims = await checkCookie(holder, deps.revocations, auth, verifyOptions())).user;
      const user = await observeVerification(deps.metrics, holder, 'encrypt', auth, verifyOptions().now, verify);
      const app = readAppClaims(claims!.app, deps.claims);
      const cookie = await renewCookie(res, claims!, cookieOptions(req));
      // A browser sends both cookies: load its session too when the route asks. Only when a
      // `sid` came along, so auth-cookie-only requests never wait on Redis; the cookie alone
      // decides who you are, and a session that is gone or unreachable is left alone.
      if (load && cookies[SESSION_COOKIE] !== undefined) {
        await runMiddleware(deps.session, req, res).catch((error: unknown) => log.debug({ err: error }, 'session not loaded: session store unavailable'));
      }
      return { user, via: 'cookie', claims: app, cookie };
    }
    if (cookies[SESSION_COOKIE] !== undefined) {
      // Only reading: the session without express-session's load-and-save machinery.
      const read = load ? undefined : (deps.session as Partial<SessionMiddleware>).read;
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
        if (!holder.inSync) throw unavailable('ERR_RING_STALE', 'this node cannot confirm its key ring is current; another node can answer');
        throw unauthorized('ERR_SESSION_INVALID', 'session unknown, expired or tampered with');
      }
      return { user, via: 'session', claims: readAppClaims(req.session.claims ?? {}, deps.claims) };
    }
    throw unauthorized('ERR_NO_CREDENTIALS', 'no token, auth cookie or session');
  }

  const middleware = (required: boolean, options: AuthenticateOptions = {}): RequestHandler => (req, res, next) => {
    identify(req, res, options.session === 'load').then(
      (principal) => {
        req.principal = principal;
        next();
      },
      (error: unknown) => {
        if (!required && error instanceof KeyfleetError && error.code === 'ERR_NO_CREDENTIALS') next();
        else next(error);
      },
    );
  };

  const checkAudience = (audience: string | undefined) => {
    if (audience !== undefined && audience !== AUDIENCE && !deps.audiences?.includes(audience)) {
      throw badRequest('ERR_UNKNOWN_AUDIENCE', 'unknown audience: ask for a resource server registered in AUDIENCES (keyfleet audiences)');
    }
  };

  async function login(req: Request, res: Response, { user, claims, audience }: LoginOptions<C>): Promise<LoginResult> {
    checkAudience(audience);
    if (typeof user !== 'string' || user.length === 0 || user.length > 128) throw new KeyfleetError('ERR_BAD_CLAIMS', 'user must be a string of 1 to 128 characters');
    const app = checkAppClaims(claims, deps.claims);
    const ring = holder.current;
    if (!ring?.complete) throw unavailable('ERR_NOT_READY', 'key ring not loaded yet');
    const now = clock.now();
    // Like the session, the refresh token needs Redis: without it the login still succeeds.
    const refresh = await deps.refresh?.issue(user, now, app).catch((error: unknown) => {
      log.warn({ err: error instanceof Error ? error.message : String(error) }, 'login without a refresh token: Redis is unavailable');
      return undefined;
    });
    const { token, expiresIn } = await mintToken(ring, { user, ttlMs: deps.tokenTtlMs, now, family: refresh?.family, claims: app, ...(audience ? { audience } : {}) });
    const sealed = await sealCookie(ring, { user, now, claims: app }, lifetimes);
    res.cookie(AUTH_COOKIE, sealed.value, { ...cookieOptions(req), maxAge: sealed.maxAgeMs });
    // The session is a bonus that needs Redis; tokens and the auth cookie do not.
    const session = await startSession(req, res, deps.session, user, nodeId, now, app).catch((error: unknown) => {
      log.warn({ err: error }, 'login without a session: the session store is unavailable');
      // No `sid` for a session that was never stored: every node would refuse it.
      (req as { session?: unknown }).session = undefined;
      return false;
    });
    res.setHeader('Cache-Control', 'no-store');
    return {
      token,
      tokenType: 'Bearer',
      expiresIn,
      ...(refresh ? { refreshToken: refresh.refreshToken, refreshExpiresIn: Math.floor(Math.min(deps.refresh!.options.idleMs, deps.refresh!.options.absoluteMs) / 1000) } : {}),
      node: nodeId,
      session,
      ...(audience ? { audience } : {}),
    };
  }

  function routes({ dashboard = true }: RoutesOptions = {}): Router {
    const router = Router();
    // TRUST_PROXY, for req.ip, req.secure and req.protocol behind the balancer: applied to the
    // app this router is mounted in, unless the app set `trust proxy` itself.
    router.use((req, _res, next) => {
      if (!trustApplied.has(req.app)) {
        trustApplied.add(req.app);
        if (req.app.get('trust proxy') === false) req.app.set('trust proxy', deps.trustProxy);
      }
      next();
    });
    if (deps.metrics) router.use(httpMetrics(deps.metrics));
    router.use((_req, res, next) => {
      res.setHeader('X-Node-Id', nodeId);
      next();
    });
    // Security headers on every response. HTML views set their own Content-Security-Policy
    // (html.ts); HSTS comes from the balancer, which terminates TLS.
    router.use(helmet({ contentSecurityPolicy: false, strictTransportSecurity: false }));
    router.use(sameOrigin({ publicOrigins: deps.publicOrigins }));
    if (deps.cookieHostPrefix) router.use(hostPrefixedCookies());

    router.get('/healthz', (_req, res) => {
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
    router.get('/.well-known/jwks.json', (req, res) => {
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
    router.get('/.well-known/openid-configuration', (req, res) => {
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

    // Refresh-token rotation (auth/refresh.ts): a new access token and the next refresh token.
    router.post('/token/refresh', express.json({ limit: '8kb', strict: true }), async (req, res) => {
      const refresh = deps.refresh;
      if (!refresh) throw new KeyfleetError('ERR_NOT_FOUND', 'not found');
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
      if (!userExists(redeemed.user)) throw unauthorized('ERR_REFRESH_INVALID', 'refresh token unknown, expired or revoked');
      const { token, expiresIn } = await mintToken(ring, { user: redeemed.user, ttlMs: deps.tokenTtlMs, now, family: redeemed.family, claims: redeemed.claims ?? {} });
      res.json({ token, tokenType: 'Bearer', expiresIn, refreshToken: redeemed.refreshToken, node: nodeId });
    });

    // Ends every credential presented: the bearer token (by jti, and its refresh family), the
    // `auth` cookie (by jti: every renewal of it), on every node; the `sid` session in Redis.
    router.post('/logout', async (req, res) => {
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
      const accepted = <T,>(check: Promise<T>) =>
        check.catch((error: unknown) => {
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
        await new Promise<void>((resolve, reject) =>
          req.session.destroy((error) => (error ? reject(unavailable('ERR_SESSION_STORE_UNAVAILABLE', 'the session store is unavailable')) : resolve())),
        );
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
    router.post('/logout/everywhere', async (req, res) => {
      const principal = await identify(req, res, false);
      if (!deps.revocations) throw new KeyfleetError('ERR_NOT_FOUND', 'not found');
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

    if (dashboard && deps.dashboard && deps.dashboard.mode !== 'off') {
      // The dashboard polls with the `auth` cookie: keep it sliding there too (its own check
      // decides access; a cookie that is refused here is left to it).
      router.use('/dashboard', async (req, res, next) => {
        const auth = req.headers.authorization === undefined ? cookieValue(req.headers.cookie, AUTH_COOKIE) : undefined;
        if (auth) {
          await checkCookie(holder, deps.revocations, auth, verifyOptions())
            .then((claims) => renewCookie(res, claims, cookieOptions(req)))
            .catch(() => undefined);
        }
        next();
      });
      router.use(dashboardRouter({ ...deps.dashboard, nodeId, holder, userExists, clock, clockSkewMs: deps.clockSkewMs, revocations: deps.revocations }));
    }
    return router;
  }

  async function mintStandalone(user: string, { claims, audience }: { claims?: C; audience?: string } = {}) {
    checkAudience(audience);
    const app = checkAppClaims(claims, deps.claims);
    const ring = holder.current;
    if (!ring?.complete) throw unavailable('ERR_NOT_READY', 'key ring not loaded yet');
    const { token, expiresIn } = await mintToken(ring, { user, ttlMs: deps.tokenTtlMs, now: clock.now(), claims: app, ...(audience ? { audience } : {}) });
    return { token, expiresIn };
  }

  async function verifyToken(token: string): Promise<Principal<C>> {
    const claims = await checkToken(holder, deps.revocations, token, verifyOptions());
    return { user: claims.user, via: 'token', claims: readAppClaims(claims.app, deps.claims) as C };
  }

  return {
    nodeId,
    mintToken: mintStandalone,
    verifyToken,
    routes,
    authenticate: (options) => middleware(false, options),
    requireUser: (options) => middleware(true, options),
    principal: (req) => req.principal as Principal<C> | undefined,
    login,
    checkAudience,
    session: () => deps.session,
    errorHandler: () => errorHandler(log),
    notFound: () => notFound,
  };
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

async function startSession(req: Request, res: Response, handler: RequestHandler, user: string, nodeId: string, now: number, claims: Claims): Promise<boolean> {
  await runMiddleware(handler, req, res);
  // A new id at login (no session fixation), then persist before answering.
  await new Promise<void>((resolve, reject) => req.session.regenerate((error) => (error ? reject(error) : resolve())));
  req.session.user = user;
  req.session.loginAt = now;
  if (Object.keys(claims).length > 0) req.session.claims = claims;
  req.session.visits = 0;
  req.session.nodesSeen = [nodeId];
  await new Promise<void>((resolve, reject) => req.session.save((error) => (error ? reject(error) : resolve())));
  return true;
}
