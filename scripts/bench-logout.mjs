#!/usr/bin/env node
// npm run bench:logout: how soon a logout is honoured by every node, and what token and
// `auth`-cookie requests cost in Redis commands now that every node checks revocations.
//
//   node scripts/bench-logout.mjs [--logouts 200] [--seconds 5] [--connections 8]
//   (the images must exist: KEYFLEET_TAG=<tag> bash scripts/bootstrap.sh; default tag dev)
//
// A cluster of its own through testcontainers: Redis, three app nodes and HAProxy, on a
// Docker network of their own; only loopback ports are published, and everything is stopped
// on exit, failure or Ctrl-C.
//
// Propagation: for each of --logouts logins, POST /logout (bearer token and `auth` cookie,
// through the balancer; it answers once every live node's heartbeat confirms, at most 1 s),
// then, from the moment its answer arrives, every node is asked on its
// own port, in a tight loop, until it refuses both the token and the cookie; the figure is the
// time until the last node refused (the answering node included). One run: p50, p99, max.
//
// Redis commands per request: INFO commandstats deltas (admin user) over --seconds of GET /me
// through the balancer with one token (then one cookie), minus the idle rate of the same
// cluster measured over the same span with no requests (heartbeats, lease, version and
// revocation-sequence checks): scripts/bench.mjs's method.
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { GenericContainer, Network, Wait } from 'testcontainers';

process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const num = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(argv[at + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name}: expected a positive number`);
  return value;
};
const OPTS = { logouts: num('logouts', 200), seconds: num('seconds', 5), connections: num('connections', 8) };
const TAG = process.env.KEYFLEET_TAG || 'dev';
const NODES = 3;
const USERS = /USERS: (demo=scrypt\.[^\s]+)/.exec(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'))?.[1];
if (!USERS) throw new Error('compose.yaml has no demo USERS entry');
const log = (...parts) => console.error(`bench-logout: ${parts.join(' ')}`);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const timeout = () => AbortSignal.timeout(5_000);

const started = [];
let network;
async function cleanUp() {
  await Promise.allSettled(started.map((container) => container.stop({ timeout: 0 })));
  await network?.stop().catch(() => undefined);
}
process.once('SIGINT', () => void cleanUp().finally(() => process.exit(130)));

async function startCluster() {
  network = await new Network().start();
  const password = randomBytes(18).toString('base64url');
  const adminPassword = randomBytes(18).toString('base64url');
  const redis = await new GenericContainer(`keyfleet/redis:${TAG}`)
    .withNetwork(network)
    .withNetworkAliases('redis')
    .withEnvironment({ REDIS_PASSWORD: password, REDIS_ADMIN_PASSWORD: adminPassword })
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .start();
  started.push(redis);
  const masterKey = randomBytes(32).toString('base64');
  const node = (id) =>
    new GenericContainer(`keyfleet/app:${TAG}`)
      .withNetwork(network)
      .withNetworkAliases('app', id)
      .withEnvironment({ NODE_ID: id, REDIS_URL: `redis://keyfleet:${password}@redis:6379/0`, KEYRING_MASTER_KEY: masterKey, USERS, LOG_LEVEL: 'warn' })
      .withExposedPorts(3000)
      .withWaitStrategy(Wait.forHttp('/healthz', 3000).forStatusCode(200))
      .withStartupTimeout(60_000)
      .start()
      .then((container) => (started.push(container), [id, container]));
  const nodes = [await node('node-1')];
  nodes.push(...(await Promise.all(Array.from({ length: NODES - 1 }, (_, i) => node(`node-${i + 2}`)))));
  const lb = await new GenericContainer(`keyfleet/haproxy:${TAG}`)
    .withNetwork(network)
    .withCopyFilesToContainer([{ source: join(ROOT, 'secrets/tls/haproxy.pem'), target: '/usr/local/etc/haproxy/certs/keyfleet.pem', mode: 0o644 }])
    .withExposedPorts(8080, 8443, 8404)
    .withWaitStrategy(Wait.forListeningPorts())
    .start();
  started.push(lb);
  const base = `http://127.0.0.1:${lb.getMappedPort(8080)}`;
  // Until the balancer has answered from every node.
  const seen = new Set();
  for (const deadline = Date.now() + 60_000; seen.size < NODES; await sleep(100)) {
    if (Date.now() > deadline) throw new Error(`only ${seen.size}/${NODES} nodes answered through the balancer`);
    const reply = await fetch(`${base}/healthz`, { signal: timeout() }).catch(() => undefined);
    if (reply?.status === 200) seen.add(reply.headers.get('x-node-id'));
  }
  const admin = new Redis({ host: '127.0.0.1', port: redis.getMappedPort(6379), username: 'admin', password: adminPassword, maxRetriesPerRequest: 1 });
  return { base, admin, nodeUrls: nodes.map(([id, c]) => [id, `http://127.0.0.1:${c.getMappedPort(3000)}`]) };
}

async function login(base) {
  const reply = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'demo-password' }), signal: timeout() });
  if (reply.status !== 200) throw new Error(`login answered ${reply.status}`);
  const body = await reply.json();
  const auth = reply.headers.getSetCookie().map((line) => line.split(';')[0]).find((c) => c.startsWith('auth='));
  return { token: body.token, auth };
}

const status = (url, headers) => fetch(`${url}/me`, { headers, signal: timeout() }).then(async (r) => (await r.arrayBuffer(), r.status));

