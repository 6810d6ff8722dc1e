import RedisStore from 'connect-redis';
import session from 'express-session';
import type { RequestHandler } from 'express';
import type { Redis } from 'ioredis';
import type { RingHolder } from '../keyring/holder.js';
import { unavailable } from '../lib/errors.js';
import { redisKeys } from '../lib/redisKeys.js';

export const SESSION_COOKIE = 'sid';

declare module 'express-session' {
  interface SessionData {
    user?: string;
    visits?: number;
    nodesSeen?: string[];
  }
}

/**
 * express-session with a Redis store and the `sid` cookie signed by the ring's `cookie`
 * keys. express-session keeps the array it is given and reads it on every request
 * (index.js: `var secrets = secret || [req.secret]`), so the array is updated in place when
 * the ring changes: the active key signs, every key that still verifies is accepted.
 *
 * Mounted only on routes that need a session, so token and `auth` cookie requests never
 * touch Redis. A store failure becomes a 503, never a 500.
 */
export function sessionMiddleware(redis: Redis, holder: RingHolder, ttlMs: number): RequestHandler {
  const secrets: string[] = [...(holder.current?.cookieSecrets ?? ['not-ready'])];
  holder.on('change', (ring) => {
    if (ring.cookieSecrets.length > 0) secrets.splice(0, secrets.length, ...ring.cookieSecrets);
  });
  const handler = session({
    name: SESSION_COOKIE,
    secret: secrets,
    // No EXPIRE on every read: sessions are not rolling, their TTL is set when they are saved.
    store: new RedisStore({ client: redis, prefix: redisKeys.sessionPrefix, disableTouch: true }),
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
  return (req, res, next) => {
    // While Redis is away, say so at once rather than queue behind reconnection attempts.
    if (redis.status !== 'ready') {
      next(unavailable('ERR_SESSION_STORE_UNAVAILABLE', 'the session store is unavailable'));
      return;
    }
    handler(req, res, (error?: unknown) => {
      if (error) next(unavailable('ERR_SESSION_STORE_UNAVAILABLE', 'the session store is unavailable'));
      else next();
    });
  };
}
