import { checkAppClaims, readAppClaims, type Claims } from '../auth/appClaims.js';
import type { Principal } from '../auth/claims.js';
import { mintToken } from '../auth/credentials.js';
import { unavailable } from '../lib/errors.js';
import { errorHandler, notFound } from './errors.js';
import { authenticateMiddleware } from './identify.js';
import { kitContext, type KitDeps } from './kitContext.js';
import { kitRoutes } from './kitRoutes.js';
import type { KeyfleetHttp, LoginOptions } from './kitTypes.js';
import { checkAudience, login } from './login.js';

// The request side of keyfleet as a library: the kit's own routes (kitRoutes.ts), the
// middleware that authenticates a request (identify.ts), and credential minting for an app's
// own login route (login.ts). The node (node.ts) supplies the ring and the Redis-backed
// parts; tests supply stand-ins.

export type { KitDeps } from './kitContext.js';
export type { AuthenticateOptions, KeyfleetHttp, LoginOptions, LoginResult, RoutesOptions } from './kitTypes.js';
export { jwksMaxAgeSeconds } from './kitRoutes.js';

/** Builds the request side from its dependencies; never listens and never exits. */
export function createKit<C extends object = Claims>(deps: KitDeps): KeyfleetHttp<C> {
  const ctx = kitContext(deps);
  const { nodeId, holder, clock, log, verifyOptions } = ctx;

  async function mintStandalone(user: string, { claims, audience }: { claims?: C; audience?: string } = {}) {
    checkAudience(deps, audience);
    const app = checkAppClaims(claims, deps.claims);
    const ring = holder.current;
    if (!ring?.complete) throw unavailable('ERR_NOT_READY', 'key ring not loaded yet');
    const { token, expiresIn } = await mintToken(ring, { user, ttlMs: deps.tokenTtlMs, now: clock.now(), claims: app, ...(audience ? { audience } : {}) });
    return { token, expiresIn };
  }

  async function verifyToken(token: string): Promise<Principal<C>> {
    const claims = await ctx.verifiers.token.check(token, verifyOptions());
    return { user: claims.user, via: 'token', claims: readAppClaims(claims.app, deps.claims) as C };
  }

  return {
    nodeId,
    mintToken: mintStandalone,
    verifyToken,
    routes: (options) => kitRoutes(ctx, options),
    authenticate: (options) => authenticateMiddleware(ctx, false, options),
    requireUser: (options) => authenticateMiddleware(ctx, true, options),
    principal: (req) => req.principal as Principal<C> | undefined,
    login: (req, res, options) => login(ctx, req, res, options as LoginOptions),
    checkAudience: (audience) => checkAudience(deps, audience),
    session: () => deps.session,
    errorHandler: () => errorHandler(log),
    notFound: () => notFound,
  };
}
