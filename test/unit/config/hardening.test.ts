import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { configProblems, DEMO_USER, minimalEnv } from '../support/config.js';

// The variables issue 11 added: who sees the dashboard, which origins may post, cookie
// names, the login slow-down. Bad values exit at start-up naming the variable.

const DEMO = DEMO_USER;
const minimal = () => ({ ...minimalEnv(), USERS: DEMO });

const problems = configProblems;

describe('DASHBOARD_USERS', () => {
  it('is required with DASHBOARD=login, and names only accounts of USERS', () => {
    expect(problems({ ...minimal(), DASHBOARD: 'login' })).toEqual([expect.stringMatching(/^DASHBOARD_USERS: is required with DASHBOARD=login/)]);
    expect(problems({ ...minimal(), DASHBOARD: 'login', DASHBOARD_USERS: 'demo, mallory' })).toEqual(['DASHBOARD_USERS: mallory not in USERS']);
    expect(loadConfig({ ...minimal(), DASHBOARD: 'login', DASHBOARD_USERS: ' demo ,' }).dashboardUsers).toEqual(new Set(['demo']));
    expect(loadConfig(minimal()).dashboardUsers).toEqual(new Set());
  });
});

describe('PUBLIC_ORIGINS', () => {
  it('defaults to none (the request\'s own origin), and reads a list of origins', () => {
    expect(loadConfig(minimal()).publicOrigins).toEqual([]);
    expect(loadConfig({ ...minimal(), PUBLIC_ORIGINS: 'https://keyfleet.example.com, http://127.0.0.1:8080/' }).publicOrigins).toEqual([
      'https://keyfleet.example.com',
      'http://127.0.0.1:8080',
    ]);
  });

  it('names PUBLIC_ORIGINS for anything that is not scheme://host[:port]', () => {
    for (const bad of ['keyfleet.example.com', 'https://keyfleet.example.com/app', 'ftp://x.example', 'https://x.example?q', 'null']) {
      const found = problems({ ...minimal(), PUBLIC_ORIGINS: bad });
      expect(found, bad).toHaveLength(1);
      expect(found[0], bad).toMatch(/^PUBLIC_ORIGINS: .* is not an origin/);
    }
  });
});

describe('COOKIE_HOST_PREFIX and LOGIN_SLOWDOWN', () => {
  it('cookie names stay auth/sid unless switched on', () => {
    expect(loadConfig(minimal()).cookieHostPrefix).toBe(false);
    expect(loadConfig({ ...minimal(), COOKIE_HOST_PREFIX: 'true' }).cookieHostPrefix).toBe(true);
    expect(problems({ ...minimal(), COOKIE_HOST_PREFIX: 'yes' })[0]).toMatch(/^COOKIE_HOST_PREFIX: /);
  });

  it('the slow-down starts at 1 s and stops growing at 1 min by default', () => {
    expect(loadConfig(minimal()).loginThrottle).toEqual({ maxFailuresPerAccount: 5, maxFailuresPerAddress: 50, windowMs: 900_000, slowdownBaseMs: 1_000, slowdownMaxMs: 60_000, pendingMs: 10_000 });
    expect(loadConfig({ ...minimal(), LOGIN_PENDING_TTL: '2s' }).loginThrottle).toMatchObject({ pendingMs: 2_000 });
    expect(problems({ ...minimal(), LOGIN_PENDING_TTL: '0s' })[0]).toMatch(/^LOGIN_PENDING_TTL: /);
    expect(loadConfig({ ...minimal(), LOGIN_SLOWDOWN: '250ms', LOGIN_SLOWDOWN_MAX: '10s' }).loginThrottle).toMatchObject({ slowdownBaseMs: 250, slowdownMaxMs: 10_000 });
    expect(problems({ ...minimal(), LOGIN_SLOWDOWN: 'soon' })[0]).toMatch(/^LOGIN_SLOWDOWN: /);
    // A zero delay would make Redis refuse the script, and the throttle fail open.
    expect(problems({ ...minimal(), LOGIN_SLOWDOWN: '0s' })[0]).toMatch(/^LOGIN_SLOWDOWN: /);
    expect(problems({ ...minimal(), LOGIN_SLOWDOWN: '2m' })).toEqual([expect.stringMatching(/^LOGIN_SLOWDOWN, LOGIN_SLOWDOWN_MAX: /)]);
  });
});
