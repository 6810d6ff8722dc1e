import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { ConfigError } from '../../../app/src/lib/errors.js';

// The variables of issue 12: sliding `auth` cookie and refresh-token lifetimes.

const minimal = (extra: Record<string, string> = {}) => ({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY: randomBytes(32).toString('base64'), ...extra });

function problems(extra: Record<string, string>): string[] {
  try {
    loadConfig(minimal(extra));
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig: credential lifetimes', () => {
  it('defaults: cookie idle 1 h and absolute SESSION_TTL; refresh families idle 14 d, absolute 30 d, grace 10 s', () => {
    const config = loadConfig(minimal());
    expect(config.authCookie).toEqual({ idleMs: 3_600_000, absoluteMs: 8 * 3_600_000 });
    expect(config.refresh).toEqual({ idleMs: 14 * 86_400_000, absoluteMs: 30 * 86_400_000, graceMs: 10_000 });
    expect(loadConfig(minimal({ SESSION_TTL: '2h' })).authCookie.absoluteMs).toBe(2 * 3_600_000);
    expect(loadConfig(minimal({ AUTH_IDLE_TIMEOUT: '5m', AUTH_ABSOLUTE_LIFETIME: '1d' })).authCookie).toEqual({ idleMs: 300_000, absoluteMs: 86_400_000 });
  });

  it('an idle timeout left unset fits a SESSION_TTL under an hour (a configuration that started before still starts)', () => {
    expect(loadConfig(minimal({ SESSION_TTL: '3s' })).authCookie).toEqual({ idleMs: 3_000, absoluteMs: 3_000 });
    expect(loadConfig(minimal({ SESSION_TTL: '30m' })).authCookie).toEqual({ idleMs: 1_800_000, absoluteMs: 1_800_000 });
  });

  it('refuses bad values, naming the variable', () => {
    expect(problems({ REFRESH_REUSE_GRACE: '31s' })[0]).toMatch(/^REFRESH_REUSE_GRACE: at most 30s/);
    expect(problems({ AUTH_IDLE_TIMEOUT: '9h' })[0]).toMatch(/^AUTH_IDLE_TIMEOUT: /);
    expect(problems({ REFRESH_IDLE_TIMEOUT: '40d' })[0]).toMatch(/^REFRESH_IDLE_TIMEOUT: /);
    expect(problems({ AUTH_ABSOLUTE_LIFETIME: 'soon' })[0]).toMatch(/^AUTH_ABSOLUTE_LIFETIME: "soon" is not a duration/);
    expect(problems({ REFRESH_ABSOLUTE_LIFETIME: '-1d' })[0]).toMatch(/^REFRESH_ABSOLUTE_LIFETIME: /);
  });
});
