import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { Network, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TLS_DIR, startBalancer } from '../support/cluster.js';
import { request } from '../support/http.js';

// Issue 11, part 4, against the running balancer from the host: the cipher list (openssl
// s_client offering one suite at a time), the demo certificate, the stats page, and a
// cluster set up as the Swarm and Kubernetes manifests set it up (HTTPS redirect, __Host-
// cookies), with the Origin check behind TLS.

const ca = readFileSync(`${TLS_DIR}/cert.pem`);

/** Runs a command with empty stdin; resolves with its exit code and output. */
function run(command: string, args: string[], timeoutMs = 15_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out });
    });
    child.stdin.end();
  });
}

/** One TLS handshake offering only `cipher` (TLS 1.2) or the default TLS 1.3 suites. */
const handshake = (port: number, version: '-tls1_2' | '-tls1_3' | '-tls1_1', cipher?: string) =>
  run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', version, ...(cipher ? ['-cipher', cipher] : []), '-brief']);

interface TlsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}
function https(url: string, { method = 'GET', headers = {}, body }: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<TlsReply>((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, ca, timeout: 10_000 }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text.startsWith('{') ? JSON.parse(text) : text }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

describe('the balancer as the Swarm and Kubernetes manifests run it', () => {
  let cluster: Cluster;
  const statsPassword = 'stats-password-for-this-test';

  beforeAll(async () => {
    cluster = await Cluster.start({
      nodes: 2,
      env: { COOKIE_HOST_PREFIX: 'true' },
      balancerEnv: { KEYFLEET_REDIRECT_HTTPS: '1', STATS_PASSWORD: statsPassword },
    });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  const tlsPort = () => cluster.lb.getMappedPort(8443);

  it('refuses CBC and SHA-1 suites on TLS 1.2, and TLS 1.1; negotiates ECDHE with AEAD, and TLS 1.3', async () => {
    const refused = ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'AES128-GCM-SHA256', 'AES128-SHA'];
    const results: Record<string, number> = {};
    for (const cipher of refused) results[cipher] = (await handshake(tlsPort(), '-tls1_2', cipher)).code;
    results['TLSv1.1'] = (await handshake(tlsPort(), '-tls1_1')).code;
    console.log(`[figures] openssl s_client exit codes for refused suites (non-zero = refused): ${JSON.stringify(results)}`);
    for (const [what, code] of Object.entries(results)) expect(code, what).not.toBe(0);
    for (const cipher of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
      const { code, out } = await handshake(tlsPort(), '-tls1_2', cipher);
      expect(code, out).toBe(0);
      expect(out).toContain(`Ciphersuite: ${cipher}`);
    }
    const tls13 = await handshake(tlsPort(), '-tls1_3');
    expect(tls13.code, tls13.out).toBe(0);
    expect(tls13.out).toMatch(/Protocol version: TLSv1\.3/);
  });

  it('serves the demo certificate as a leaf (CA:FALSE, server auth only)', async () => {
    const { code, out } = await run('openssl', ['x509', '-in', `${TLS_DIR}/cert.pem`, '-noout', '-ext', 'basicConstraints,extendedKeyUsage']);
    expect(code).toBe(0);
    expect(out).toMatch(/CA:FALSE/);
    expect(out).toMatch(/TLS Web Server Authentication/);
    const served = await run('sh', ['-c', `openssl s_client -connect 127.0.0.1:${tlsPort()} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -ext basicConstraints`]);
    expect(served.out).toMatch(/CA:FALSE/);
  });

  it('redirects plain HTTP to HTTPS (308)', async () => {
    const reply = await request(`${cluster.url}/login`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
    expect(reply.status).toBe(308);
    expect(reply.headers.get('location')).toMatch(/^https:\/\/[^/]+\/login$/);
  });

  it('asks for the stats password', async () => {
    const anonymous = await request(`${cluster.statsUrl}/;csv`, { signal: AbortSignal.timeout(10_000) });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm="keyfleet-stats"/);
    const wrong = await request(`${cluster.statsUrl}/;csv`, { headers: { authorization: `Basic ${Buffer.from('admin:guess').toString('base64')}` }, signal: AbortSignal.timeout(10_000) });
    expect(wrong.status).toBe(401);
    const right = await request(`${cluster.statsUrl}/;csv`, { headers: { authorization: `Basic ${Buffer.from(`admin:${statsPassword}`).toString('base64')}` }, signal: AbortSignal.timeout(10_000) });
    expect(right.status).toBe(200);
    expect(right.body).toMatch(/^app,app1,/m);
  });

  it('over HTTPS: __Host-auth and __Host-sid cookies, Secure, that authenticate on every node; planted unprefixed ones do not', async () => {
    const login = await https(`${cluster.tlsUrl}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
    });
    expect(login.status).toBe(200);
    const cookies = login.headers['set-cookie'] as string[];
    expect(cookies.map((c) => c.split('=')[0]).sort()).toEqual(['__Host-auth', '__Host-sid']);
    for (const cookie of cookies) expect(cookie).toMatch(/; Path=\/;.*Secure/);
    const jar = cookies.map((cookie) => cookie.split(';')[0]).join('; ');
    const nodes = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const me = await https(`${cluster.tlsUrl}/me`, { headers: { cookie: jar } });
      expect(me.status).toBe(200);
      expect(me.body).toMatchObject({ user: 'demo', via: 'cookie' });
      nodes.add(me.headers['x-node-id'] as string);
    }
    expect(nodes.size).toBe(2);
    const planted = await https(`${cluster.tlsUrl}/me`, { headers: { cookie: jar.replaceAll('__Host-', '') } });
    expect(planted.status).toBe(401);
    expect(planted.body.code).toBe('ERR_NO_CREDENTIALS');
  });

  it('refuses a state-changing request from the same host over another scheme (Origin check, scheme from the balancer)', async () => {
    const host = `localhost:${tlsPort()}`;
    const fromHttp = await https(`${cluster.tlsUrl}/logout`, { method: 'POST', headers: { origin: `http://${host}` } });
    expect(fromHttp.status).toBe(403);
    expect(fromHttp.body.code).toBe('ERR_CROSS_SITE');
    expect((await https(`${cluster.tlsUrl}/logout`, { method: 'POST', headers: { origin: `https://${host}` } })).status).toBe(200);
  });
});

describe('KEYFLEET_STATS_BIND=127.0.0.1:8404 (the Kubernetes setting)', () => {
  let network: StartedNetwork;
  let lb: StartedTestContainer;

  beforeAll(async () => {
    network = await new Network().start();
    lb = await startBalancer(network, { KEYFLEET_STATS_BIND: '127.0.0.1:8404' }, { publishStats: false });
  });
  afterAll(async () => {
    await lb?.stop({ timeout: 0 });
    await network?.stop();
  });

  it('answers on the traffic ports, and nothing on 8404 from outside the container', async () => {
    // No app node at all: HAProxy itself answers 503, so it is up.
    expect((await request(`http://${lb.getHost()}:${lb.getMappedPort(8080)}/healthz`, { signal: AbortSignal.timeout(10_000) })).status).toBe(503);
    const { exitCode, output } = await lb.exec(['sh', '-c', 'cat /proc/net/tcp /proc/net/tcp6 2>/dev/null']);
    expect(exitCode).toBe(0);
    // 8404 = 0x20D4: listening (state 0A) on 127.0.0.1 (0100007F) only.
    const listeners = output.split('\n').filter((line) => / 0A /.test(line) && /:20D4 /.test(line));
    expect(listeners.length).toBeGreaterThan(0);
    for (const line of listeners) expect(line.trim().split(/\s+/)[1]).toBe('0100007F:20D4');
  });
});
