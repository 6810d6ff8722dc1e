#!/usr/bin/env node
// CPU profile of one keyfleet node under load, per request kind: where a request's time goes.
//
//   node scripts/profile.mjs [healthz|token|cookie|session|token-cold|cookie-cold|session-cold ...]
//                            [--seconds 8] [--connections 16] [--cold-credentials 12000]
//
// *-cold kinds cycle through --cold-credentials distinct logins of a cheap-hash account
// (more than the node's caches hold, so every request is a full check).
//
// Starts a throwaway Redis container on a loopback port (keyfleet/redis:dev, run
// scripts/bootstrap.sh first), then for each kind: starts `node --cpu-prof dist/server.js` on
// the host, drives it with autocannon, stops it (SIGTERM, so the profile is written) and
// prints the hottest functions by self time and the share of samples under jose, express,
// pino, ioredis. Profiles land in bench/profiles/<kind>.cpuprofile (open them in Chrome
// DevTools or speedscope). Loopback only; the container is removed on exit.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const [value] = args.splice(at, 2).slice(1);
  return Number(value);
};
const SECONDS = opt('seconds', 8);
const COLD = opt('cold-credentials', 12_000);
const CONNECTIONS = opt('connections', 16);
const kinds = args.length > 0 ? args : ['healthz', 'token', 'cookie'];
const REDIS_PORT = 16379 + Math.floor(Math.random() * 1000);
const NODE_PORT = 13000 + Math.floor(Math.random() * 1000);
const REDIS_NAME = `kfprof-redis-${process.pid}`;
const OUT = join(ROOT, 'bench', 'profiles');
// demo / demo-password, as in compose.yaml
// and bench / bench-password with a cheap hash, as in bench/compose.bench.yaml (cold kinds)
const USERS = 'demo=scrypt.32768.8.1.-EwYznCYdhMgxYnKdWk4TQ.W_1e2_xu7FQ2CGPBfzMw-CKMmpQJMlKXDxslLq8hvZE,bench=scrypt.1024.1.1.Lm-XDVwwJzLviBAFVD0MkA.-5rY77VPkSryWPbpsp90BR-7AfRXom3yduDxj0Pvrj4';

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const redisPassword = randomBytes(18).toString('base64url');
const masterKey = randomBytes(32).toString('base64');

