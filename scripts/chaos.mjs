#!/usr/bin/env node
// npm run chaos -- --seconds N --seed S [--report FILE]
// The nemesis (test/support/nemesis/) for as long as asked: runs test/integration/chaos.test.ts
// with CHAOS_SECONDS and CHAOS_SEED, after scripts/bootstrap.sh has made sure the images are
// built (KEYFLEET_TAG picks them). Prints the run's figures and every invariant; exits non-zero
// when one is violated. The same seed gives the same schedule of faults (the timing of the
// client traffic around them is the machine's).
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '300' },
    seed: { type: 'string', default: String(Date.now() % 100_000) },
    report: { type: 'string' },
    'no-bootstrap': { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const seed = Number(values.seed);
if (!Number.isInteger(seconds) || seconds < 10) {
  console.error('chaos: --seconds must be a whole number, at least 10');
  process.exit(2);
}
if (!Number.isInteger(seed)) {
  console.error('chaos: --seed must be a whole number');
  process.exit(2);
}
console.log(`chaos: seed ${seed}, ${seconds} s of faults (images keyfleet/*:${process.env.KEYFLEET_TAG || 'dev'})`);
const env = { ...process.env, CHAOS_SECONDS: String(seconds), CHAOS_SEED: String(seed), TESTCONTAINERS_RYUK_DISABLED: 'true' };
if (values.report) env.CHAOS_REPORT = resolve(values.report);
if (!values['no-bootstrap']) {
  const boot = spawnSync('bash', ['scripts/bootstrap.sh'], { cwd: root, stdio: 'inherit', env });
  if (boot.status !== 0) process.exit(boot.status ?? 1);
}
const run = spawnSync('npx', ['vitest', 'run', '--project', 'integration', 'test/integration/chaos.test.ts'], { cwd: root, stdio: 'inherit', env });
process.exit(run.status ?? 1);
