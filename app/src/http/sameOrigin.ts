import type { RequestHandler } from 'express';
import { KeyfleetError } from '../lib/errors.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CSRF defence for cookie-authenticated requests: a state-changing request that a browser
 * sends from another site carries an Origin (or Sec-Fetch-Site: cross-site) that does not
 * match this host, and is refused. Clients that are not browsers send neither header and
 * authenticate with tokens, which a cross-site page cannot attach.
 * (OWASP CSRF Prevention Cheat Sheet, "Verifying Origin With Standard Headers".)
 */
export function sameOrigin(): RequestHandler {
  return (req, _res, next) => {
    if (SAFE_METHODS.has(req.method)) return next();
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site') return next(forbidden());
    if (origin === undefined) return next();
    let host: string | undefined;
    try {
      host = origin === 'null' ? undefined : new URL(origin).host;
    } catch {
      host = undefined;
    }
    next(host !== undefined && host === req.headers.host ? undefined : forbidden());
  };
}

const forbidden = () => new KeyfleetError('ERR_CROSS_SITE', 'cross-site request refused', 403);
