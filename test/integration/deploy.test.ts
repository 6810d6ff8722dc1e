import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_TAG, IMAGES, waitUntil } from '../support/cluster.js';
import { login, request } from '../support/http.js';
import { startTraffic } from '../support/traffic.js';

// Issue 16: `npm run deploy` (scripts/deploy.sh) replaces the compose cluster's replicas one
// at a time, through the real compose.yaml, under continuous traffic through the balancer.
// The "new version" is the app image with one more label, tagged apart: a deploy must leave
// every replica on it. A project name and ports of its own.

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const project = `kfdeploy${randomBytes(3).toString('hex')}`;
const nextTag = `${IMAGE_TAG}-next-${randomBytes(3).toString('hex')}`;
const env = { ...process.env, COMPOSE_PROJECT_NAME: project, LB_PORT: '0', LB_TLS_PORT: '0', STATS_PORT: '0' };
const compose = (...args: string[]) => run('docker', ['compose', '-p', project, ...args], { cwd: root, env, maxBuffer: 16 << 20 });
const deploy = (args: string[], tag: string) =>
  run('bash', ['scripts/deploy.sh', ...args], { cwd: root, env: { ...env, KEYFLEET_TAG: tag }, maxBuffer: 16 << 20, timeout: 600_000 }).then(
    ({ stdout, stderr }) => ({ exitCode: 0, stdout, stderr }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({ exitCode: error.code ?? -1, stdout: error.stdout ?? '', stderr: error.stderr ?? '' }),
  );

async function appImages(): Promise<string[]> {
  const ids = (await compose('ps', '-q', 'app')).stdout.trim().split('\n').filter(Boolean);
  return Promise.all(ids.map(async (id) => (await run('docker', ['inspect', '--format', '{{.Image}}', id])).stdout.trim()));
}

describe('npm run deploy (scripts/deploy.sh)', () => {
  let url: string;
  let nextImageId: string;

  beforeAll(async () => {
    await compose('up', '-d');
    url = `http://127.0.0.1:${(await compose('port', 'lb', '8080')).stdout.trim().split(':').pop()}`;
    const seen = new Set<string>();
    await waitUntil(async () => {
      const reply = await request(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
      if (reply?.status === 200 && reply.node) seen.add(reply.node);
      return seen.size === 3;
    }, { timeoutMs: 90_000, what: '3 nodes behind the balancer' });
    // The next version: the same app with one more label, under a tag of its own.
    await new Promise<void>((done, reject) => {
      const child = execFile('docker', ['build', '-q', '-t', `keyfleet/app:${nextTag}`, '-'], (error) => (error ? reject(error) : done()));
      child.stdin!.end(`FROM ${IMAGES.app}\nLABEL keyfleet.deploy-test="${nextTag}"\n`);
    });
    nextImageId = (await run('docker', ['image', 'inspect', '--format', '{{.Id}}', `keyfleet/app:${nextTag}`])).stdout.trim();
  });
  afterAll(async () => {
    await compose('down', '-v', '--timeout', '5').catch((error) => console.error(error));
    await run('docker', ['rmi', '-f', `keyfleet/app:${nextTag}`]).catch(() => undefined);
  });

  it('exits non-zero and changes nothing when the new image does not exist', async () => {
    const before = await appImages();
    const result = await deploy([], `${nextTag}-missing`);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/deploy: FAILED: image keyfleet\/app:.*-missing not found/);
    expect(await appImages()).toEqual(before);
  });

  it('replaces every replica, one at a time, under traffic: 0 failed requests', async () => {
    const before = await login(url);
    const oldNodes = new Set<string>();
    const traffic = startTraffic(url, { workers: 3, maxMs: 540_000 });
    await waitUntil(() => traffic.report.sent >= 50, { timeoutMs: 30_000, what: 'traffic before the deploy' });
    for (const node of traffic.report.nodes) oldNodes.add(node);

    const started = Date.now();
    const result = await deploy([], nextTag);
    const tookMs = Date.now() - started;
    const sentAtEnd = traffic.report.sent;
    await waitUntil(() => traffic.report.sent >= sentAtEnd + 50, { timeoutMs: 30_000, what: 'traffic after the deploy' });
    const report = await traffic.stop();
    console.log(result.stdout);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/deploy: done: 3 replicas of app replaced/);

    console.log(
      `[figures] rolling deploy of 3 replicas under traffic: ${report.sent} requests (${JSON.stringify(report.byKind)}), ${report.failed} failed, deploy took ${tookMs} ms`,
    );
    expect(report.failures).toEqual([]);
    expect(report.sent).toBeGreaterThan(200);

    // Every replica runs the new image, and none of the old nodes is left.
    const images = await appImages();
    expect(images).toEqual([nextImageId, nextImageId, nextImageId]);
    // Credentials minted before the deploy work on every new node.
    const served = new Set<string>();
    await waitUntil(async () => {
      for (const kind of ['token', 'cookie', 'session'] as const) {
        const headers: Record<string, string> = kind === 'token' ? { authorization: `Bearer ${before.token}` } : { cookie: kind === 'cookie' ? before.authCookie : before.sidCookie };
        const reply = await request(`${url}/me`, { headers, signal: AbortSignal.timeout(5_000) });
        expect(reply.status).toBe(200);
        served.add(reply.node!);
      }
      return served.size >= 3;
    }, { timeoutMs: 20_000, what: 'the old credentials on three new nodes' });
    for (const node of served) expect(oldNodes.has(node)).toBe(false);
  });
});
