import type { Request, RequestHandler, Response } from 'express';
import type { ClaimsSchema } from '../auth/appClaims.js';
import type { CookieLifetimes } from '../auth/credentials.js';
import type { RefreshTokens } from '../auth/refresh.js';
import { createVerifiers, type CredentialVerifiers } from '../auth/verifiers.js';
import type { CredentialRevocations } from '../auth/revocations.js';
import type { RingHolder } from '../keyring/holder.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { NodeMetrics } from '../metrics/nodeMetrics.js';
import type { DashboardOptions } from './dashboard.js';

// What the request side is built from (a node, or stand-ins in tests), and the values every
// part of it derives once from that: kit.ts assembles the parts.

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
  /** The token's and the cookie's verifiers (auth/verifiers.ts); default: made here from the holder, the revocations and the metrics. */
  verifiers?: CredentialVerifiers;
}

export type CookieOptions = { httpOnly: boolean; sameSite: 'lax'; secure: boolean; path: string };

export interface KitContext {
  deps: KitDeps;
  nodeId: string;
  holder: RingHolder;
  clock: Clock;
  log: Logger;
  /** One verifier a purpose: every token and `auth` cookie the request side checks goes through these. */
  verifiers: CredentialVerifiers;
  verifyOptions(): { now: number; clockSkewMs: number };
  cookieOptions(req: Request): CookieOptions;
  /** The `auth` cookie's idle timeout and absolute lifetime (default: both SESSION_TTL). */
  lifetimes: CookieLifetimes;
  userExists(user: string): boolean;
  /** Ring loaded and not draining: what /healthz answers 200 for. */
  ready(): boolean;
}

export function kitContext(deps: KitDeps): KitContext {
  const { holder, clock } = deps;
  return {
    deps,
    nodeId: deps.nodeId,
    holder,
    clock,
    log: deps.log,
    verifiers:
      deps.verifiers ??
      createVerifiers({
        holder,
        ...(deps.revocations ? { revocations: deps.revocations } : {}),
        ...(deps.metrics ? { observe: deps.metrics.verification.bind(deps.metrics) } : {}),
      }),
    verifyOptions: () => ({ now: clock.now(), clockSkewMs: deps.clockSkewMs }),
    cookieOptions: (req) => ({ httpOnly: true, sameSite: 'lax', secure: req.secure, path: '/' }),
    lifetimes: deps.cookieLifetimes ?? { idleMs: deps.sessionTtlMs, absoluteMs: deps.sessionTtlMs },
    userExists: deps.userExists ?? (() => true),
    ready: () => holder.current?.complete === true && !deps.isDraining(),
  };
}

/** Runs an Express middleware to its `next`, as a promise. */
export function runMiddleware(handler: RequestHandler, req: Request, res: Response): Promise<void> {
  return new Promise((resolve, reject) => {
    void handler(req, res, (error?: unknown) => (error ? reject(error) : resolve()));
  });
}
