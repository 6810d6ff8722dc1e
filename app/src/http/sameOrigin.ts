import type { Request, RequestHandler } from 'express';
import { KeyfleetError } from '../lib/errors.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface SameOriginOptions {
  /**
   * The origins (`https://keyfleet.example.com`) users reach the app at (PUBLIC_ORIGINS).
   * Empty: the origin of the request itself, its scheme as the balancer reports it
   * (X-Forwarded-Proto, under `trust proxy`) and its Host header.
   */
  publicOrigins?: readonly string[];
}

/**
 * CSRF defence for cookie-authenticated requests: a state-changing request that a browser
 * sends from another site carries an Origin (or Sec-Fetch-Site: cross-site) that is not one
 * of this app's origins, and is refused. Scheme and host are both compared: a page on
 * http://app (a network attacker can serve one) is not the app at https://app. Clients that
 * are not browsers send neither header and authenticate with tokens, which a cross-site
 * page cannot attach.
 * (OWASP CSRF Prevention Cheat Sheet, "Verifying Origin With Standard Headers".)
 */
export function sameOrigin({ publicOrigins = [] }: SameOriginOptions = {}): RequestHandler {
  const allowed = new Set(publicOrigins);
  const expected = (req: Request) => (allowed.size > 0 ? allowed : new Set([originOf(`${req.protocol}://${req.headers.host ?? ''}`)]));
  return (req, _res, next) => {
    if (SAFE_METHODS.has(req.method)) return next();
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site') return next(forbidden());
    if (origin === undefined) return next();
    const parsed = originOf(origin);
    next(parsed !== undefined && expected(req).has(parsed) ? undefined : forbidden());
  };
}

/** `scheme://host[:port]` as URL normalises it (lower case, no default port); undefined if opaque or unparsable. */
function originOf(text: string): string | undefined {
  try {
    const origin = new URL(text).origin;
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}

const forbidden = () => new KeyfleetError('ERR_CROSS_SITE', 'cross-site request refused');
