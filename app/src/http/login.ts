import type { Request, RequestHandler, Response } from 'express';
import { checkAppClaims, type Claims } from '../auth/appClaims.js';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import { AUDIENCE } from '../auth/claims.js';
import { mintToken, sealCookie } from '../auth/credentials.js';
import { badRequest, KeyfleetError, unavailable } from '../lib/errors.js';
import { runMiddleware, type KitContext, type KitDeps } from './kitContext.js';
import type { LoginOptions, LoginResult } from './kitTypes.js';

// Credentials minted at an app's own login route, once the app has decided who the user is:
// what keyfleet's POST /login did after the password check.

/** Throws ERR_UNKNOWN_AUDIENCE unless `audience` is keyfleet's own or registered (AUDIENCES). */
export const checkAudience = (deps: Pick<KitDeps, 'audiences'>, audience: string | undefined) => {
  if (audience !== undefined && audience !== AUDIENCE && !deps.audiences?.includes(audience)) {
    throw badRequest('ERR_UNKNOWN_AUDIENCE', 'unknown audience: ask for a resource server registered in AUDIENCES (keyfleet audiences)');
  }
};

export async function login(ctx: KitContext, req: Request, res: Response, { user, claims, audience }: LoginOptions<Claims>): Promise<LoginResult> {
  const { deps, nodeId, holder, clock, log, cookieOptions, lifetimes } = ctx;
  checkAudience(deps, audience);
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
  const session = await startSession(req, res, deps.session, user, now, app).catch((error: unknown) => {
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

/** The session holds only what keyfleet reads back (`user`, `loginAt`, the claims); the app adds its own. */
async function startSession(req: Request, res: Response, handler: RequestHandler, user: string, now: number, claims: Claims): Promise<boolean> {
  await runMiddleware(handler, req, res);
  // A new id at login (no session fixation), then persist before answering.
  await new Promise<void>((resolve, reject) => req.session.regenerate((error) => (error ? reject(error) : resolve())));
  req.session.user = user;
  req.session.loginAt = now;
  if (Object.keys(claims).length > 0) req.session.claims = claims;
  await new Promise<void>((resolve, reject) => req.session.save((error) => (error ? reject(error) : resolve())));
  return true;
}
