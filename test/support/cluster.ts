import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  GenericContainer,
  Network,
  Wait,
  type StartedNetwork,
  type StartedTestContainer,
} from 'testcontainers';
import { Redis } from 'ioredis';
import { connectNetwork, killContainer } from './docker.js';

// Fixtures for our own cluster, in testcontainers' shape: the same images and config that
// compose.yaml runs (scripts/bootstrap.sh builds them), on a network of their own.

/** Image tag: `dev`, or KEYFLEET_TAG where several checkouts share one Docker daemon. */
export const IMAGE_TAG = process.env.KEYFLEET_TAG || 'dev';
export const IMAGES = { app: `keyfleet/app:${IMAGE_TAG}`, redis: `keyfleet/redis:${IMAGE_TAG}`, lb: `keyfleet/haproxy:${IMAGE_TAG}` } as const;

/** demo / demo-password, the same entry as in compose.yaml. */
export const DEMO_USERS = (() => {
  const compose = readFileSync(resolve(import.meta.dirname, '../../compose.yaml'), 'utf8');
  const match = /USERS: (demo=scrypt\.[^\s]+)/.exec(compose);
  if (!match) throw new Error('compose.yaml has no demo USERS entry');
  return match[1]!;
})();

export const randomMasterKey = () => randomBytes(32).toString('base64');
const password = () => randomBytes(18).toString('base64url');

const startupTimeoutMs = 60_000;

export class StartedRedis {
  constructor(
    readonly container: StartedTestContainer,
    readonly password: string,
    readonly adminPassword: string,
  ) {}

  /** The URL app nodes use inside the network. */
  get internalUrl(): string {
    return `redis://keyfleet:${this.password}@redis:6379/0`;
  }

  /** An admin connection from the host, for inspecting and breaking things. */
  admin(): Redis {
    return new Redis({
      host: this.container.getHost(),
      port: this.container.getMappedPort(6379),
      username: 'admin',
      password: this.adminPassword,
      maxRetriesPerRequest: 1,
    });
  }

  /** The nodes' own ACL user, from the host (what the CLI uses). */
  get hostUrl(): string {
    return `redis://keyfleet:${this.password}@${this.container.getHost()}:${this.container.getMappedPort(6379)}/0`;
  }
}

export async function startRedis(network: StartedNetwork, alias = 'redis'): Promise<StartedRedis> {
  const [pass, admin] = [password(), password()];
  const container = await new GenericContainer(IMAGES.redis)
    .withNetwork(network)
    .withNetworkAliases(alias)
    .withEnvironment({ REDIS_PASSWORD: pass, REDIS_ADMIN_PASSWORD: admin })
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .withStartupTimeout(startupTimeoutMs)
    .start();
  return new StartedRedis(container, pass, admin);
}

export interface AppNodeOptions {
  nodeId: string;
  redisUrl: string;
  masterKey: string;
  env?: Record<string, string>;
  /** Wait until /healthz answers 200 (default), or only until the process listens. */
  waitFor?: 'ready' | 'listening' | 'nothing';
}

export async function startAppNode(network: StartedNetwork, options: AppNodeOptions): Promise<StartedTestContainer> {
  const wait = options.waitFor ?? 'ready';
  let container = new GenericContainer(IMAGES.app)
    .withNetwork(network)
    .withNetworkAliases('app', options.nodeId)
    .withName(`kf-${options.nodeId}-${randomBytes(3).toString('hex')}`)
    .withEnvironment({
      NODE_ID: options.nodeId,
      REDIS_URL: options.redisUrl,
      KEYRING_MASTER_KEY: options.masterKey,
      USERS: DEMO_USERS,
      LOG_LEVEL: 'info',
      SHUTDOWN_DRAIN: '2s',
      // A routine rotation promotes the next signing key at once (no pre-publication wait);
      // test/integration/jwks.test.ts sets a real window.
      JWKS_PREPUBLISH: '0s',
      ...options.env,
    })
    .withExposedPorts(3000)
    .withStartupTimeout(startupTimeoutMs);
  if (wait === 'ready') container = container.withWaitStrategy(Wait.forHttp('/healthz', 3000).forStatusCode(200));
  else if (wait === 'listening') container = container.withWaitStrategy(Wait.forLogMessage(/"msg":"(ready|waiting for a key ring)"/));
  else container = container.withWaitStrategy(Wait.forLogMessage(/keyfleet|starting/));
  return container.start();
}

