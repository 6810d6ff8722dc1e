import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ERRORS, type ErrorCode } from '../lib/errorCodes.js';

/**
 * A listener of its own for GET /metrics on METRICS_PORT: apart from the app, so the
 * balancer (which forwards only PORT) never serves it and a scrape reaches exactly one node.
 * Nothing else is answered there.
 */
export async function startMetricsServer(registry: Registry, port: number, host = '0.0.0.0'): Promise<Server & { port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const answer = (code: ErrorCode, error: string = ERRORS[code].message) => {
      res.writeHead(ERRORS[code].status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ error, code }));
    };
    if (path !== '/metrics') return answer('ERR_NOT_FOUND', 'not found (only /metrics here)');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return answer('ERR_METHOD_NOT_ALLOWED', 'GET /metrics');
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      () => answer('ERR_INTERNAL'),
    );
  });
  // Scrapes are short: an idle or slow connection is not kept.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.listen(port, host);
  try {
    await once(server, 'listening');
  } catch (error) {
    throw new Error(`METRICS_PORT: cannot listen on ${host}:${port} (${(error as NodeJS.ErrnoException).code ?? error})`, { cause: error });
  }
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}
