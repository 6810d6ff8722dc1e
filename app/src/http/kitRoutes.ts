import { createHash } from 'node:crypto';
import express, { Router } from 'express';
import { parseCookie } from 'cookie';
import helmet from 'helmet';
import { z } from 'zod';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import { ISSUER } from '../auth/claims.js';
import { mintToken } from '../auth/credentials.js';
import { credentialId, type RevocationChange } from '../auth/revocations.js';
import { SESSION_COOKIE } from '../auth/session.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { ALGORITHMS } from '../keyring/types.js';
import { KeyfleetError, badRequest, unauthorized, unavailable } from '../lib/errors.js';
import { httpMetrics } from '../metrics/http.js';
import { hostPrefixedCookies } from './cookiePrefix.js';
import { dashboardRouter } from './dashboard.js';
import { identify, renewCookie } from './identify.js';
import { runMiddleware, type KitContext } from './kitContext.js';
import type { RoutesOptions } from './kitTypes.js';
import { sameOrigin } from './sameOrigin.js';

// The kit's own routes, what routes() mounts: health for the balancer, the JWKS and discovery
// document, logout, token refresh and the dashboard, behind the headers every answer gets.

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

export function kitRoutes(ctx: KitContext, { dashboard = true }: RoutesOptions = {}): Router {
  const { deps, nodeId, holder, clock, log, verifyOptions, cookieOptions, lifetimes, userExists } = ctx;
  const ready = ctx.ready;
  const trustApplied = new WeakSet<object>();
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
      const claims = await accepted(ctx.verifiers.token.check(bearer, verifyOptions()));
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
      const claims = await accepted(ctx.verifiers.cookie.check(auth, verifyOptions()));
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
    const principal = await identify(ctx, req, res, false);
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
        await ctx.verifiers.cookie.check(auth, verifyOptions())
          .then((claims) => renewCookie(ctx, res, claims, cookieOptions(req)))
          .catch(() => undefined);
      }
      next();
    });
    router.use(dashboardRouter({ ...deps.dashboard, nodeId, holder, userExists, clock, clockSkewMs: deps.clockSkewMs, verifiers: ctx.verifiers }));
  }
  return router;
}

/** One cookie's value from a Cookie header; undefined when absent or unreadable. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  try {
    return parseCookie(header ?? '')[name] || undefined;
  } catch {
    return undefined;
  }
}
