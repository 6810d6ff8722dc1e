import { Redis, type RedisOptions } from 'ioredis';

// Fail fast rather than queue forever: a request that needs Redis during an outage should
// get its 503 in about a second, while the ring in memory keeps serving everything else.
const DEFAULT_REDIS_OPTIONS: RedisOptions = {
  maxRetriesPerRequest: 1,
  connectTimeout: 2_000,
  commandTimeout: 2_000,
  enableAutoPipelining: true,
  retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
};

export function connectRedis(url: string, name: string, overrides: RedisOptions = {}): Redis {
  return new Redis(url, { ...DEFAULT_REDIS_OPTIONS, connectionName: `keyfleet-${name}`, ...overrides });
}
