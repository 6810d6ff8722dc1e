import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../support/cluster.js';
import { login, request } from '../support/http.js';

// The demo as users run it: the real compose.yaml, `docker compose up`, then `--scale`.
// A project name and ports of its own, so it never touches a demo already running.

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const project = `kftest${randomBytes(3).toString('hex')}`;
const env = { ...process.env, LB_PORT: '0', LB_TLS_PORT: '0', STATS_PORT: '0' };
const compose = (...args: string[]) => run('docker', ['compose', '-p', project, ...args], { cwd: root, env, maxBuffer: 16 << 20 });

async function distinctNodes(url: string, want: number) {
  const seen = new Set<string>();
  await waitUntil(async () => {
    const reply = await request(`${url}/healthz`).catch(() => undefined);
    if (reply?.status === 200 && reply.node) seen.add(reply.node);
    return seen.size >= want;
  }, { timeoutMs: 60_000, what: `${want} nodes behind the balancer (saw ${seen.size})` });
  return seen;
}

describe('compose.yaml', () => {
  let url: string;
  let statsUrl: string;

  beforeAll(async () => {
    await compose('up', '-d');
    const port = async (service: string, inner: number) => (await compose('port', service, String(inner))).stdout.trim().split(':').pop();
    url = `http://127.0.0.1:${await port('lb', 8080)}`;
    statsUrl = `http://127.0.0.1:${await port('lb', 8404)}`;
  });
  afterAll(async () => {
    await compose('down', '-v', '--timeout', '5').catch((error) => console.error(error));
  });

  it('starts three app nodes behind HAProxy, and a login works on all of them', async () => {
    const nodes = await distinctNodes(url, 3);
    expect(nodes.size).toBe(3);
    const me = await login(url);
    const served = new Set<string>();
    for (let i = 0; i < 9; i++) {
      const reply = await request(`${url}/me`, { headers: { authorization: `Bearer ${me.token}` } });
      expect(reply.status).toBe(200);
      served.add(reply.node!);
    }
    expect(served).toEqual(nodes);
  });

  it('serves the HAProxy stats page', async () => {
    const stats = await request(`${statsUrl}/;csv`);
    expect(stats.status).toBe(200);
    expect(stats.body).toMatch(/^app,app1,/m);
  });

  it('runs the two example resource servers behind the balancer, verifying the same token as the Python one', async () => {
    const reply = await request(`${url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'demo', password: 'demo-password', audience: 'notes' }),
    });
    expect(reply.status).toBe(200);
    const headers = { authorization: `Bearer ${reply.body.token}` };
    const servers = new Set<string>();
    await waitUntil(async () => {
      const api = await request(`${url}/api/whoami`, { headers, signal: AbortSignal.timeout(5_000) });
      if (api.status === 200 && api.body.user === 'demo') servers.add(api.body.server);
      return servers.size === 2;
    }, { timeoutMs: 60_000, what: `both resource servers to accept the token (saw ${servers.size})` });
    await waitUntil(async () => (await request(`${url}/py/whoami`, { headers, signal: AbortSignal.timeout(5_000) })).body?.verifier === 'python3-jwt', {
      timeoutMs: 60_000,
      what: 'the Python verifier to accept the token',
    });
  });

  it('picks up `--scale app=5` without touching the balancer config', async () => {
    const before = await login(url);
    await compose('up', '-d', '--scale', 'app=5', '--no-recreate');
    const nodes = await distinctNodes(url, 5);
    expect(nodes.size).toBe(5);
    // The new nodes accept what was minted before they existed.
    // Every answer is a 200; a node still starting may pass a request on (503, which the
    // balancer retries elsewhere), so each new node is awaited until it answers itself.
    const served = new Set<string>();
    let sent = 0;
    await waitUntil(async () => {
      const reply = await request(`${url}/me`, { headers: { cookie: before.sidCookie }, signal: AbortSignal.timeout(5_000) });
      sent++;
      expect(reply.status).toBe(200);
      served.add(reply.node!);
      return served.size === 5;
    }, { timeoutMs: 30_000, intervalMs: 0, what: `all 5 nodes to answer the session minted before they existed (saw ${served.size})` });
    console.log(`[figures] --scale app=5: the old session answered 200 by all 5 nodes after ${sent} requests`);
    expect(served.size).toBe(5);
  });

  it('runs the keyfleet CLI on PATH in the app image, and backup works through it', async () => {
    const { stdout } = await compose('exec', '-T', 'app', 'keyfleet', '--json', 'status');
    const status = JSON.parse(stdout);
    expect(status.nodes).toHaveLength(5);
    expect(status.primary).toEqual(expect.any(String));
    const backup = await compose('exec', '-T', 'app', 'keyfleet', 'backup');
    // One active key per purpose, and the next signing key, published ahead of its use.
    expect(JSON.parse(backup.stdout).keys).toHaveLength(4);
  });

  it('scales back down under traffic without failing a request', async () => {
    const { startTraffic } = await import('../support/traffic.js');
    const traffic = startTraffic(url, { workers: 3 });
    await waitUntil(() => traffic.report.sent >= 50, { what: 'traffic before scaling down' });
    await compose('up', '-d', '--scale', 'app=3', '--no-recreate');
    const sentAtScale = traffic.report.sent;
    await waitUntil(() => traffic.report.sent >= sentAtScale + 100, { what: 'traffic after scaling down' });
    const report = await traffic.stop();
    console.log(`[figures] scale 5 -> 3 under traffic: ${report.sent} requests, ${report.failed} failed`);
    expect(report.failures).toEqual([]);
    const { stdout } = await compose('ps', '--format', 'json', 'app');
    expect(stdout.trim().split('\n').filter(Boolean)).toHaveLength(3);
  });
});
