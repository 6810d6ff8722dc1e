import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Cluster, startPrometheus, waitUntil } from '../support/cluster.js';
import { login } from '../support/http.js';

// Three nodes behind HAProxy and a real Prometheus (Debian's package, the kit's own config and
// alert rules) on the same network. Everything is read through Prometheus's HTTP API: what
// an operator's Prometheus sees, not what the nodes claim.

const DEPLOY = resolve(import.meta.dirname, '../../deploy/prometheus');

/**
 * The kit's prometheus.yml, faster: scrapes and rule evaluations every second. DNS discovery
 * is refreshed once a minute here (5 s in the kit): a killed container leaves Docker's DNS at
 * once, and the test wants to see its target go down rather than vanish from the list.
 */
function testConfig(): string {
  const config = parse(readFileSync(`${DEPLOY}/prometheus.yml`, 'utf8'));
  config.global = { ...config.global, scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' };
  for (const job of config.scrape_configs) for (const sd of job.dns_sd_configs ?? []) sd.refresh_interval = '1m';
  return stringify(config);
}

interface Target {
  labels: Record<string, string>;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
}
interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

let cluster: Cluster;
let prometheus: StartedTestContainer;
let api: string;

const get = async <T>(path: string): Promise<T> => {
  const response = await fetch(`${api}${path}`, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { status: string; data: T };
  if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${JSON.stringify(body)}`);
  return body.data;
};
const query = (promql: string) => get<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`).then((data) => data.result);
const targets = (job: string) => get<{ activeTargets: Target[] }>('/api/v1/targets?state=active').then((data) => data.activeTargets.filter((t) => t.labels.job === job));
/** instance -> value of a query answered per instance. */
const byInstance = async (promql: string) => new Map((await query(promql)).map((s) => [s.metric.instance!, Number(s.value[1])]));

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, env: { DASHBOARD: 'public' } });
  prometheus = await startPrometheus(cluster.network, {
    'prometheus.yml': testConfig(),
    'alerts.yml': readFileSync(`${DEPLOY}/alerts.yml`, 'utf8'),
  });
  api = `http://${prometheus.getHost()}:${prometheus.getMappedPort(9090)}`;
});

afterAll(async () => {
  await prometheus?.stop({ timeout: 0 });
  await cluster?.stop();
});

