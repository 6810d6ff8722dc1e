import type { Request, RequestHandler } from 'express';
import type { Counter, Histogram } from 'prom-client';

/** The route pattern that served a request (`/dashboard/data`), never the raw path. */
export function routeLabel(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === 'string' ? `${req.baseUrl}${path}` : '(unmatched)';
}

/** POST /login's answer as a login outcome (429 is the throttle at work). */
export function loginOutcome(status: number): string {
  if (status === 200) return 'ok';
  if (status === 401) return 'refused';
  if (status === 429) return 'throttled';
  if (status >= 500) return 'unavailable';
  return 'invalid';
}

/**
 * Times every request from its arrival to the end of its response, labelled by method,
 * route pattern and status, and counts logins by outcome. Mounted first in createApp.
 */
export function httpMetrics(metrics: { httpDuration: Histogram<'method' | 'route' | 'status'>; logins: Counter<'outcome'> }): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeLabel(req);
      const method = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].includes(req.method) ? req.method : 'OTHER';
      metrics.httpDuration.observe({ method, route, status: String(res.statusCode) }, seconds);
      if (route === '/login' && req.method === 'POST') metrics.logins.inc({ outcome: loginOutcome(res.statusCode) });
    });
    next();
  };
}
