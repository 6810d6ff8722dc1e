import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ConfigError, createKeyfleet, ERRORS, KeyfleetError } from '../../../app/src/index.js';

// The entry point as an app meets it first: configuration from the environment, and every
// problem named at once (nothing is opened when the configuration is bad).

describe('createKeyfleet()', () => {
  it('throws a ConfigError naming each missing or bad variable', () => {
    let caught: unknown;
    try {
      createKeyfleet({ env: { KEYRING_MASTER_KEY: 'c2hvcnQ=', TOKEN_TTL: 'soon' } });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const problems = (caught as ConfigError).problems.join('\n');
    for (const variable of ['REDIS_URL', 'KEYRING_MASTER_KEY', 'TOKEN_TTL']) expect(problems).toContain(variable);
  });

  it("exposes the node's Redis connection as kf.redis, read-only", async () => {
    const kf = createKeyfleet({ env: { REDIS_URL: 'redis://127.0.0.1:1', KEYRING_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'), LOG_LEVEL: 'silent' } });
    expect(kf.redis).toBeInstanceOf(Redis);
    expect(kf.redis.options.connectionName).toBe('keyfleet-main');
    expect(() => {
      (kf as { redis: unknown }).redis = undefined;
    }).toThrow(TypeError);
    await kf.stop();
  });

  it('exports the error classes and the catalogue they read', () => {
    const error = new KeyfleetError('ERR_NO_CREDENTIALS');
    expect(error).toBeInstanceOf(Error);
    expect([error.code, error.status, error.message]).toEqual(['ERR_NO_CREDENTIALS', 401, ERRORS.ERR_NO_CREDENTIALS.message]);
  });
});
