import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { configProblems, DEMO_USER, minimalEnv } from '../support/config.js';

const minimal = minimalEnv;
const TOKEN = 'a'.repeat(32);
const DEMO = DEMO_USER;

const problems = configProblems;

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