/** The balancer's certificate, made once by scripts/bootstrap.sh (self-signed, its own CA). */
export const TLS_DIR = resolve(import.meta.dirname, '../../secrets/tls');

export async function startBalancer(
  network: StartedNetwork,
  env: Record<string, string> = {},
  // The stats port bound inside the container only (KEYFLEET_STATS_BIND=127.0.0.1:…) is
  // not published: a wait for it to listen from outside could never end.
  { publishStats = true }: { publishStats?: boolean } = {},
): Promise<StartedTestContainer> {
  return new GenericContainer(IMAGES.lb)
    .withNetwork(network)
    .withNetworkAliases('lb')
    .withEnvironment(env)
    .withCopyFilesToContainer([{ source: `${TLS_DIR}/haproxy.pem`, target: '/usr/local/etc/haproxy/certs/keyfleet.pem', mode: 0o644 }])
    .withExposedPorts(...(publishStats ? [8080, 8443, 8404] : [8080, 8443]))
    .withWaitStrategy(Wait.forListeningPorts())
    .withStartupTimeout(startupTimeoutMs)
    .start();
}

export interface ClusterOptions {
  nodes?: number;
  env?: Record<string, string>;
  balancerEnv?: Record<string, string>;
  /** Redis as a master, two replicas and three Sentinels (compose.ha.yaml's layout). */
  sentinel?: boolean;
  /** Runs once Redis is up, before any node starts (to seed what a node should find there). */
  beforeNodes?: (redis: StartedRedis, masterKey: string) => Promise<void>;
}

/** The Sentinel layout: containers by name, and the environment nodes need to use it. */
export interface SentinelSet {
  containers: Map<string, StartedTestContainer>;
  nodeEnv: Record<string, string>;
}

async function startSentinelSet(network: StartedNetwork, master: StartedRedis): Promise<SentinelSet> {
  const containers = new Map<string, StartedTestContainer>();
  const env = { REDIS_PASSWORD: master.password, REDIS_ADMIN_PASSWORD: master.adminPassword };
  const start = (name: string, extra: Record<string, string>, wait: RegExp, port: number) =>
    new GenericContainer(IMAGES.redis)
      .withNetwork(network)
      .withNetworkAliases(name)
      .withName(`kf-${name}-${randomBytes(3).toString('hex')}`)
      .withEnvironment({ ...env, ...extra })
      .withExposedPorts(port)
      .withWaitStrategy(Wait.forLogMessage(wait))
      .withStartupTimeout(startupTimeoutMs)
      .start()
      .then((container) => containers.set(name, container));
  await Promise.all(
    ['redis-replica-1', 'redis-replica-2'].map((name) => start(name, { REDIS_REPLICA_OF: 'redis' }, /MASTER <-> REPLICA sync: Finished/, 6379)),
  );
  await Promise.all(
    ['sentinel-1', 'sentinel-2', 'sentinel-3'].map((name) =>
      // A failed leader election (split votes, common on a busy 2-core machine) is tried again
      // only after twice the failover timeout: 4 s here rather than the 10 s default, or two
      // failed rounds outlast the test's wait (CI: no promotion within 50 s).
      start(name, { REDIS_SENTINEL_MONITOR: 'redis', REDIS_SENTINEL_QUORUM: '2', REDIS_SENTINEL_DOWN_AFTER_MS: '1000', REDIS_SENTINEL_FAILOVER_TIMEOUT_MS: '4000' }, /\+monitor master/, 26379),
    ),
  );
  return {
    containers,
    nodeEnv: {
      REDIS_URL: '',
      REDIS_SENTINELS: 'sentinel-1:26379,sentinel-2:26379,sentinel-3:26379',
      REDIS_MASTER_NAME: 'keyfleet',
      REDIS_USERNAME: 'keyfleet',
      REDIS_PASSWORD: master.password,
      REDIS_MIN_REPLICAS: '1',
    },
  };
}

