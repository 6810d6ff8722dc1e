import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { NodeMetrics } from '../../../app/src/metrics/nodeMetrics.js';
import { loadedHolder, T0 } from '../support/ring.js';

// The alert rules are code: promtool (from Debian's prometheus package, in the image
// scripts/bootstrap.sh builds) checks them and runs their unit tests; the rest keeps the
// rules, their tests, the runbook and the metrics the nodes export in step.

const DIR = resolve(import.meta.dirname, '../../../deploy/prometheus');
const IMAGE = `keyfleet/prometheus:${process.env.KEYFLEET_TAG || 'dev'}`;

interface Rule {
  alert?: string;
  expr: string;
  annotations?: Record<string, string>;
}
const rules = (parse(readFileSync(`${DIR}/alerts.yml`, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((group) => group.rules);
const alerts = rules.filter((rule): rule is Rule & { alert: string } => rule.alert !== undefined);

/** promtool in a throwaway container, deploy/prometheus mounted read-only. */
function promtool(...args: string[]) {
  const result = spawnSync(
    'docker',
    ['run', '--rm', '--pull', 'never', '--network', 'none', '--user', '0:0', '-v', `${DIR}:/etc/keyfleet/prometheus:ro`, '--entrypoint', 'promtool', IMAGE, ...args],
    { encoding: 'utf8', timeout: 120_000 },
  );
  if (result.error) throw result.error;
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('alert rules (deploy/prometheus)', () => {
  it('pass promtool check config: the Prometheus configuration and the rules it loads', () => {
    const { status, output } = promtool('check', 'config', '/etc/keyfleet/prometheus/prometheus.yml');
    expect(output, `is ${IMAGE} built? (scripts/bootstrap.sh)`).toMatch(/SUCCESS: \d+ rules found/);
    expect(status, output).toBe(0);
  }, 120_000);

  it('pass their unit tests: promtool test rules alerts.test.yml', () => {
    const { status, output } = promtool('test', 'rules', '/etc/keyfleet/prometheus/alerts.test.yml');
    expect(output).toMatch(/SUCCESS/);
    expect(output).not.toMatch(/FAILED/);
    expect(status, output).toBe(0);
  }, 120_000);

  it('have, each, a unit test where the alert fires', () => {
    const tests = (parse(readFileSync(`${DIR}/alerts.test.yml`, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }).tests;
    const fired = new Set(tests.flatMap((test) => test.alert_rule_test ?? []).filter((t) => t.exp_alerts.length > 0).map((t) => t.alertname));
    expect(alerts.length).toBeGreaterThanOrEqual(7);
    expect(alerts.map((rule) => rule.alert).filter((name) => !fired.has(name))).toEqual([]);
  });

  it('link, each, to its own procedure in docs/runbook.md', () => {
    const runbook = readFileSync(resolve(import.meta.dirname, '../../../docs/runbook.md'), 'utf8');
    // GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped.
    const anchors = new Set([...runbook.matchAll(/^#{2,4} (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-')));
    for (const rule of alerts) {
      expect(rule.annotations?.runbook_url, rule.alert).toBe(`docs/runbook.md#${rule.alert.toLowerCase()}`);
      expect(anchors.has(rule.alert.toLowerCase()), `docs/runbook.md has no "### ${rule.alert}"`).toBe(true);
    }
  });

  it('use only metrics that the nodes export', async () => {
    const { clock, holder } = await loadedHolder(T0);
    const metrics = new NodeMetrics({ nodeId: 'n', role: 'auto', rotationIntervalMs: 1, clock, defaultMetrics: false });
    metrics.observe({ holder, lease: { held: false }, redis: {} });
    const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((metric) => metric.name));
    const used = new Set(rules.flatMap((rule) => rule.expr.match(/\bkeyfleet_[a-z_]+/g) ?? []));
    expect(used.size).toBeGreaterThan(5);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);
  });
});