describe('Prometheus scraping the cluster', () => {
  it('finds every node through Docker DNS and the balancer\'s exporter, all up, with the alert rules loaded', async () => {
    await waitUntil(async () => (await targets('keyfleet')).filter((t) => t.health === 'up').length === 3, {
      timeoutMs: 60_000,
      what: 'three keyfleet targets up',
    });
    await waitUntil(async () => (await targets('haproxy')).some((t) => t.health === 'up'), { timeoutMs: 30_000, what: 'the haproxy target up' });
    expect((await targets('keyfleet')).map((t) => t.labels.instance!.split(':')[1])).toEqual(['9464', '9464', '9464']);
    const rules = await get<{ groups: { name: string; rules: { name: string; health: string }[] }[] }>('/api/v1/rules');
    const keyfleet = rules.groups.find((group) => group.name === 'keyfleet');
    expect(keyfleet?.rules.length).toBeGreaterThanOrEqual(7);
    // HAProxy's own metrics, through its exporter: the balancer counts the three nodes.
    await waitUntil(async () => (await query('haproxy_backend_active_servers{proxy="app"}'))[0]?.value[1] === '3', {
      timeoutMs: 20_000,
      what: 'haproxy_backend_active_servers{proxy="app"} == 3',
    });
  });

  it('keeps /metrics off the balancer: through HAProxy it is the app\'s 404', async () => {
    const response = await fetch(`${cluster.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'not found', code: 'ERR_NOT_FOUND' });
  });

  it('shows each node\'s own verifications per second and cache hit ratio on the dashboard (from heartbeats, not Prometheus)', async () => {
    const { token } = await login(cluster.url);
    const me = () => fetch(`${cluster.url}/me`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) });
    // Round robin: each node checks the token in full once, then answers from its cache.
    for (let i = 0; i < 30; i++) expect((await me()).status).toBe(200);
    type NodeView = { id: string; verificationsPerSecond: number | null; cacheHitRatio: number | null };
    let nodes: NodeView[] = [];
    await waitUntil(
      async () => {
        const response = await fetch(`${cluster.url}/dashboard/data`, { signal: AbortSignal.timeout(5_000) });
        nodes = ((await response.json()) as { nodes: NodeView[] }).nodes;
        return nodes.length === 3 && nodes.every((n) => (n.verificationsPerSecond ?? 0) > 0 && (n.cacheHitRatio ?? 0) >= 0.5);
      },
      { timeoutMs: 15_000, what: `every node to report verifications and cache hits (${JSON.stringify(nodes)})` },
    );
    for (const node of nodes) expect(node.cacheHitRatio, node.id).toBeLessThan(1); // its first check was a miss
  });

  it('sees the rotation counter rise on every node during a rotation, and the killed node\'s target go down', async () => {
    // node id -> the address Prometheus scrapes it at.
    const info = await query('keyfleet_node_info');
    const instanceOf = new Map(info.map((s) => [s.metric.node!, s.metric.instance!]));
    expect([...instanceOf.keys()].sort()).toEqual(['node-1', 'node-2', 'node-3']);

    const rotations = 'sum by (instance) (keyfleet_rotations_total{job="keyfleet"})';
    const before = await byInstance(rotations);
    expect(before.size).toBe(3);
    const versionBefore = Math.max(...(await byInstance('keyfleet_ring_version')).values());
    const propagation = 'keyfleet_ring_propagation_seconds_count{job="keyfleet"}';
    const propagatedBefore = await byInstance(propagation);

    const rotate = await cluster.cli(['rotate']);
    expect(rotate.exitCode, rotate.output).toBe(0);

    // Every purpose got a new active key, and every node saw each activation: +3 everywhere.
    let after = new Map<string, number>();
    await waitUntil(
      async () => {
        after = await byInstance(rotations);
        return [...before].every(([instance, count]) => after.get(instance) === count + 3);
      },
      { timeoutMs: 20_000, what: 'keyfleet_rotations_total to rise by 3 on every node' },
    );
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    // Scrapes are a second apart and a rotation ends with one more commit (the next signing
    // key staged): wait for every node's scraped version to agree.
    let versions = new Map<string, number>();
    await waitUntil(
      async () => {
        versions = await byInstance('keyfleet_ring_version');
        return versions.size === before.size && new Set(versions.values()).size === 1;
      },
      { timeoutMs: 20_000, what: 'every node to report the same ring version' },
    );
    expect(Math.max(...versions.values())).toBeGreaterThan(versionBefore);
    // Each node timed the changes from commit to its own load.
    const propagated = await byInstance(propagation);
    for (const [instance, count] of propagatedBefore) expect(propagated.get(instance), instance).toBeGreaterThan(count);

    const victim = instanceOf.get('node-2')!;
    await cluster.killNode('node-2');
    await waitUntil(async () => (await targets('keyfleet')).some((t) => t.labels.instance === victim && t.health === 'down'), {
      timeoutMs: 20_000,
      what: `the target of node-2 (${victim}) to go down`,
    });
    await waitUntil(async () => (await query(`up{job="keyfleet",instance="${victim}"}`))[0]?.value[1] === '0', {
      timeoutMs: 10_000,
      what: `up{instance="${victim}"} == 0`,
    });
    const others = (await targets('keyfleet')).filter((t) => t.labels.instance !== victim);
    expect(others.map((t) => t.health)).toEqual(['up', 'up']);
    // And the balancer noticed too.
    await waitUntil(async () => (await query('haproxy_backend_active_servers{proxy="app"}'))[0]?.value[1] === '2', {
      timeoutMs: 20_000,
      what: 'haproxy_backend_active_servers{proxy="app"} == 2',
    });
  });
});
