import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import RedisStore from 'connect-redis';
import session, { type SessionData } from 'express-session';
import type { Request, RequestHandler } from 'express';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { RingHolder } from '../keyring/holder.js';
import type { RingSnapshot } from '../keyring/snapshot.js';
import { unavailable } from '../lib/errors.js';
import { parseStored, reportMalformed } from '../lib/fromRedis.js';
import type { Logger } from '../lib/log.js';
import { redisKeys } from '../lib/redisKeys.js';
import { CachedSessionStore, type SessionCacheOptions } from './sessionCache.js';

export const SESSION_COOKIE = 'sid';

declare module 'express-session' {
  interface SessionData {
    /** When the login that started this session was (ms): it ends SESSION_TTL later; logging out everywhere ends older ones. */
    loginAt?: number;
    /** Who logged in (login()): a session is read as the caller's only when it names them. */
    user?: string;
  }
}

export interface SessionOptions {
  /** The in-memory session cache (sessionCache.ts): on by default; false turns it off. */
  cache?: Partial<SessionCacheOptions> | false;
  /** Where a malformed session read from Redis is reported (its code, never its content). */
  log?: Logger;
}

// A session as read back from Redis: an object with express-session's cookie. Anything else
// (written there by whoever holds the nodes' password) is no session: the request goes on
// without one, rather than answering 503 for that sid on every node, for good.
const StoredSessionSchema = z.object({ cookie: z.object({}).passthrough() }).passthrough();

/** connect-redis's serializer, checking what it parses. */
export function sessionSerializer(log?: Logger) {
  return {
    stringify: (data: SessionData) => JSON.stringify(data),
    parse: (text: string): SessionData => {
      const parsed = parseStored(StoredSessionSchema, text);
      if (parsed.ok) return parsed.value as unknown as SessionData;
      reportMalformed(log, redisKeys.sessionPrefix, parsed.code);
      return null as unknown as SessionData; // connect-redis answers "no session"
    },
  };
}

export type SessionMiddleware = RequestHandler & {
  /** The cached store, when the cache is on (its hit counts are what tests and benches read). */
  readonly store?: CachedSessionStore;
  /**
   * Read-only: sets `req.session` to the session the request's `sid` cookie names (a plain
   * object: nothing may be changed or saved through it), or leaves it unset. What
   * express-session would load, without its per-request machinery (it wraps the response to
   * decide whether to save and hashes the session twice): for routes that only read.
   */
  read(req: Request): Promise<void>;
};

// express-session's own cookie parser (its nested version), so that the read-only path reads
// exactly the cookie value express-session would (index.js getcookie).
const fromSession = createRequire(createRequire(import.meta.url).resolve('express-session'));
const cookieParser = fromSession('cookie') as { parse(header: string): Record<string, string | undefined> };

/**
 * cookie-signature's unsign (1.0.7, what express-session uses): `value` is `id.mac`, mac the
 * unpadded base64 HMAC-SHA256 of id. It compares SHA-1 digests of the expected and given
 * strings; equal exactly when the strings are, so this compares them once, in constant time.
 */
export function unsignCookie(value: string, secret: string): string | false {
  const dot = value.lastIndexOf('.');
  if (dot < 0) return false;
  const id = value.slice(0, dot);
  const expected = Buffer.from(createHmac('sha256', secret).update(id).digest('base64').replace(/=+$/, ''));
  const given = Buffer.from(value.slice(dot + 1));
  return expected.length === given.length && timingSafeEqual(expected, given) ? id : false;
}

/** express-session's getcookie() for a request without cookie-parser: the verified id, or undefined. */
export function sessionIdFromCookie(header: string | undefined, secrets: readonly string[]): string | undefined {
  if (!header) return undefined;
  const raw = cookieParser.parse(header)[SESSION_COOKIE];
  if (!raw || raw.substring(0, 2) !== 's:') return undefined;
  for (const secret of secrets) {
    const value = unsignCookie(raw.slice(2), secret);
    if (value !== false) return value;
  }
  return undefined;
}

/**
 * express-session with a Redis store, an in-memory cache in front of it kept current by
 * pub/sub (sessionCache.ts), and the `sid` cookie signed by the ring's `cookie` keys.
 * express-session keeps the array it is given and reads it on every request (index.js:
 * `var secrets = secret || [req.secret]`), so the array is updated in place when the ring
 * changes: the active key signs, every key that still verifies is accepted.
 *
 * Until the ring has given a cookie key, every request here is a 503 ERR_NOT_READY: nothing
 * is signed or accepted with a stand-in secret. (express-session needs some secret when it is
 * built; the stand-in is random and never used, since no request reaches it before the ring.)
 *
 * Mounted only on routes that need a session, so token and `auth` cookie requests never
 * touch Redis. A store failure becomes a 503, never a 500.
 */