/**
 * Redis, N app nodes and HAProxy, as compose.yaml runs them, on two networks: `network`
 * (front: the balancer and the nodes) and `backNetwork` (back: the nodes and Redis), so a
 * node can be cut off from Redis alone.
 */
export class Cluster {
  readonly nodes = new Map<string, StartedTestContainer>();
  private readonly killed: StartedTestContainer[] = [];
  private nextNode = 1;

  sentinels?: SentinelSet;

  private constructor(
    readonly network: StartedNetwork,
    readonly backNetwork: StartedNetwork,
    readonly redis: StartedRedis,
    readonly masterKey: string,
    private env: Record<string, string>,
  ) {}

  lb!: StartedTestContainer;
  /** The balancer's STATS_PASSWORD, if it was given one (user admin). */
  statsPassword?: string;

  get url(): string {
    return `http://${this.lb.getHost()}:${this.lb.getMappedPort(8080)}`;
  }

  get tlsUrl(): string {
    return `https://localhost:${this.lb.getMappedPort(8443)}`;
  }

  get statsUrl(): string {
    return `http://${this.lb.getHost()}:${this.lb.getMappedPort(8404)}`;
  }

  static async start({ nodes = 3, env = {}, balancerEnv = {}, sentinel = false, beforeNodes }: ClusterOptions = {}): Promise<Cluster> {
    const network = await new Network().start();
    const backNetwork = await new Network().start();
    let cluster: Cluster | undefined;
    try {
      const redis = await startRedis(backNetwork);
      cluster = new Cluster(network, backNetwork, redis, randomMasterKey(), env);
      if (sentinel) {
        cluster.sentinels = await startSentinelSet(backNetwork, redis);
        cluster.env = { ...cluster.sentinels.nodeEnv, ...env };
      }
      await beforeNodes?.(redis, cluster.masterKey);
      // The first node creates the ring; the others then start side by side.
      await cluster.addNode();
      await Promise.all(Array.from({ length: nodes - 1 }, () => cluster!.addNode()));
      cluster.lb = await startBalancer(network, balancerEnv);
      cluster.statsPassword = balancerEnv.STATS_PASSWORD;
      await cluster.waitForBalancer(nodes);
      return cluster;
    } catch (error) {
      await (cluster ? cluster.stop() : Promise.allSettled([network.stop(), backNetwork.stop()]));
      throw error;
    }
  }

  async addNode(
    env: Record<string, string> = {},
    waitFor: AppNodeOptions['waitFor'] = 'ready',
    masterKey = this.masterKey,
  ): Promise<{ id: string; container: StartedTestContainer }> {
    const id = `node-${this.nextNode++}`;
    const container = await startAppNode(this.backNetwork, {
      nodeId: id,
      redisUrl: this.redis.internalUrl,
      masterKey,
      env: { ...this.env, ...env },
      waitFor,
    });
    this.nodes.set(id, container);
    await connectNetwork(container, this.network.getName(), ['app', id]);
    return { id, container };
  }

  /** Until the balancer counts `count` app servers UP (its DNS discovery and health checks are live). */
  async waitForBalancer(count: number, timeoutMs = 30_000): Promise<void> {
    let up = 0;
    await waitUntil(async () => {
      const headers: Record<string, string> = this.statsPassword ? { authorization: `Basic ${Buffer.from(`admin:${this.statsPassword}`).toString('base64')}` } : {};
      const csv = await fetch(`${this.statsUrl}/;csv`, { headers, signal: AbortSignal.timeout(5_000) }).then((r) => r.text()).catch(() => '');
      // HAProxy's CSV: pxname, svname, ..., status is the 18th column.
      up = csv.split('\n').filter((line) => {
        const cells = line.split(',');
        return cells[0] === 'app' && cells[1]?.startsWith('app') && cells[17] === 'UP';
      }).length;
      return up === count;
    }, { timeoutMs, what: `the balancer to count ${count} nodes UP (has ${up})` });
  }

