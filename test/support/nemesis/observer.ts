import { Redis } from 'ioredis';
import type { Cluster } from '../cluster.js';
import { mappedPort } from '../docker.js';
import type { History, RingKeySample } from './history.js';

// Watches the cluster from the side while the nemesis runs: every node's /healthz on its own
// published port (its ring version), and, from Redis as the admin user, the heartbeats, the
// lease and the ring's key list (metadata is stored in clear; material stays sealed).

const PERIOD_MS = 300;
const PROBE_TIMEOUT_MS = 1_000;

export class Observer {
  private redis?: Redis;
  private timer?: NodeJS.Timeout;
  private polling = false;
  /** The newest ring the observer read from Redis. */
  latestKeys: RingKeySample[] = [];

  constructor(
    private readonly cluster: Cluster,
    private readonly history: History,
  ) {}

  async start(): Promise<void> {
    await this.connect();
    this.timer = setInterval(() => void this.poll(), PERIOD_MS);
  }

  /** After Redis restarted: its published port may have changed. */
  async connect(): Promise<void> {
    this.redis?.disconnect();
    const port = await mappedPort(this.cluster.redis.container, 6379);
    this.redis = new Redis({
      host: this.cluster.redis.container.getHost(),
      port,
      username: 'admin',
      password: this.cluster.redis.adminPassword,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      connectTimeout: 1_000,
      retryStrategy: () => 500,
    });
    this.redis.on('error', () => undefined); // outages are expected; polls just miss
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.polling) await new Promise((resolve) => setTimeout(resolve, 20));
    this.redis?.disconnect();
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await Promise.allSettled([this.pollNodes(), this.pollRedis()]);
    } finally {
      this.polling = false;
    }
  }

  private async pollNodes(): Promise<void> {
    await Promise.allSettled(
      [...this.cluster.nodes].map(async ([node, container]) => {
        const at = Date.now();
        const response = await fetch(`http://${container.getHost()}:${container.getMappedPort(3000)}/healthz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
        const body = (await response.json()) as { ring?: { version?: number } | null };
        this.history.health.push({ at, node, status: response.status, ...(body.ring?.version !== undefined ? { version: body.ring.version } : {}) });
      }),
    );
  }

  private async pollRedis(): Promise<void> {
    const redis = this.redis;
    if (!redis || redis.status !== 'ready') return;
    const at = Date.now();
    const [lease, ring, version] = await Promise.all([redis.get('keyfleet:lease'), redis.get('keyfleet:ring'), redis.get('keyfleet:ring:version')]);
    this.history.leases.push({ at, token: lease });
    if (ring) {
      const doc = JSON.parse(ring) as { version: number; keys: RingKeySample[] };
      const keys = doc.keys.map(({ kid, purpose, state, activatedAt, deleteAfter }) => ({ kid, purpose, state, activatedAt, deleteAfter }));
      this.latestKeys = keys;
      this.history.rings.push({ at, version: Number(version ?? doc.version), keys });
    }
    for (const beat of await beatsNow(redis)) this.history.beats.push({ node: beat.id, at: beat.at, primary: beat.primary, ringVersion: beat.ringVersion });
  }

  /** The key the ring holds active for `purpose` now, as last read. */
  activeKid(purpose: string): string | undefined {
    return this.latestKeys.find((key) => key.purpose === purpose && key.state === 'active')?.kid;
  }

  /**
   * One look at whether the cluster is healthy: every node heartbeating on Redis's ring
   * version, exactly one of them primary and holding the lease, and the balancer counting
   * every node UP. (Heartbeats, not each node's published port: a port published through a
   * network the node was cut from and reconnected to may not come back.)
   */
  async healthy(): Promise<{ ok: boolean; why: string }> {
    const redis = this.redis;
    if (!redis || redis.status !== 'ready') return { ok: false, why: 'Redis not reachable' };
    const version = Number((await redis.get('keyfleet:ring:version')) ?? 0);
    const lease = await redis.get('keyfleet:lease');
    const holder = lease?.slice(0, lease.lastIndexOf('/'));
    if (!holder || !this.cluster.nodes.has(holder)) return { ok: false, why: `lease holder ${holder ?? 'none'}` };
    const beats = (await beatsNow(redis)).filter((beat) => Date.now() - beat.at < 2_000);
    for (const node of this.cluster.nodes.keys()) {
      const beat = beats.find((b) => b.id === node);
      if (!beat || beat.ringVersion !== version) return { ok: false, why: `${node} ${beat ? `on ring v${beat.ringVersion}, not v${version}` : 'not heartbeating'}` };
    }
    const primaries = beats.filter((beat) => beat.primary).map((beat) => beat.id);
    if (primaries.length !== 1 || primaries[0] !== holder) return { ok: false, why: `heartbeats name primaries [${primaries.join(', ')}], lease ${holder}` };
    const up = await this.balancerUp();
    if (up !== this.cluster.nodes.size) return { ok: false, why: `the balancer counts ${up} of ${this.cluster.nodes.size} nodes UP` };
    return { ok: true, why: '' };
  }

  private async balancerUp(): Promise<number> {
    const csv = await fetch(`${this.cluster.statsUrl}/;csv`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) }).then((r) => r.text()).catch(() => '');
    return csv.split('\n').filter((line) => {
      const cells = line.split(',');
      return cells[0] === 'app' && cells[1]?.startsWith('app') && cells[17] === 'UP';
    }).length;
  }
}

/** Every heartbeat in Redis now (SCAN: the keyspace also holds every session). */
async function beatsNow(redis: Redis): Promise<{ id: string; at: number; primary: boolean; ringVersion: number }[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', 'keyfleet:node:*', 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  return (await redis.mget(...keys)).filter((v): v is string => v !== null).map((v) => JSON.parse(v));
}