/** ms from `from` until `url` refuses `headers` (asked again at once until it does). */
async function refusedAfter(url, headers, from) {
  for (;;) {
    const code = await status(url, headers);
    if (code === 401) return performance.now() - from;
    if (code !== 200) throw new Error(`${url} answered ${code}`);
    if (performance.now() - from > 5_000) throw new Error(`${url} still accepts a credential 5 s after its logout`);
  }
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];

async function propagation({ base, nodeUrls }) {
  const times = [];
  const answers = [];
  for (let i = 0; i < OPTS.logouts; i++) {
    const who = await login(base);
    const token = { authorization: `Bearer ${who.token}` };
    const cookie = { cookie: who.auth };
    // Every node accepts both first (and has verified them once: the verify cache is warm).
    for (const [, url] of nodeUrls) for (const headers of [token, cookie]) if ((await status(url, headers)) !== 200) throw new Error(`${url} refused a fresh login`);
    const sent = performance.now();
    const reply = await fetch(`${base}/logout`, { method: 'POST', headers: { ...token, cookie: who.auth }, signal: timeout() });
    const answered = performance.now();
    answers.push(answered - sent);
    if (reply.status !== 200) throw new Error(`logout answered ${reply.status}`);
    await reply.arrayBuffer();
    const each = await Promise.all(nodeUrls.flatMap(([, url]) => [refusedAfter(url, token, answered), refusedAfter(url, cookie, answered)]));
    times.push(Math.max(...each));
    if ((i + 1) % 50 === 0) log(`${i + 1}/${OPTS.logouts} logouts`);
  }
  times.sort((a, b) => a - b);
  answers.sort((a, b) => a - b);
  return { logouts: times.length, p50: quantile(times, 0.5), p99: quantile(times, 0.99), max: times.at(-1), answerP50: quantile(answers, 0.5), answerP99: quantile(answers, 0.99) };
}

async function commandStats(admin) {
  const text = await admin.info('commandstats');
  const calls = {};
  for (const line of text.split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (match) calls[match[1]] = Number(match[2]);
  }
  return { calls, at: performance.now() };
}

/** Commands per second by name between two readings (the INFO reading itself left out). */
function rates(from, to) {
  const seconds = (to.at - from.at) / 1000;
  const out = {};
  for (const [name, n] of Object.entries(to.calls)) {
    if (name === 'info') continue;
    const delta = n - (from.calls[name] ?? 0);
    if (delta > 0) out[name] = delta / seconds;
  }
  return { out, seconds };
}

async function redisPerRequest({ base, admin }) {
  const who = await login(base);
  const from = await commandStats(admin);
  await sleep(OPTS.seconds * 1000);
  const idle = rates(from, await commandStats(admin)).out;
  const results = {};
  for (const [kind, headers] of [['token', { authorization: `Bearer ${who.token}` }], ['cookie', { cookie: who.auth }]]) {
    const before = await commandStats(admin);
    const run = await autocannon({ url: `${base}/me`, headers, connections: OPTS.connections, duration: OPTS.seconds });
    const after = await commandStats(admin);
    const { out, seconds } = rates(before, after);
    const sent = run.requests.total;
    const extra = {};
    let total = 0;
    for (const name of new Set([...Object.keys(out), ...Object.keys(idle)])) {
      const n = ((out[name] ?? 0) - (idle[name] ?? 0)) * seconds;
      total += n;
      if (Math.abs(n / sent) >= 0.005) extra[name] = Number((n / sent).toFixed(3));
    }
    results[kind] = { sent, non2xx: run.non2xx, rps: Math.round(run.requests.average), perRequest: Math.max(0, total) / sent, byCommand: extra };
  }
  return { idle, results };
}

try {
  log(`starting Redis, ${NODES} nodes and HAProxy (images keyfleet/*:${TAG})`);
  const cluster = await startCluster();
  log(`${OPTS.logouts} logouts, each followed until every node refuses its token and cookie`);
  const p = await propagation(cluster);
  log(`Redis commands per request: ${OPTS.seconds} s idle, then ${OPTS.seconds} s of token and of cookie requests`);
  const r = await redisPerRequest(cluster);
  cluster.admin.disconnect();
  const fmt = (ms) => `${ms.toFixed(1)} ms`;
  console.log(`logout propagation (answer -> every one of ${NODES} nodes refuses the token and the auth cookie), ${p.logouts} logouts: p50 ${fmt(p.p50)}, p99 ${fmt(p.p99)}, max ${fmt(p.max)} (each probe is one GET /me per node, so this includes one request's round trip); the logout itself answered in p50 ${fmt(p.answerP50)}, p99 ${fmt(p.answerP99)} (it waits for every live node's confirmation)`);
  for (const [kind, x] of Object.entries(r.results)) {
    console.log(`GET /me by ${kind}: ${x.sent} requests (${x.rps} req/s, non-2xx ${x.non2xx}): ${x.perRequest.toFixed(3)} Redis commands per request${Object.keys(x.byCommand).length ? ` (${Object.entries(x.byCommand).map(([n, v]) => `${n} ${v}`).join(', ')})` : ''}`);
  }
  console.log(`idle Redis commands per second (subtracted): ${Object.entries(r.idle).map(([n, v]) => `${n} ${v.toFixed(1)}`).join(', ')}`);
} finally {
  await cleanUp();
}
