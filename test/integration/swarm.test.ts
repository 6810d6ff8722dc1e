import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TLS_DIR, waitUntil } from '../support/cluster.js';
import { login, probeAcrossNodes, request, type CredentialKind, type LoginResult } from '../support/http.js';
import { startTraffic } from '../support/traffic.js';
import {
  deployStack, ensureSwarm, forceRollingUpdate, freePort, leaveSwarm, removeStack, runningTasks, scaleService, swarmState,
} from '../support/swarm.js';

// deploy/swarm/stack.yaml as users deploy it: `docker stack deploy` on a single-node swarm
// (made here if the engine is not in one, and left again at the end), a stack name and
// published ports of its own, then `docker service scale` and a rolling `service update`.

const root = resolve(import.meta.dirname, '../..');
const stackFile = resolve(root, 'deploy/swarm/stack.yaml');
const stack = `kfswarm${randomBytes(3).toString('hex')}`;
const appService = `${stack}_app`;

async function nodesServing(url: string, want: number, timeoutMs = 90_000) {
  const seen = new Set<string>();
  await waitUntil(async () => {
    const reply = await request(`${url}/healthz`).catch(() => undefined);
    if (reply?.status === 200 && reply.node) seen.add(reply.node);
    return seen.size >= want;
  }, { timeoutMs, intervalMs: 100, what: `${want} nodes behind the balancer (saw ${seen.size})` });
  return seen;
}

/** The set of nodes HAProxy rotates over right now: one full round after a warm-up round. */
async function currentRotation(url: string, size: number) {
  const nodes = new Set<string>();
  for (let i = 0; i < size * 2; i++) {
    const reply = await request(`${url}/healthz`);
    if (i >= size && reply.status === 200) nodes.add(reply.node!);
  }
  return nodes;
}

/** Every credential from `who` accepted by every one of `nodes` (round robin: 5 rounds per node). */
async function expectAcceptedEverywhere(url: string, who: LoginResult, nodes: Set<string>) {
  for (const kind of ['token', 'cookie', 'session'] as CredentialKind[]) {
    const result = await probeAcrossNodes(url, kind, who, nodes.size * 5);
    expect(result.rejected, `${kind} refused somewhere`).toBe(0);
    expect(new Set(result.byNode.keys()), `${kind} served by`).toEqual(nodes);
  }
}

function httpsStatus(url: string) {
  const ca = readFileSync(`${TLS_DIR}/cert.pem`);
  return new Promise<number>((done, fail) => {
    httpsRequest(url, { ca }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode!));
    }).on('error', fail).end();
  });
}

describe('Docker Swarm: deploy/swarm/stack.yaml', () => {
  let initialisedSwarm = false;
  let deployed = false;
  let url: string;
  let tlsUrl: string;
  let statsUrl: string;
  const statsPassword = randomBytes(18).toString('base64url');

  beforeAll(async () => {
    initialisedSwarm = await ensureSwarm();
    const ports = new Set<number>();
    while (ports.size < 3) ports.add(await freePort());
    const [http, https, stats] = [...ports] as [number, number, number];
    url = `http://127.0.0.1:${http}`;
    tlsUrl = `https://localhost:${https}`;
    statsUrl = `http://127.0.0.1:${stats}`;
    const env = {
      ...process.env,
      REDIS_PASSWORD: randomBytes(18).toString('base64url'),
      REDIS_ADMIN_PASSWORD: randomBytes(18).toString('base64url'),
      SWARM_LB_PORT: String(http),
      SWARM_LB_TLS_PORT: String(https),
      SWARM_STATS_PORT: String(stats),
      SWARM_STATS_PASSWORD: statsPassword,
      // The stack redirects plain HTTP and prefixes its cookies by default; these tests drive
      // the nodes over plain HTTP (HTTPS is checked once below).
      KEYFLEET_REDIRECT_HTTPS: '0',
      COOKIE_HOST_PREFIX: 'false',
    };
    deployed = true;
    await deployStack(stack, stackFile, env);
  });

  afterAll(async () => {
    try {
      if (deployed) await removeStack(stack);
    } finally {
      if (initialisedSwarm) await leaveSwarm();
    }
    expect(await swarmState()).toBe(initialisedSwarm ? 'inactive' : 'active');
  });

  it('serves 3 app tasks found through tasks.app, over HTTP and HTTPS (certificate and master key from Swarm secrets)', async () => {
    const nodes = await nodesServing(url, 3, 150_000);
    expect(nodes.size).toBe(3);
    expect(await runningTasks(appService)).toBe(3);
    expect(await httpsStatus(`${tlsUrl}/healthz`)).toBe(200);
    expect((await request(`${statsUrl}/;csv`)).status).toBe(401);
    const stats = await request(`${statsUrl}/;csv`, { headers: { authorization: `Basic ${Buffer.from(`admin:${statsPassword}`).toString('base64')}` } });
    expect(stats.body).toMatch(/^app,app1,/m);
    const who = await login(url);
    await expectAcceptedEverywhere(url, who, await currentRotation(url, 3));
  }, 200_000);

  it('`docker service scale` 3 -> 5: the new tasks join the balancer and accept credentials minted before they started', async () => {
    const before = await login(url);
    const oldNodes = await currentRotation(url, 3);
    const started = Date.now();
    await scaleService(appService, 5);
    const nodes = await nodesServing(url, 5);
    const joinedMs = Date.now() - started;
    console.log(`[figures] swarm scale 3->5: new tasks serving after ${joinedMs} ms`);
    expect(await runningTasks(appService)).toBe(5);
    const rotation = await currentRotation(url, 5);
    expect(rotation).toEqual(nodes);
    expect([...rotation].filter((node) => !oldNodes.has(node))).toHaveLength(2);
    await expectAcceptedEverywhere(url, before, rotation);
  }, 150_000);

  it('`docker service update --force` (rolling, start-first) loses no request', async () => {
    const before = await login(url);
    const oldNodes = await currentRotation(url, 5);
    const traffic = startTraffic(url, { workers: 3, maxMs: 280_000 });
    await waitUntil(() => traffic.report.sent >= 50, { what: 'traffic before the update' });
    const started = Date.now();
    const state = await forceRollingUpdate(appService, 240_000);
    const updateMs = Date.now() - started;
    const sentAtEnd = traffic.report.sent;
    await waitUntil(() => traffic.report.sent >= sentAtEnd + 50, { what: 'traffic after the update' });
    const report = await traffic.stop();
    console.log(`[figures] swarm rolling update: ${report.sent} requests, ${report.failed} failed (5 tasks replaced in ${updateMs} ms, served by ${report.nodes.size} nodes)`);
    expect(report.failures).toEqual([]);
    expect(state).toBe('completed');
    // Every task replaced; the new ones accept what the old ones minted.
    const rotation = await currentRotation(url, 5);
    expect(rotation.size).toBe(5);
    expect([...rotation].filter((node) => oldNodes.has(node))).toEqual([]);
    await expectAcceptedEverywhere(url, before, rotation);
  }, 300_000);
});
