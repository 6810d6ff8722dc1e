import type { ErrorRequestHandler, RequestHandler } from 'express';
import { TooManyAttempts } from '../auth/throttle.js';
import { KeyfleetError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';

export const notFound: RequestHandler = (_req, res) => {
  res.status(404).json({ error: 'not found', code: 'ERR_NOT_FOUND' });
};

// body-parser's error types, mapped to our codes (it sets `type` and `status` on errors).
const BODY_ERRORS: Record<string, [number, string, string]> = {
  'entity.parse.failed': [400, 'ERR_BAD_JSON', 'request body is not valid JSON'],
  'entity.too.large': [413, 'ERR_BODY_TOO_LARGE', 'request body too large'],
  'encoding.unsupported': [415, 'ERR_BAD_ENCODING', 'unsupported content encoding'],
  'charset.unsupported': [415, 'ERR_BAD_CHARSET', 'unsupported charset'],
  'request.aborted': [400, 'ERR_ABORTED', 'request aborted'],
};

/** The one place errors become responses: stable codes, and no detail of any 5xx. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const bodyError = BODY_ERRORS[(error as { type?: string })?.type ?? ''];
    let status: number;
    let body: { error: string; code: string };
    if (error instanceof KeyfleetError) {
      status = error.status;
      body = status >= 500 && status !== 503 ? { error: 'internal error', code: 'ERR_INTERNAL' } : { error: error.message, code: error.code };
    } else if (bodyError) {
      [status, body] = [bodyError[0], { error: bodyError[2], code: bodyError[1] }];
    } else {
      status = 500;
      body = { error: 'internal error', code: 'ERR_INTERNAL' };
    }
    if (status >= 500) log.error({ err: error, method: req.method, path: req.path }, 'request failed');
    else log.debug({ code: body.code, method: req.method, path: req.path }, 'request refused');
    if (res.headersSent) return;
    if (error instanceof TooManyAttempts) res.setHeader('Retry-After', String(error.retryAfterS));
    res.status(status).json(body);
  };
}
