import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { ConfigError } from '../../../app/src/lib/errors.js';

const minimal = () => ({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY: randomBytes(32).toString('base64') });
const TOKEN = 'a'.repeat(32);
const DEMO = 'demo=scrypt.32768.8.1.-EwYznCYdhMgxYnKdWk4TQ.W_1e2_xu7FQ2CGPBfzMw-CKMmpQJMlKXDxslLq8hvZE';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig: DASHBOARD and DASHBOARD_TOKEN', () => {
  it('is off unless asked for', () => {
    expect(loadConfig(minimal())).toMatchObject({ dashboard: 'off' });
    expect(loadConfig(minimal()).dashboardToken).toBeUndefined();
    expect(loadConfig({ ...minimal(), DASHBOARD: '' }).dashboard).toBe('off');
  });

  it('reads each mode', () => {
    for (const mode of ['off', 'public'] as const) expect(loadConfig({ ...minimal(), DASHBOARD: mode }).dashboard).toBe(mode);
    expect(loadConfig({ ...minimal(), DASHBOARD: 'login', USERS: DEMO, DASHBOARD_USERS: 'demo' })).toMatchObject({ dashboard: 'login', dashboardUsers: new Set(['demo']) });
    expect(loadConfig({ ...minimal(), DASHBOARD: 'token', DASHBOARD_TOKEN: TOKEN })).toMatchObject({ dashboard: 'token', dashboardToken: TOKEN });
  });

  it('names DASHBOARD for a bad value', () => {
    const found = problems({ ...minimal(), DASHBOARD: 'yes' });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^DASHBOARD: /);
    expect(found[0]).toMatch(/off|public|token|login/);
  });

  it('names DASHBOARD_TOKEN when token mode has none, or a short one', () => {
    expect(problems({ ...minimal(), DASHBOARD: 'token' })).toEqual(['DASHBOARD_TOKEN: is required with DASHBOARD=token']);
    const short = problems({ ...minimal(), DASHBOARD: 'token', DASHBOARD_TOKEN: 'short' });
    expect(short).toHaveLength(1);
    expect(short[0]).toMatch(/^DASHBOARD_TOKEN: must be at least 32 characters/);
  });
});