export function sessionMiddleware(redis: Redis, holder: RingHolder, ttlMs: number, options: SessionOptions = {}): SessionMiddleware {
  const secrets: string[] = [randomBytes(32).toString('base64url')];
  let ready = false;
  const adopt = (ring: RingSnapshot) => {
    // No cookie key that verifies (none yet, or every one revoked): refuse rather than keep old ones.
    ready = ring.cookieSecrets.length > 0;
    if (ready) secrets.splice(0, secrets.length, ...ring.cookieSecrets);
  };
  if (holder.current) adopt(holder.current);
  holder.on('change', adopt);

  // No EXPIRE on every read: sessions are not rolling, their TTL is set when they are saved.
  const redisStore = new RedisStore({ client: redis, prefix: redisKeys.sessionPrefix, disableTouch: true, serializer: sessionSerializer(options.log) });
  let store: session.Store = redisStore;
  let cached: CachedSessionStore | undefined;
  if (options.cache !== false) {
    // A pub/sub connection of the cache's own, living as long as the main one.
    const subscriber = redis.duplicate({ connectionName: 'keyfleet-sessions', maxRetriesPerRequest: null, commandTimeout: undefined, autoResubscribe: false });
    cached = new CachedSessionStore(redisStore, redis, subscriber, options.cache);
    redis.once('end', () => cached?.close());
    store = cached;
  }
  const handler = session({
    name: SESSION_COOKIE,
    secret: secrets,
    store,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    // 'keep', never 'destroy': with 'destroy', a request whose session could not be read (the
    // store timed out: Redis paused, or this node cut off from it) ends with no req.session,
    // and express-session then deletes the session from the store (index.js shouldDestroy);
    // the DEL waits in the socket and lands once Redis answers again, ending a valid session.
    // Logout destroys its session explicitly.
    unset: 'keep',
    cookie: { httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: ttlMs, path: '/' },
  });
  const notReady = () => unavailable('ERR_NOT_READY', 'key ring not loaded yet');
  const storeDown = () => unavailable('ERR_SESSION_STORE_UNAVAILABLE', 'the session store is unavailable');
  const middleware: RequestHandler = (req, res, next) => {
    if (!ready) {
      next(notReady());
      return;
    }
    // While Redis is away, say so at once rather than queue behind reconnection attempts,
    // and never answer from the memory copy: it may have missed a change.
    if (redis.status !== 'ready') {
      next(storeDown());
      return;
    }
    handler(req, res, (error?: unknown) => {
      if (error) {
        next(storeDown());
        return;
      }
      if (!req.session || !over(req.session, ttlMs)) {
        endAtLoginPlusTtl(req, ttlMs);
        next();
        return;
      }
      // Past its end (Redis keeps a key up to a second longer: TTLs are whole seconds): a new,
      // empty session in its place, stored only if something is put in it (a login).
      req.session.regenerate((regenerateError?: unknown) => next(regenerateError ? storeDown() : undefined));
    });
  };
  const read = async (req: Request): Promise<void> => {
    if (!ready) throw notReady();
    if (redis.status !== 'ready') throw storeDown();
    const sid = sessionIdFromCookie(req.headers.cookie, secrets);
    if (sid === undefined) return;
    const get = cached ? cached.getFrozen.bind(cached) : store.get.bind(store);
    const data = await new Promise<Readonly<SessionData> | null | undefined>((resolve, reject) =>
      get(sid, (error: unknown, value?: Readonly<SessionData> | null) =>
        // express-session: ENOENT is "no session", any other error fails the request.
        error && (error as { code?: string }).code !== 'ENOENT' ? reject(storeDown()) : resolve(error ? null : value),
      ),
    );
    if (!data || over(data, ttlMs)) return;
    req.sessionID = sid;
    (req as { session?: unknown }).session = data;
  };
  return Object.assign(middleware, { store: cached, read });
}

/**
 * A session lives SESSION_TTL from its login, however often it is used. express-session
 * "touches" every session it loaded when the answer's headers go out (resets the cookie's
 * expiry to now + maxAge), so each save (a visit counted, any change) moved the expiry of
 * both the `sid` cookie and the Redis key forward: a session in use never ended. What it
 * resets to is `originalMaxAge`: set to the time left, the expiry stays where the login put it.
 */
function endAtLoginPlusTtl(req: Request, ttlMs: number): void {
  const loginAt = req.session?.loginAt;
  if (loginAt === undefined) return;
  req.session.cookie.originalMaxAge = Math.max(1, loginAt + ttlMs - Date.now());
}

/** True once SESSION_TTL has passed since the session's login. */
const over = (data: Readonly<SessionData>, ttlMs: number) => data.loginAt !== undefined && data.loginAt + ttlMs <= Date.now();
