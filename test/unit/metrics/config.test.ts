import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { configProblems, minimalEnv } from '../support/config.js';

const minimal = minimalEnv();

const problemsOf = configProblems;

describe('METRICS_PORT', () => {
  it('defaults to 9464 (the contract), takes another port, and 0 for none', () => {
    expect(loadConfig(minimal).metricsPort).toBe(9464);
    expect(loadConfig({ ...minimal, METRICS_PORT: '9100' }).metricsPort).toBe(9100);
    expect(loadConfig({ ...minimal, METRICS_PORT: '0' }).metricsPort).toBe(0);
  });

  it('refuses a bad value or the app port, naming the variable', () => {
    for (const value of ['abc', '-1', '70000', '80.5']) expect(problemsOf({ ...minimal, METRICS_PORT: value })[0]).toMatch(/^METRICS_PORT: /);
    expect(problemsOf({ ...minimal, PORT: '3000', METRICS_PORT: '3000' })).toEqual([
      'METRICS_PORT: must differ from PORT (the balancer forwards PORT; /metrics stays off it)',
    ]);
  });
});