function cleanup() {
  try {
    execFileSync('docker', ['rm', '-f', REDIS_NAME], { stdio: 'ignore' });
  } catch {}
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

async function until(what, fn, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function startNode(kind, { profiled = true } = {}) {
  const dir = join(OUT, `.${kind}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [...(profiled ? ['--cpu-prof', '--cpu-prof-dir', dir] : []), 'dist/server.js'], {
    cwd: ROOT,
    env: {
      ...process.env,
      REDIS_URL: `redis://keyfleet:${redisPassword}@127.0.0.1:${REDIS_PORT}/0`,
      KEYRING_MASTER_KEY: masterKey,
      PORT: String(NODE_PORT),
      NODE_ID: `profile-${kind}`,
      USERS,
      LOG_LEVEL: 'warn',
      SHUTDOWN_DRAIN: '100ms',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return { child, dir };
}

async function coldCredentials(base, kind, n) {
  const list = [];
  let started = 0;
  const worker = async () => {
    while (started < n) {
      started++;
      const reply = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'bench', password: 'bench-password' }), signal: AbortSignal.timeout(15_000) });
      if (!reply.ok) throw new Error(`login: ${reply.status}`);
      const { token } = await reply.json();
      const cookies = reply.headers.getSetCookie().map((line) => line.split(';')[0]);
      list.push(kind === 'token-cold' ? { authorization: `Bearer ${token}` } : { cookie: cookies.find((c) => c.startsWith(kind === 'cookie-cold' ? 'auth=' : 'sid=')) });
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return list;
}

async function credentials(base) {
  const reply = await fetch(`${base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
  });
  if (!reply.ok) throw new Error(`login: ${reply.status}`);
  const { token } = await reply.json();
  const cookies = reply.headers.getSetCookie().map((line) => line.split(';')[0]);
  return {
    healthz: { path: '/healthz', headers: {} },
    token: { path: '/me', headers: { authorization: `Bearer ${token}` } },
    cookie: { path: '/me', headers: { cookie: cookies.find((c) => c.startsWith('auth=')) } },
    session: { path: '/me', headers: { cookie: cookies.find((c) => c.startsWith('sid=')) } },
  };
}

let cursor = 0;
const load = (url, list, duration) =>
  autocannon({
    url,
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, headers: { ...request.headers, ...list[cursor++ % list.length] } }) }],
    connections: CONNECTIONS,
    duration,
    pipelining: 1,
  });

/** Self time per function, and the share of samples with a frame of each package on the stack. */
function summarize(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const counts = new Map();
  for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  const total = profile.samples.length;
  const self = new Map();
  const packages = { jose: 0, express: 0, 'express-session/connect-redis': 0, ioredis: 0, pino: 0, 'node:crypto (native)': 0 };
  let idle = 0;
  for (const [id, n] of counts) {
    const node = byId.get(id);
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') idle += n;
    const where = url ? url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/') : '';
    const label = `${functionName || '(anonymous)'} ${where}${where ? `:${lineNumber + 1}` : ''}`;
    self.set(label, (self.get(label) ?? 0) + n);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at).callFrame;
      if (frame.url.includes('node_modules/jose/')) seen.add('jose');
      if (/node_modules\/(express|router)\//.test(frame.url)) seen.add('express');
      if (/node_modules\/(express-session|connect-redis)\//.test(frame.url)) seen.add('express-session/connect-redis');
      if (frame.url.includes('node_modules/ioredis/')) seen.add('ioredis');
      if (frame.url.includes('node_modules/pino')) seen.add('pino');
      if (frame.url === 'node:internal/crypto/sig' || /^(verify|sign|decipher|update|final)$/i.test(frame.functionName) && frame.url.startsWith('node:internal/crypto')) seen.add('node:crypto (native)');
    }
    for (const name of seen) packages[name] += n;
  }
  const busy = total - idle;
  const pct = (n, of = busy) => `${((100 * n) / of).toFixed(1)}%`;
  const top = [...self].filter(([label]) => !label.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 15);
  return { total, idle, busy, packages, top, pct };
}

const results = {};
async function profile(kind) {
  const base = `http://127.0.0.1:${NODE_PORT}`;
  const ready = () => until('node ready', async () => (await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) })).status === 200);
  let path;
  let list;
  if (kind.endsWith('-cold')) {
    // The logins on a node of their own, not profiled; the ring and sessions stay in Redis.
    const minter = startNode(`${kind}-logins`, { profiled: false });
    await ready();
    [path, list] = ['/me', await coldCredentials(base, kind, COLD)];
    minter.child.kill('SIGTERM');
    await new Promise((done) => minter.child.once('exit', done));
    rmSync(minter.dir, { recursive: true, force: true });
  }
  const { child, dir } = startNode(kind);
  await ready();
  if (!list) {
    const creds = await credentials(base);
    [path, list] = [creds[kind].path, [creds[kind].headers]];
  }
  await load(`${base}${path}`, list, 2); // warm up
  const result = await load(`${base}${path}`, list, SECONDS);
  child.kill('SIGTERM');
  await new Promise((done) => child.once('exit', done));
  const [file] = readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'));
  const target = join(OUT, `${kind}.cpuprofile`);
  renameSync(join(dir, file), target);
  rmSync(dir, { recursive: true, force: true });
  const summary = summarize(target);
  results[kind] = { rps: result.requests.average, non2xx: result.non2xx, summary };
  console.log(`\n== ${kind}: ${path} ${Math.round(result.requests.average)} req/s, p99 ${result.latency.p99} ms, non-2xx ${result.non2xx}; profile ${target.replace(`${ROOT}/`, '')}`);
  console.log(`   samples: ${summary.total}, busy ${summary.pct(summary.busy, summary.total)} of them`);
  console.log('   share of busy samples with a frame of …');
  for (const [name, n] of Object.entries(summary.packages)) if (n > 0) console.log(`     ${name.padEnd(32)} ${summary.pct(n)}`);
  console.log('   hottest functions, self time (% of busy samples):');
  for (const [label, n] of summary.top) console.log(`     ${summary.pct(n).padStart(6)}  ${label}`);
}

mkdirSync(OUT, { recursive: true });
execFileSync('docker', ['run', '-d', '--rm', '--name', REDIS_NAME, '-e', `REDIS_PASSWORD=${redisPassword}`, '-p', `127.0.0.1:${REDIS_PORT}:6379`, `keyfleet/redis:${process.env.KEYFLEET_TAG || 'dev'}`], { stdio: 'ignore' });
await until('redis', async () => execFileSync('docker', ['exec', REDIS_NAME, 'redis-cli', '--no-auth-warning', '--user', 'keyfleet', '--pass', redisPassword, 'ping']).toString().includes('PONG'));
for (const kind of kinds) await profile(kind);
