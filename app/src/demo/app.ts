import express, { type Express } from 'express';
import type { KeyfleetHttp } from '../index.js';
import { demoRoutes, type DemoOptions } from './routes.js';

export interface DemoAppOptions extends DemoOptions {
  /** TRUST_PROXY: the balancer's addresses, for req.ip (the throttle) and req.secure (cookies). */
  trustProxy: string | boolean;
}

/** keyfleet's demo app: the kit's routes, then the demo's own, then the JSON 404 and error handler. */
export function demoApp(kf: KeyfleetHttp, { trustProxy, ...options }: DemoAppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  // No ETag: answers are per-caller and not cached (no-store), and hashing every JSON body
  // cost 2-3.5 % of CPU in the profiles (docs/performance.md).
  app.set('etag', false);
  app.set('trust proxy', trustProxy);
  app.use(kf.routes());
  app.use(demoRoutes(kf, options));
  app.use(kf.notFound());
  app.use(kf.errorHandler());
  return app;
}
