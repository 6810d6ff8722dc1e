import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { ConfigError } from '../../../app/src/lib/errors.js';

// Shared by the configuration tests: the smallest valid environment, and the problems a bad
// one is refused with.

/** demo / demo-password, as in compose.yaml. */
export const DEMO_USER = 'demo=scrypt.32768.8.1.-EwYznCYdhMgxYnKdWk4TQ.W_1e2_xu7FQ2CGPBfzMw-CKMmpQJMlKXDxslLq8hvZE';

export const minimalEnv = (): Record<string, string> => ({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY: randomBytes(32).toString('base64') });

/** The problems loadConfig reports for `env` (fails the test if it accepts it). */
export function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}
