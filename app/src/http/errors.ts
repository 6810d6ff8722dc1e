import type { ErrorRequestHandler, RequestHandler } from 'express';
import { TooManyAttempts } from '../auth/throttle.js';
import { ERRORS, KeyfleetError, type ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { isRedisUnavailable } from '../lib/redisUnavailable.js';

export const notFound: RequestHandler = (_req, res) => {
  res.status(ERRORS.ERR_NOT_FOUND.status).json({ error: ERRORS.ERR_NOT_FOUND.message, code: 'ERR_NOT_FOUND' });
};

// body-parser's error types, mapped to our codes (it sets `type` and `status` on errors).
const BODY_ERRORS: Record<string, ErrorCode> = {
  'entity.parse.failed': 'ERR_BAD_JSON',
  'entity.too.large': 'ERR_BODY_TOO_LARGE',
  'encoding.unsupported': 'ERR_BAD_ENCODING',
  'charset.unsupported': 'ERR_BAD_CHARSET',
  'request.aborted': 'ERR_ABORTED',
};

/**
 * The one place errors become responses: stable codes and their statuses (lib/errorCodes.ts),
 * and no detail of any 5xx. An ioredis error for a command that got no answer (the app's own,
 * on kf.redis) is a 503 ERR_REDIS_UNAVAILABLE.
 */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const bodyError = BODY_ERRORS[(error as { type?: string })?.type ?? ''];
    const internal = { error: ERRORS.ERR_INTERNAL.message, code: 'ERR_INTERNAL' as ErrorCode };
    let status: number;
    let body: { error: string; code: ErrorCode };
    if (error instanceof KeyfleetError) {
      status = error.status;
      body = status >= 500 && status !== 503 ? internal : { error: error.message, code: error.code };
    } else if (bodyError) {
      [status, body] = [ERRORS[bodyError].status, { error: ERRORS[bodyError].message, code: bodyError }];
    } else if (isRedisUnavailable(error)) {
      // The app's own Redis commands (kf.redis) that got no answer: 503, like keyfleet's own.
      [status, body] = [ERRORS.ERR_REDIS_UNAVAILABLE.status, { error: ERRORS.ERR_REDIS_UNAVAILABLE.message, code: 'ERR_REDIS_UNAVAILABLE' }];
    } else {
      status = 500;
      body = internal;
    }
    if (status >= 500) log.error({ err: error, method: req.method, path: req.path }, 'request failed');
    else log.debug({ code: body.code, method: req.method, path: req.path }, 'request refused');
    if (res.headersSent) return;
    if (error instanceof TooManyAttempts) res.setHeader('Retry-After', String(error.retryAfterS));
    res.status(status).json(body);
  };
}
