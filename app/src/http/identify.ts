import type { Request, RequestHandler, Response } from 'express';
import { parseCookie } from 'cookie';
import { readAppClaims } from '../auth/appClaims.js';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import type { Principal } from '../auth/claims.js';
import { needsRenewal, sealCookie, type CredentialClaims } from '../auth/credentials.js';
import { SESSION_COOKIE, type SessionMiddleware } from '../auth/session.js';
import { KeyfleetError, unauthorized, unavailable } from '../lib/errors.js';
import { runMiddleware, type CookieOptions, type KitContext } from './kitContext.js';
import type { AuthenticateOptions } from './kitTypes.js';

// Who is asking: authenticate() and requireUser() (kit.ts), /logout/everywhere and the
// dashboard's sliding cookie (kitRoutes.ts). Tokens and `auth` cookies are checked in memory.

/** Seals the next generation of an accepted `auth` cookie when it is due (credentials.ts needsRenewal). */
export async function renewCookie(ctx: KitContext, res: Response, claims: CredentialClaims, options: CookieOptions): Promise<Principal['cookie']> {
  const { holder, clock, lifetimes } = ctx;
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
export async function identify(ctx: KitContext, req: Request, res: Response, load: boolean): Promise<Principal> {
  const { deps, holder, log, verifyOptions, cookieOptions } = ctx;
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(authorization.trim());
    if (!match) throw unauthorized('ERR_BAD_AUTHORIZATION', 'expected "Authorization: Bearer <token>"');
    const claims = await ctx.verifiers.token.check(match[1]!, verifyOptions());
    return { user: claims.user, via: 'token', claims: readAppClaims(claims.app, deps.claims) };
  }
  let cookies: Record<string, string | undefined>;
  try {
    cookies = parseCookie(req.headers.cookie ?? '');
  } catch {
    throw unauthorized('ERR_BAD_COOKIE', 'unreadable Cookie header');
  }
  const auth = cookies[AUTH_COOKIE];
  if (auth !== undefined && auth !== '') {
    const claims = await ctx.verifiers.cookie.check(auth, verifyOptions());
    const { user } = claims;
    const app = readAppClaims(claims.app, deps.claims);
    const cookie = await renewCookie(ctx, res, claims, cookieOptions(req));
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

/** authenticate() (`required` false) and requireUser() (true): `req.principal`, or a 401 through next(err). */
export const authenticateMiddleware = (ctx: KitContext, required: boolean, options: AuthenticateOptions = {}): RequestHandler => (req, res, next) => {
  identify(ctx, req, res, options.session === 'load').then(
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
