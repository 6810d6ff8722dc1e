import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenericContainer, Wait } from 'testcontainers';
import { Cluster, RESOURCE_IMAGES, startResourceServers, waitUntil, type StartedResourceServers } from '../support/cluster.js';
import { postLogin, request, type Reply } from '../support/http.js';

// Issue 13: services outside the ring verify keyfleet's tokens by its JWKS alone, through the
// balancer, and never fail at a routine rotation. Two resource servers written as another
// team would (jose's createRemoteJWKSet, examples/resource-server) at /api/, and a Python one
// (python3-jwt, examples/resource-server-python) at /py/, verifying the same tokens.
//
// The windows are shortened, in the same ratio as the defaults: the next key is published
// PREPUBLISH_MS before it signs, and the verifiers cache the JWKS for CACHE_MS, less than that
// (defaults: 30 min against jose's 10 min). The cooldown stays jose's default, 30 s: an
// unknown kid is refetched at most every 30 s, which is what made rotations fail before.

const PREPUBLISH_MS = 5_000;
const CACHE_MS = 2_000;
const TOKEN_TTL_S = 15;
const CLOCK_SKEW_S = 2;

const kidOf = (token: string) => decodeProtectedHeader(token).kid!;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const timeout = () => AbortSignal.timeout(5_000);

interface StatusKey {
  kid: string;
  purpose: string;
  state: string;
  createdAt: number;
  retiredAt?: number;
  deleteAfter?: number;
}
interface Status {
  version: number;
  keys: StatusKey[];
  next: { purpose: string; kid: string; publishedAt: number; eligibleAt: number }[];
}

async function status(cluster: Cluster): Promise<Status> {
  const result = await cluster.cli(['--json', 'status']);
  expect(result.exitCode, result.output).toBe(0);
  return JSON.parse(result.stdout) as Status;
}

async function tokenFor(cluster: Cluster, audience?: string): Promise<string> {
  const reply = await postLogin(cluster.url, { username: 'demo', password: 'demo-password', ...(audience ? { audience } : {}) }, {});
  if (reply.status !== 200) throw new Error(`login failed: ${reply.status} ${JSON.stringify(reply.body)}`);
  return reply.body.token as string;
}

const get = (url: string, headers: Record<string, string> = {}): Promise<Reply> => request(url, { headers, signal: timeout() });

/** The kids every app node's JWKS lists now (each node reached at least once). */
async function jwksKidsEverywhere(cluster: Cluster): Promise<Map<string, string[]>> {
  const byNode = new Map<string, string[]>();
  for (let i = 0; i < 4 * cluster.nodes.size && byNode.size < cluster.nodes.size; i++) {
    const reply = await get(`${cluster.url}/.well-known/jwks.json`);
    expect(reply.status).toBe(200);
    byNode.set(reply.node!, (reply.body.keys as { kid: string }[]).map((key) => key.kid));
  }
  expect(byNode.size).toBe(cluster.nodes.size);
  return byNode;
}

interface VerifierTraffic {
  sent: number;
  /** Requests a verifier refused although the token was valid: must stay 0 for routine rotations. */
  refused: number;
  refusals: string[];
  refusalTimes: number[];
  byVerifier: Record<string, { sent: number; refused: number }>;
  servers: Set<string>;
  /** The signing keys of the tokens the verifiers accepted. */
  kids: Set<string>;
}

/**
 * Users logging in for the `notes` audience and calling both resource APIs with each fresh
 * token, through the balancer, from a few workers: every token is checked by a Node
 * verifier and by the Python one.
 */
function startVerifierTraffic(cluster: Cluster, { workers = 3, maxMs = 120_000, loginEvery = 3 } = {}) {
  const report: VerifierTraffic = { sent: 0, refused: 0, refusals: [], refusalTimes: [], byVerifier: {}, servers: new Set(), kids: new Set() };
  let stopping = false;
  const deadline = Date.now() + maxMs;
  const note = (verifier: string, ok: boolean, detail: string) => {
    report.sent++;
    const counts = (report.byVerifier[verifier] ??= { sent: 0, refused: 0 });
    counts.sent++;
    if (!ok) {
      report.refused++;
      counts.refused++;
      report.refusalTimes.push(Date.now());
      if (report.refusals.length < 20) report.refusals.push(`${verifier}: ${detail}`);
    }
  };
  const worker = async () => {
    let token = '';
    for (let i = 0; !stopping && Date.now() < deadline; i++) {
      if (i % loginEvery === 0) {
        try {
          token = await tokenFor(cluster, 'notes');
        } catch (error) {
          note('login', false, String(error));
          continue;
        }
      }
      for (const path of ['/api/whoami', '/py/whoami']) {
        try {
          const reply = await get(`${cluster.url}${path}`, bearer(token));
          const ok = reply.status === 200 && reply.body.user === 'demo';
          if (ok) {
            report.servers.add(reply.body.server);
            report.kids.add(reply.body.kid);
          }
          note(path, ok, `${reply.status} ${JSON.stringify(reply.body)} kid ${kidOf(token)}`);
        } catch (error) {
          note(path, false, String(error));
        }
      }
    }
  };
  const running = Promise.all(Array.from({ length: workers }, () => worker()));
  return {
    report,
    async stop(): Promise<VerifierTraffic> {
      stopping = true;
      await running;
      return report;
    },
  };
}