  /** Runs the keyfleet CLI inside a node's container, as operators do. */
  async cli(args: string[], nodeId = this.nodes.keys().next().value!): Promise<{ exitCode: number; output: string; stdout: string; stderr: string }> {
    const container = this.nodes.get(nodeId);
    if (!container) throw new Error(`no node ${nodeId}`);
    return container.exec(['keyfleet', ...args]);
  }

  /** Kills one node (SIGKILL, no shutdown at all); its container is removed by stop(). */
  async killNode(id: string): Promise<void> {
    const container = this.nodes.get(id);
    if (!container) throw new Error(`no node ${id}`);
    this.nodes.delete(id);
    this.killed.push(container);
    await killContainer(container);
  }

  /** Stops one node the way an orchestrator does (SIGTERM, then it drains and exits). */
  async stopNode(id: string): Promise<void> {
    await this.nodes.get(id)?.stop({ timeout: 20_000 }); // ms: SIGTERM, SIGKILL only after 20 s
    this.nodes.delete(id);
  }

  async stop(): Promise<void> {
    const containers = [this.lb, ...this.nodes.values(), ...this.killed, this.redis?.container, ...(this.sentinels?.containers.values() ?? [])].filter(
      Boolean,
    ) as StartedTestContainer[];
    await Promise.allSettled(containers.map((container) => container.stop({ timeout: 0 })));
    await Promise.allSettled([this.network.stop(), this.backNetwork.stop()]);
  }
}

/** Polls `condition` until it holds; no fixed sleeps in tests. */
export async function waitUntil(
  condition: () => Promise<boolean> | boolean,
  { timeoutMs = 20_000, intervalMs = 50, what = 'condition' }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Runs the app image until its process exits (a node that must refuse to start) and
 * returns the exit code and logs. The container is removed whatever happens.
 */
export async function runNodeToExit(
  network: StartedNetwork,
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ exitCode: number; logs: string }> {
  const { getContainerRuntimeClient } = await import('testcontainers');
  const docker = (await getContainerRuntimeClient()).container.dockerode;
  const container = await docker.createContainer({
    Image: IMAGES.app,
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    Tty: true, // plain log text, no stream framing
    HostConfig: { NetworkMode: network.getName() },
  });
  try {
    await container.start();
    const result = (await Promise.race([
      container.wait(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`node did not exit within ${timeoutMs} ms`)), timeoutMs).unref()),
    ])) as { StatusCode: number };
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })).toString('utf8');
    return { exitCode: result.StatusCode, logs };
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}

