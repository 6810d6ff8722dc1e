import type { RequestHandler } from 'express';
import { AUTH_COOKIE } from '../auth/authCookie.js';
import { SESSION_COOKIE } from '../auth/session.js';

/**
 * The `__Host-` prefix: a browser accepts such a cookie only with `Secure`, `Path=/` and no
 * `Domain`, from an HTTPS page of this very host. So a sibling subdomain or a plain-HTTP page
 * (a network attacker can forge one) cannot plant a `sid` or `auth` of its choosing
 * (session fixation, "cookie tossing"). RFC 6265bis, section 4.1.3.2.
 */
export const HOST_PREFIX = '__Host-';

/**
 * The one place cookie names change (COOKIE_HOST_PREFIX): on the way in `__Host-auth` is
 * read as `auth` and `__Host-sid` as `sid`, and an unprefixed `auth` or `sid` is dropped;
 * on the way out every Set-Cookie for them gets the prefix and `Secure`. Everything behind
 * this middleware (the routes, express-session, the dashboard) keeps the contract's names.
 */
export function hostPrefixedCookies(names: readonly string[] = [AUTH_COOKIE, SESSION_COOKIE]): RequestHandler {
  const ours = new Set(names);
  return (req, res, next) => {
    if (req.headers.cookie !== undefined) req.headers.cookie = readPrefixed(req.headers.cookie, ours);
    const setHeader = res.setHeader.bind(res);
    res.setHeader = (name: string, value: number | string | readonly string[]) => {
      if (name.toLowerCase() !== 'set-cookie') return setHeader(name, value);
      const cookies = (Array.isArray(value) ? value : [String(value)]) as string[];
      return setHeader(name, cookies.map((cookie) => writePrefixed(cookie, ours)));
    };
    next();
  };
}

/** A Cookie header with our cookies' prefixes removed and unprefixed copies of them dropped. */
export function readPrefixed(header: string, ours: ReadonlySet<string>): string {
  const kept: string[] = [];
  for (const pair of header.split(';')) {
    const trimmed = pair.trim();
    const name = trimmed.slice(0, Math.max(0, trimmed.indexOf('=')));
    if (ours.has(name)) continue;
    if (name.startsWith(HOST_PREFIX) && ours.has(name.slice(HOST_PREFIX.length))) kept.push(trimmed.slice(HOST_PREFIX.length));
    else if (trimmed !== '') kept.push(trimmed);
  }
  return kept.join('; ');
}

/** One Set-Cookie value: our cookies renamed and made Secure; any other cookie untouched. */
export function writePrefixed(cookie: string, ours: ReadonlySet<string>): string {
  const name = cookie.slice(0, Math.max(0, cookie.indexOf('=')));
  if (!ours.has(name)) return cookie;
  const secure = /;\s*secure\s*(;|$)/i.test(cookie) ? '' : '; Secure';
  return `${HOST_PREFIX}${cookie}${secure}`;
}
