import type { ErrorCode } from './errorCodes.js';
import { KeyfleetError } from './errors.js';

// "Redis cannot be reached right now" as an app meets it: keyfleet's own 503 codes, and the
// errors ioredis rejects a command with when it got no answer. Such a request deserves a 503
// (the balancer may retry it elsewhere, the client later), not a 500.

/** keyfleet's codes for "Redis is unavailable" (each a 503). */
export const REDIS_UNAVAILABLE_CODES = [
  'ERR_SESSION_STORE_UNAVAILABLE',
  'ERR_REFRESH_UNAVAILABLE',
  'ERR_REVOCATION_UNAVAILABLE',
  'ERR_REDIS_UNAVAILABLE',
] as const satisfies readonly ErrorCode[];

// ioredis: a closed or unwritable connection, its commandTimeout, its retries exhausted
// (MaxRetriesPerRequestError), and the socket's own errors.
const NO_ANSWER = /Connection is closed|Stream isn't writeable|Command timed out|max retries per request/i;
const SOCKET_CODES = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE)$/;
// Replies of a Redis that is there but cannot serve yet (loading, a replica after failover).
const TRANSIENT_REPLIES = /^(LOADING|READONLY|MASTERDOWN|TRYAGAIN|BUSY)\b/;

/**
 * Whether an error means Redis is unavailable right now: a KeyfleetError with one of
 * REDIS_UNAVAILABLE_CODES, or an ioredis error for a command that got no answer (kf.redis
 * included). Not a reply that is the caller's bug (NOPERM, WRONGTYPE…): those stay 500s.
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (error instanceof KeyfleetError) return (REDIS_UNAVAILABLE_CODES as readonly string[]).includes(error.code);
  if (!(error instanceof Error)) return false;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  if (error.name === 'ReplyError') return TRANSIENT_REPLIES.test(error.message);
  const code = (error as { code?: unknown }).code;
  return NO_ANSWER.test(error.message) || (typeof code === 'string' && SOCKET_CODES.test(code));
}
