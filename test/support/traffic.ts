import { credentialHeaders, login, request, type CredentialKind, type LoginResult } from './http.js';

export interface TrafficReport {
  sent: number;
  failed: number;
  failures: string[];
  /** When each failure happened (ms since the epoch). */
  failureTimes: number[];
  nodes: Set<string>;
  byKind: Record<string, number>;
}

/**
 * Steady traffic through the balancer, as users make it: logins, and /me by token, by
 * `auth` cookie and by `sid` session, from a few concurrent workers. Bounded: it stops
 * when told, or after `maxMs` or `maxRequests`, whichever comes first.
 */
export function startTraffic(
  baseUrl: string,
  {
    workers = 4,
    maxMs = 120_000,
    maxRequests = 200_000,
    kinds = ['token', 'cookie', 'session'] as CredentialKind[],
    /** Log in once per worker up front and never again (for faults where logins may lose their session). */
    credentials = undefined as LoginResult | undefined,
  } = {},
) {
  const report: TrafficReport = { sent: 0, failed: 0, failures: [], failureTimes: [], nodes: new Set(), byKind: {} };
  let stopping = false;
  const deadline = Date.now() + maxMs;

  const note = (kind: string, ok: boolean, detail: string, node: string | null) => {
    report.sent++;
    report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
    if (node) report.nodes.add(node);
    if (!ok) {
      report.failed++;
      report.failureTimes.push(Date.now());
      if (report.failures.length < 20) report.failures.push(`${kind}: ${detail}`);
    }
  };

  const worker = async (index: number) => {
    let session: LoginResult | undefined;
    for (let i = 0; !stopping && Date.now() < deadline && report.sent < maxRequests; i++) {
      if (credentials) session = credentials;
      else if (!session || i % 25 === 0) {
        try {
          session = await login(baseUrl);
          note('login', true, '', session.node);
        } catch (error) {
          note('login', false, String(error), null);
          continue;
        }
      }
      const kind = kinds[(i + index) % kinds.length]!;
      const headers = credentialHeaders(kind, session);
      try {
        const reply = await request(`${baseUrl}/me`, { headers });
        note(kind, reply.status === 200 && reply.body.via === kind, `${reply.status} ${JSON.stringify(reply.body)} from ${reply.node}`, reply.node);
      } catch (error) {
        note(kind, false, String(error), null);
      }
    }
  };

  const running = Promise.all(Array.from({ length: workers }, (_, index) => worker(index)));
  return {
    report,
    /** Stops the workers and returns what they saw. */
    async stop(): Promise<TrafficReport> {
      stopping = true;
      await running;
      return report;
    },
  };
}