describe('resource servers verify keyfleet tokens by the JWKS alone', () => {
  let cluster: Cluster;
  let servers: StartedResourceServers;

  beforeAll(async () => {
    cluster = await Cluster.start({
      nodes: 3,
      env: {
        JWKS_PREPUBLISH: `${PREPUBLISH_MS}ms`,
        AUDIENCES: 'notes,reports',
        TOKEN_TTL: `${TOKEN_TTL_S}s`,
        CLOCK_SKEW: `${CLOCK_SKEW_S}s`,
      },
    });
    servers = await startResourceServers(cluster, {
      replicas: 2,
      python: true,
      env: { JWKS_CACHE_MAX_AGE: String(CACHE_MS) },
      pythonEnv: { JWKS_LIFESPAN: String(CACHE_MS / 1000) },
    });
  });
  afterAll(async () => {
    await servers?.stop();
    await cluster?.stop();
  });

  it('serves discovery and a JWKS with the next key, Cache-Control from the window, an ETag and 304', async () => {
    const discovery = await get(`${cluster.url}/.well-known/openid-configuration`);
    expect(discovery.status).toBe(200);
    expect(discovery.body).toMatchObject({
      issuer: 'keyfleet',
      jwks_uri: `${cluster.url}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: ['ES256'],
    });

    const ring = await status(cluster);
    const next = ring.next.find((n) => n.purpose === 'sign');
    const active = ring.keys.find((k) => k.purpose === 'sign' && k.state === 'active')!;
    expect(next?.kid).toMatch(/^sign-/);
    expect(next!.publishedAt).toBe(ring.keys.find((k) => k.kid === next!.kid)!.createdAt);
    for (const kids of (await jwksKidsEverywhere(cluster)).values()) expect(kids).toEqual(expect.arrayContaining([active.kid, next!.kid]));
    const human = await cluster.cli(['status']);
    expect(human.stdout).toMatch(new RegExp(`NEXT KEYS \\(published in the JWKS ahead of use; JWKS_PREPUBLISH=${PREPUBLISH_MS}ms in this environment\\)\\n  sign     ${next!.kid} +published \\S+ \\(\\S+ ago\\); a routine rotation (promotes it now|may promote it from)`));

    const first = await get(`${cluster.url}/.well-known/jwks.json`);
    expect(first.headers.get('cache-control')).toBe(`public, max-age=${Math.floor(PREPUBLISH_MS / 2 / 1000)}`);
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    // The same ring gives the same ETag on every node: a conditional request is 304 wherever it lands.
    const nodes = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const again = await get(`${cluster.url}/.well-known/jwks.json`, { 'if-none-match': etag! });
      expect(again.status).toBe(304);
      expect(again.body).toBe('');
      nodes.add(again.node!);
    }
    expect(nodes.size).toBe(3);
    expect((await get(`${cluster.url}/.well-known/jwks.json`, { 'if-none-match': '"stale"' })).status).toBe(200);
  });

  it('refuses a routine rotation while the next key is younger than JWKS_PREPUBLISH, with exit code 4', async () => {
    // The first rotation may promote (the ring is older than the window); the second cannot.
    const rotated = await cluster.cli(['rotate', '--purpose', 'sign', '--wait']);
    expect(rotated.exitCode, rotated.output).toBe(0);
    const refused = await cluster.cli(['rotate', '--purpose', 'sign']);
    expect(refused.exitCode, refused.output).toBe(4);
    expect(refused.stdout).toMatch(/sign: NOT ROTATED: the next key sign-\S+ has been published since .* and may sign from .*--wait.*--now/);
    const json = await cluster.cli(['--json', 'rotate', '--purpose', 'sign']);
    expect(json.exitCode).toBe(4);
    const result = JSON.parse(json.stdout.trim().split('\n').pop()!).result[0];
    expect(result).toMatchObject({ ok: false, purpose: 'sign' });
    expect(result.notBefore).toBe(result.publishedAt + PREPUBLISH_MS);
  });

  it('makes the resource servers refuse 0 valid tokens across 3 routine rotations in a row under traffic', async () => {
    const traffic = startVerifierTraffic(cluster);
    await waitUntil(() => traffic.report.sent >= 40, { what: '40 verifications before rotating' });
    const rotations: { kid: string; wasNext: string; publishedMs: number; ms: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const before = await status(cluster);
      const next = before.next.find((n) => n.purpose === 'sign')!;
      // What every node publishes once the next key may sign (staged moments ago, a node may
      // still be loading it now: it is published from its creation, give or take that).
      await waitUntil(() => Date.now() >= next.eligibleAt, { timeoutMs: PREPUBLISH_MS + 1_000, what: `${next.kid} to become eligible` });
      const jwksBefore = await jwksKidsEverywhere(cluster);
      const started = Date.now();
      const rotated = await cluster.cli(['rotate', '--purpose', 'sign', '--wait']);
      expect(rotated.exitCode, rotated.output).toBe(0);
      const kid = /sign: rotated to (\S+)/.exec(rotated.stdout)?.[1];
      const after = await status(cluster);
      const active = after.keys.find((k) => k.purpose === 'sign' && k.state === 'active')!;
      expect(active.kid).toBe(kid);
      // The promoted key is the one every node had published before the rotation began.
      expect(kid).toBe(next.kid);
      for (const kids of jwksBefore.values()) expect(kids).toContain(kid);
      expect(rotated.stdout).toMatch(/next key sign-\S+ published/);
      rotations.push({ kid: kid!, wasNext: next.kid, publishedMs: Date.now() - next.publishedAt, ms: Date.now() - started });
      // New tokens carry the promoted key before the next rotation.
      await waitUntil(() => traffic.report.kids.has(kid!), { what: `a verified token signed by ${kid}` });
    }
    await waitUntil(() => traffic.report.sent >= 40 + 60, { what: 'traffic after the rotations' });
    const report = await traffic.stop();
    console.log(
      `[figures] ${rotations.length} routine rotations (JWKS_PREPUBLISH ${PREPUBLISH_MS} ms, verifier cache ${CACHE_MS} ms, jose cooldown 30 s): ` +
        `${rotations.map((r) => `${r.ms} ms (key published ${r.publishedMs} ms before)`).join(', ')}; ` +
        `${report.sent} verifications, ${report.refused} refused, by verifier ${JSON.stringify(report.byVerifier)}, servers ${[...report.servers].sort().join(',')}`,
    );
    expect(report.refusals).toEqual([]);
    expect(report.refused).toBe(0);
    expect([...report.servers].sort()).toEqual(['resource-1', 'resource-2', 'resource-python-1']);
    for (const rotation of rotations) expect(report.kids.has(rotation.kid)).toBe(true);
  });

  it('an emergency rotation (--now) warns; a jose verifier with its defaults then refuses the fresh key (the control)', async () => {
    // The resource server exactly as another team runs it: jose's defaults (10 min cache, 30 s
    // cooldown), reached directly. It fetches the JWKS at its first verification.
    const control = await new GenericContainer(RESOURCE_IMAGES.node)
      .withNetwork(cluster.network)
      .withNetworkAliases('resource-control')
      .withEnvironment({ AUDIENCE: 'notes', KEYFLEET_URL: 'http://lb:8080', SERVER_ID: 'resource-control' })
      .withExposedPorts(4000)
      .withWaitStrategy(Wait.forHttp('/api/healthz', 4000).forStatusCode(200))
      .withStartupTimeout(60_000)
      .start();
    try {
      const controlUrl = `http://${control.getHost()}:${control.getMappedPort(4000)}/api/whoami`;
      expect((await get(controlUrl, bearer(await tokenFor(cluster, 'notes')))).status).toBe(200);
      const fetchedAt = Date.now();

      // A fresh token every round: new tokens meet the kit's verifiers right after activation.
      const traffic = startVerifierTraffic(cluster, { loginEvery: 1 });
      await waitUntil(() => traffic.report.sent >= 30, { what: '30 verifications before rotating' });
      const rotated = await cluster.cli(['rotate', '--purpose', 'sign', '--now']);
      const rotatedAt = Date.now();
      expect(rotated.exitCode, rotated.output).toBe(0);
      expect(rotated.stdout).toMatch(/sign: WARNING: sign-\S+ was not published ahead of use: services verifying tokens with a cached JWKS may refuse/);
      expect(rotated.stdout).toMatch(/the previous next key sign-\S+ was revoked/);
      const kid = /sign: rotated to (\S+)/.exec(rotated.stdout)![1]!;

      const fresh = await tokenFor(cluster, 'notes');
      expect(kidOf(fresh)).toBe(kid);
      const refused = await get(controlUrl, bearer(fresh));
      const controlMs = Date.now() - fetchedAt;
      expect(controlMs).toBeLessThan(30_000); // inside jose's cooldown after its fetch
      expect(refused.status).toBe(401);
      expect(refused.body.code).toBe('ERR_JWKS_NO_MATCHING_KEY');

      // The kit's verifiers (2 s cache) accept it once their cache has refreshed.
      await waitUntil(() => traffic.report.kids.has(kid), { timeoutMs: CACHE_MS + 10_000, what: `a verified token signed by ${kid}` });
      await waitUntil(() => traffic.report.sent >= 30 + 80, { what: 'traffic after the emergency rotation' });
      const report = await traffic.stop();
      const lastRefusalMs = report.refusalTimes.length ? Math.max(...report.refusalTimes) - rotatedAt : 0;
      console.log(
        `[figures] rotate --now: jose with its defaults refused the new key ${controlMs} ms after its JWKS fetch (${refused.body.code}); ` +
          `the kit's verifiers (cache ${CACHE_MS} ms) refused ${report.refused} of ${report.sent} (${JSON.stringify(report.byVerifier)}), ` +
          `the last ${lastRefusalMs} ms after the command returned; e.g. ${report.refusals[0] ?? '-'}`,
      );
      for (const refusal of report.refusals) expect(refusal).toMatch(/^\/api\/whoami: 401 .*ERR_JWKS_NO_MATCHING_KEY/);
      // PyJWKClient refetches on every unknown kid (no cooldown): it never refused.
      expect(report.byVerifier['/py/whoami']?.refused ?? 0).toBe(0);
      expect(lastRefusalMs).toBeLessThanOrEqual(CACHE_MS + 1_000);
    } finally {
      await control.stop({ timeout: 0 });
    }
  });

  it('refuses a token for another audience, on the resource servers and on keyfleet itself', async () => {
    const unknown = await postLogin(cluster.url, { username: 'demo', password: 'demo-password', audience: 'payroll' });
    expect(unknown.status).toBe(400);
    expect(unknown.body).toMatchObject({ code: 'ERR_UNKNOWN_AUDIENCE' });

    const notes = await tokenFor(cluster, 'notes');
    const reports = await tokenFor(cluster, 'reports');
    const own = await tokenFor(cluster);
    expect(decodeJwt(notes).aud).toBe('notes');
    expect(decodeJwt(reports).aud).toBe('reports');
    expect(decodeJwt(own).aud).toBe('keyfleet');

    for (let i = 0; i < 4; i++) {
      expect((await get(`${cluster.url}/api/whoami`, bearer(notes))).status).toBe(200);
      const other = await get(`${cluster.url}/api/whoami`, bearer(reports));
      expect(other.status).toBe(401);
      expect(other.body).toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'aud' });
      expect((await get(`${cluster.url}/api/whoami`, bearer(own))).status).toBe(401);
    }
    expect((await get(`${cluster.url}/py/whoami`, bearer(notes))).body).toMatchObject({ user: 'demo', verifier: 'python3-jwt' });
    expect((await get(`${cluster.url}/py/whoami`, bearer(reports))).body).toMatchObject({ code: 'ERR_JWT_AUDIENCE' });
    // keyfleet's own routes accept only its own audience.
    for (let i = 0; i < 3; i++) {
      expect((await get(`${cluster.url}/me`, bearer(own))).status).toBe(200);
      const refused = await get(`${cluster.url}/me`, bearer(notes));
      expect(refused.status).toBe(401);
      expect(refused.body.code).toMatch(/^ERR_TOKEN_/);
    }
    const audiences = await cluster.cli(['--json', 'audiences']);
    expect(JSON.parse(audiences.stdout)).toEqual({ issuer: 'keyfleet', audiences: ['keyfleet', 'notes', 'reports'] });
  });

  it('after revoke, every node drops the key at once and the resource servers stop accepting it within their cache age', async () => {
    const token = await tokenFor(cluster, 'notes');
    const kid = kidOf(token);
    for (const path of ['/api/whoami', '/api/whoami', '/py/whoami']) expect((await get(`${cluster.url}${path}`, bearer(token))).status).toBe(200);

    const oldNext = (await status(cluster)).next.find((n) => n.purpose === 'sign')!.kid;
    const revoked = await cluster.cli(['revoke', kid]);
    const revokedAt = Date.now();
    expect(revoked.exitCode, revoked.output).toBe(0);
    expect(revoked.stdout).toMatch(/WARNING: sign-\S+ signs now and was not published ahead of use/);
    // The next key lived beside the revoked one: revoked too, and a new next key published.
    expect(revoked.stdout).toContain(`the next key ${oldNext}, held beside the revoked key, was revoked too`);
    const newNext = /next key (sign-\S+) published/.exec(revoked.stdout)?.[1];
    // keyfleet: gone from every node's JWKS, refused by every node, the moment revoke returns.
    for (const kids of (await jwksKidsEverywhere(cluster)).values()) {
      expect(kids).not.toContain(kid);
      expect(kids).not.toContain(oldNext);
      expect(kids).toContain(newNext);
    }

    // The resource servers: until their cached JWKS expires. Probe each path until it has
    // refused the token several times in a row on every server behind it.
    const lastAccepted: Record<string, number> = {};
    const refusedBy = new Map<string, number>();
    const probeFrom = Date.now();
    await waitUntil(async () => {
      for (const path of ['/api/whoami', '/py/whoami']) {
        const reply = await get(`${cluster.url}${path}`, bearer(token));
        const server = reply.headers.get('x-resource-server') ?? '?';
        if (reply.status === 200) {
          lastAccepted[path] = Date.now();
          refusedBy.set(server, 0);
        } else {
          expect(reply.status, JSON.stringify(reply.body)).toBe(401);
          refusedBy.set(server, (refusedBy.get(server) ?? 0) + 1);
        }
      }
      return refusedBy.size === 3 && [...refusedBy.values()].every((count) => count >= 3);
    }, { timeoutMs: CACHE_MS + 10_000, intervalMs: 100, what: 'every resource server to refuse the revoked key' });
    const horizon = Object.fromEntries(Object.entries(lastAccepted).map(([path, at]) => [path, at - revokedAt]));
    console.log(
      `[figures] revoke: keyfleet nodes refuse at once; probing from ${probeFrom - revokedAt} ms after revoke returned, the resource servers ` +
        `accepted the revoked key until ${JSON.stringify(horizon)} ms after it (verifier cache ${CACHE_MS} ms)`,
    );
    // The cache age, and the answer's time on a loaded machine.
    for (const ms of Object.values(horizon)) expect(ms).toBeLessThanOrEqual(CACHE_MS + 1_000);

    const after = await status(cluster);
    expect(after.keys.find((k) => k.kid === oldNext)?.state).toBe('revoked');
    expect(after.next.find((n) => n.purpose === 'sign')?.kid).toBe(newNext);
    expect((await get(`${cluster.url}/me`, bearer(await tokenFor(cluster)))).status).toBe(200);
  });

  it('keeps a retired key published until token lifetime + clock skew, then drops it', async () => {
    const before = await status(cluster);
    const previous = before.keys.find((k) => k.purpose === 'sign' && k.state === 'active')!;
    const rotated = await cluster.cli(['rotate', '--purpose', 'sign', '--wait']);
    expect(rotated.exitCode, rotated.output).toBe(0);
    const retired = (await status(cluster)).keys.find((k) => k.kid === previous.kid)!;
    expect(retired.state).toBe('retired');
    expect(retired.deleteAfter).toBe(retired.retiredAt! + (TOKEN_TTL_S + CLOCK_SKEW_S) * 1000);
    // Published while something it signed may be valid...
    for (const kids of (await jwksKidsEverywhere(cluster)).values()) expect(kids).toContain(retired.kid);
    await waitUntil(() => Date.now() >= retired.deleteAfter! - 1_000, { timeoutMs: (TOKEN_TTL_S + CLOCK_SKEW_S) * 1000, intervalMs: 250, what: 'one second before deleteAfter' });
    for (const kids of (await jwksKidsEverywhere(cluster)).values()) expect(kids).toContain(retired.kid);
    // ...and gone from every node soon after.
    await waitUntil(async () => [...(await jwksKidsEverywhere(cluster)).values()].every((kids) => !kids.includes(retired.kid)), {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: `${retired.kid} to leave the JWKS`,
    });
    const leftAfterMs = Date.now() - retired.deleteAfter!;
    console.log(`[figures] retired key left every node's JWKS ${leftAfterMs} ms after its deleteAfter (retired + ${TOKEN_TTL_S} s token TTL + ${CLOCK_SKEW_S} s skew)`);
    expect(leftAfterMs).toBeLessThan(2_000);
  });
});
