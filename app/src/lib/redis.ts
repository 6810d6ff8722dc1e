import { Redis, type RedisOptions } from 'ioredis';
import { redactUrl } from './log.js';

// Fail fast rather than queue forever: a request that needs Redis during an outage should
// get its 503 in about a second, while the ring in memory keeps serving everything else.
const DEFAULT_REDIS_OPTIONS: RedisOptions = {
  maxRetriesPerRequest: 1,
  connectTimeout: 2_000,
  commandTimeout: 2_000,
  enableAutoPipelining: true,
  retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
};

/** One Redis (REDIS_URL), or a master found through Sentinel (REDIS_SENTINELS). */
export type RedisTarget =
  | { kind: 'url'; url: string }
  | {
      kind: 'sentinel';
      sentinels: { host: string; port: number }[];
      name: string;
      username?: string;
      password?: string;
      sentinelPassword?: string;
    };

type Env = Record<string, string | undefined>;

/**
 * Where Redis is, from the environment: `REDIS_URL`, or `REDIS_SENTINELS` (host:port,...)
 * with `REDIS_MASTER_NAME`, `REDIS_USERNAME`, `REDIS_PASSWORD` and optionally
 * `REDIS_SENTINEL_PASSWORD`. Problems name their variable.
 */
export function redisTargetFromEnv(env: Env): { target?: RedisTarget; problems: string[] } {
  const url = env.REDIS_URL || undefined;
  const sentinels = env.REDIS_SENTINELS || undefined;
  if (url && sentinels) return { problems: ['REDIS_URL and REDIS_SENTINELS: set one, not both'] };
  if (url) {
    if (!/^rediss?:\/\/[^/]+/.test(url)) return { problems: ['REDIS_URL: must be a redis:// or rediss:// URL'] };
    return { target: { kind: 'url', url }, problems: [] };
  }
  if (!sentinels) return { problems: ['REDIS_URL: is required (redis://user:pass@host:6379/0), or REDIS_SENTINELS for Sentinel'] };
  const parsed = sentinels.split(',').map((entry) => /^\s*([A-Za-z0-9.-]+):(\d{1,5})\s*$/.exec(entry));
  if (parsed.some((match) => !match || Number(match[2]) > 65535)) {
    return { problems: ['REDIS_SENTINELS: must be host:port[,host:port...]'] };
  }
  return {
    target: {
      kind: 'sentinel',
      sentinels: parsed.map((match) => ({ host: match![1]!, port: Number(match![2]) })),
      name: env.REDIS_MASTER_NAME || 'keyfleet',
      ...(env.REDIS_USERNAME ? { username: env.REDIS_USERNAME } : {}),
      ...(env.REDIS_PASSWORD ? { password: env.REDIS_PASSWORD } : {}),
      ...(env.REDIS_SENTINEL_PASSWORD ? { sentinelPassword: env.REDIS_SENTINEL_PASSWORD } : {}),
    },
    problems: [],
  };
}

/** For logs: never the password. */
export function describeTarget(target: RedisTarget): string {
  if (target.kind === 'url') return redactUrl(target.url);
  return `sentinel ${target.name}@${target.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
}

export function connectRedis(target: RedisTarget, name: string, overrides: RedisOptions = {}): Redis {
  const options = { ...DEFAULT_REDIS_OPTIONS, connectionName: `keyfleet-${name}`, ...overrides };
  if (target.kind === 'url') return new Redis(target.url, options);
  const { sentinels, name: masterName, username, password, sentinelPassword } = target;
  // ioredis asks the Sentinels for the master and follows it across failovers.
  return new Redis({ ...options, sentinels, name: masterName, username, password, sentinelPassword });
}

/**
 * Subscribes once the connection is ready. ioredis sends a command issued between its
 * 'connect' and 'ready' events (while it runs its ready check) at once; a SUBSCRIBE sent
 * then puts the connection in subscriber mode, the ready check's INFO fails, and the
 * subscription is gone without an error: the node hears no announcement until it
 * reconnects (found by the example app, whose start() came after an await). Queued
 * before 'connect', or sent after 'ready', it holds; ioredis resubscribes on reconnection.
 */
export async function subscribeWhenReady(client: Redis, ...channels: string[]): Promise<void> {
  if (client.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      const ready = () => {
        client.off('end', ended);
        resolve();
      };
      const ended = () => {
        client.off('ready', ready);
        reject(new Error('Redis connection closed before it was ready'));
      };
      client.once('ready', ready);
      client.once('end', ended);
      if (client.status === 'wait') client.connect().catch(() => undefined);
    });
  }
  await client.subscribe(...channels);
}