/** The keyfleet CLI from the repository (what `npx keyfleet` runs), against `redisUrl`. */
export async function hostCli(args: string[], env: Record<string, string>, input?: string) {
  const { spawn } = await import('node:child_process');
  const cli = resolve(import.meta.dirname, '../../dist/cli/main.js');
  return new Promise<{ exitCode: number; stdout: string; stderr: string }>((done, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => done({ exitCode: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Prometheus from Debian's package (prometheus/Dockerfile), built by scripts/bootstrap.sh. */
export const PROMETHEUS_IMAGE = `keyfleet/prometheus:${IMAGE_TAG}`;

/**
 * Prometheus on `network` (the cluster's front network, where the nodes answer to `app` and
 * the balancer to `lb`), with `files` (name -> content) in /etc/keyfleet/prometheus, where
 * its prometheus.yml is read. Ready once /-/ready answers; its HTTP API is on port 9090.
 */
export async function startPrometheus(network: StartedNetwork, files: Record<string, string>): Promise<StartedTestContainer> {
  return new GenericContainer(PROMETHEUS_IMAGE)
    .withNetwork(network)
    .withName(`kf-prometheus-${randomBytes(3).toString('hex')}`)
    .withCopyContentToContainer(Object.entries(files).map(([name, content]) => ({ content, target: `/etc/keyfleet/prometheus/${name}`, mode: 0o644 })))
    .withExposedPorts(9090)
    .withWaitStrategy(Wait.forHttp('/-/ready', 9090).forStatusCode(200))
    .withStartupTimeout(startupTimeoutMs)
    .start();
}

/** The example resource servers' images (examples/), built by scripts/bootstrap.sh. */
export const RESOURCE_IMAGES = {
  node: `keyfleet/resource-server:${IMAGE_TAG}`,
  python: `keyfleet/resource-server-python:${IMAGE_TAG}`,
} as const;

export interface ResourceServerOptions {
  /** Node (jose) replicas under /api/; compose runs 2. */
  replicas?: number;
  /** Also the Python (python3-jwt) verifier under /py/. */
  python?: boolean;
  audience?: string;
  /** Extra environment for the Node servers (JWKS_CACHE_MAX_AGE, JWKS_COOLDOWN) and the Python one (JWKS_LIFESPAN). */
  env?: Record<string, string>;
  pythonEnv?: Record<string, string>;
}

/** The resource servers of compose.yaml on the cluster's front network, reaching keyfleet through the balancer. */
export class StartedResourceServers {
  constructor(readonly containers: StartedTestContainer[]) {}

  async stop(): Promise<void> {
    await Promise.allSettled(this.containers.map((container) => container.stop({ timeout: 0 })));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

export async function startResourceServers(
  cluster: Cluster,
  { replicas = 2, python = true, audience = 'notes', env = {}, pythonEnv = {} }: ResourceServerOptions = {},
): Promise<StartedResourceServers> {
  const start = (image: string, alias: string, id: string, extra: Record<string, string>, healthPath: string) =>
    new GenericContainer(image)
      .withNetwork(cluster.network)
      .withNetworkAliases(alias, id)
      .withName(`kf-${id}-${randomBytes(3).toString('hex')}`)
      .withEnvironment({ AUDIENCE: audience, KEYFLEET_URL: 'http://lb:8080', SERVER_ID: id, ...extra })
      .withExposedPorts(4000)
      .withWaitStrategy(Wait.forHttp(healthPath, 4000).forStatusCode(200))
      .withStartupTimeout(startupTimeoutMs)
      .start();
  const started = await Promise.allSettled([
    ...Array.from({ length: replicas }, (_, i) => start(RESOURCE_IMAGES.node, 'resource', `resource-${i + 1}`, env, '/api/healthz')),
    ...(python ? [start(RESOURCE_IMAGES.python, 'resource-python', 'resource-python-1', pythonEnv, '/py/healthz')] : []),
  ]);
  const servers = new StartedResourceServers(started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])));
  const failed = started.find((result) => result.status === 'rejected');
  if (failed) {
    await servers.stop();
    throw (failed as PromiseRejectedResult).reason;
  }
  await waitForBackend(cluster, 'resource', replicas);
  if (python) await waitForBackend(cluster, 'resource-python', 1);
  return servers;
}

/** Until the balancer counts `count` servers UP in `backend` (HAProxy's stats CSV). */
export async function waitForBackend(cluster: Cluster, backend: string, count: number, timeoutMs = 30_000): Promise<void> {
  let up = 0;
  await waitUntil(async () => {
    const csv = await fetch(`${cluster.statsUrl}/;csv`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.text()).catch(() => '');
    up = csv.split('\n').filter((line) => {
      const cells = line.split(',');
      return cells[0] === backend && cells[1] !== 'BACKEND' && cells[1] !== 'FRONTEND' && cells[17] === 'UP';
    }).length;
    return up === count;
  }, { timeoutMs, what: `the balancer to count ${count} ${backend} servers UP (has ${up})` });
}
