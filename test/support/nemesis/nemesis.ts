import { Cluster, waitUntil } from '../cluster.js';
import { connectNetwork, disconnect, pauseContainer, startContainer, stopContainer, unpauseContainer } from '../docker.js';
import { call, headerKid, startClients } from './client.js';
import { History, type Fault, type FaultKind } from './history.js';
import { Observer } from './observer.js';
import { Rng } from './rng.js';

// A Jepsen-style run on one machine: the cluster (Cluster fixture: Redis, N app nodes,
// HAProxy), users through the balancer recording every operation, an observer recording what
// the nodes and Redis say, and two seeded schedulers: one for faults (one at a time, each
// healed before the next), one for operator actions (rotate, revoke) that overlap them.

/** The node settings of a run: short heartbeats, lease and lifetimes, so a few minutes see takeovers, rotations and deletions. */
export const NEMESIS_NODE_ENV = {
  HEARTBEAT_INTERVAL: '500ms', // a node is live while its beat (TTL 3 intervals = 1.5 s) lasts
  LEASE_TTL: '3s',
  TOKEN_TTL: '60s',
  SESSION_TTL: '120s',
  CLOCK_SKEW: '5s',
  KEY_ROTATION_INTERVAL: '45s', // scheduled rotations too, and so deletions of retired keys
  LOG_LEVEL: 'warn',
  // The clients are three browsers of one user behind one address. Logins that a fault cut
  // short between the throttle's admission and its settlement used to stay counted as
  // failures, slowing the account down for its owner (finding 4 in docs/reliability.md, now
  // fixed: they expire). The limits stay raised here so that the other invariants are judged
  // apart from it; CHAOS_THROTTLE=default runs with the real ones.
  ...(process.env.CHAOS_THROTTLE === 'default' ? {} : { LOGIN_MAX_FAILURES_PER_ACCOUNT: '1000000', LOGIN_MAX_FAILURES_PER_ADDRESS: '1000000' }),
};

/** The liveness window (3 heartbeat intervals): short pauses stay inside it, long ones outlast the lease. */
export const LIVENESS_WINDOW_MS = 1_500;

export const FAULT_WEIGHTS: Record<Exclude<FaultKind, 'rotate' | 'revoke'>, number> = {
  kill: 2,
  'scale-out': 1,
  'scale-in': 1,
  'rolling-replace': 1,
  'pause-short': 1,
  'pause-long': 1,
  'cut-redis': 2,
  'cut-all': 1,
  'restart-redis': 1,
};

export interface NemesisOptions {
  seconds: number;
  seed: number;
  nodes?: number;
  minNodes?: number;
  maxNodes?: number;
  workers?: number;
  /** Which faults the scheduler may pick (default: all of FAULT_WEIGHTS). */
  faults?: Partial<typeof FAULT_WEIGHTS>;
  /** Operator actions (rotate, revoke) every this many ms, at random within. */
  operatorEveryMs?: [number, number];
  log?: (line: string) => void;
}

export interface NemesisRun {
  history: History;
  seed: number;
  seconds: number;
  /** From the end of the last fault until every node was ready on one ring version with one primary. */
  recoveryMs: number;
  startupMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runNemesis(options: NemesisOptions): Promise<NemesisRun> {
  const { seconds, seed, nodes = 3, minNodes = 3, maxNodes = 5, workers = 3, operatorEveryMs = [3_000, 8_000] } = options;
  const log = options.log ?? (() => undefined);
  const weights = options.faults ?? FAULT_WEIGHTS;
  const root = new Rng(seed);
  const [faultRng, operatorRng, clientRng] = [root.fork(), root.fork(), root.fork()];
  const history = new History();

  const startedAt = Date.now();
  const cluster = await Cluster.start({ nodes, env: { ...NEMESIS_NODE_ENV } });
  const startupMs = Date.now() - startedAt;
  const observer = new Observer(cluster, history);
  let clients: ReturnType<typeof startClients> | undefined;
  // A node the operator's CLI runs in, and the one a fault holds: each scheduler leaves the other's alone.
  let cliNode: string | undefined;
  let faultNode: string | undefined;
  try {
    await observer.start();
    clients = startClients(cluster.url, history, clientRng, { workers, requestsPerLogin: 20, maxCredentialAgeMs: 40_000, logoutChance: 0.03 });
    await waitUntil(() => history.ops.filter((op) => op.status === 200).length >= 20, { timeoutMs: 30_000, what: 'traffic before the first fault' });

    const deadline = Date.now() + seconds * 1000;
    const record = async (fault: Omit<Fault, 'start' | 'end' | 'ok'>, action: (fault: Fault) => Promise<void>): Promise<void> => {
      const entry: Fault = { ...fault, start: Date.now(), end: 0, ok: false };
      history.faults.push(entry);
      try {
        await action(entry);
        entry.ok = true;
      } catch (error) {
        entry.detail = `${entry.detail ? `${entry.detail}; ` : ''}${error instanceof Error ? error.message : String(error)}`;
      } finally {
        entry.end = Date.now();
        log(`${new Date(entry.start).toISOString().slice(11, 23)} ${entry.kind.padEnd(15)} ${(entry.target ?? '').padEnd(8)} ${entry.end - entry.start} ms${entry.ok ? '' : ` FAILED ${entry.detail}`}${entry.exitCode !== undefined ? ` exit ${entry.exitCode}` : ''}`);
      }
    };
    const pickNode = (rng: Rng, avoid?: string) => {
      const ids = [...cluster.nodes.keys()].filter((id) => id !== avoid);
      return ids.length > 0 ? rng.pick(ids) : undefined;
    };
    const hold = async (fault: Fault, ms: number, start: () => Promise<void>, heal: () => Promise<void>) => {
      // Active from the moment it is set off: a Redis told to stop refuses commands while
      // `docker stop` still waits for it to exit (seed 101: 9 sid 503s inside that call were
      // counted unexplained), and a network cut takes effect somewhere inside its call.
      fault.activeFrom = Date.now();
      await start();
      try {
        await sleep(ms);
      } finally {
        await heal();
        fault.activeUntil = Date.now();
      }
    };

    // Faults are dealt from a shuffled deck holding each kind `weight` times, so even a short
    // run sees every kind; a kind that does not fit now (scale-out at the most nodes) waits.
    let deck: (keyof typeof FAULT_WEIGHTS)[] = [];
    const draw = () => {
      const size = cluster.nodes.size;
      const fits = (kind: keyof typeof FAULT_WEIGHTS) =>
        !(kind === 'scale-out' && size >= maxNodes) && !(kind === 'scale-in' && size <= minNodes) && !(kind === 'rolling-replace' && deadline - Date.now() < 40_000);
      if (!deck.some(fits)) {
        deck = faultRng.shuffle(Object.entries(weights).flatMap(([kind, weight]) => Array.from({ length: weight ?? 0 }, () => kind as keyof typeof FAULT_WEIGHTS)));
      }
      const index = deck.findIndex(fits);
      return index < 0 ? 'kill' : deck.splice(index, 1)[0]!;
    };
    const faults = async () => {
      while (Date.now() < deadline) {
        const kind = draw();
        const target = kind === 'restart-redis' || kind === 'scale-out' ? undefined : pickNode(faultRng, cliNode);
        const container = target ? cluster.nodes.get(target)! : undefined;
        faultNode = target;
        const fronts = cluster.network.getName();
        const backs = cluster.backNetwork.getName();
        switch (kind) {
          case 'kill':
            await record({ kind, target }, async (fault) => {
              fault.activeFrom = Date.now(); // the SIGKILL lands somewhere in this call
              await cluster.killNode(target!);
              fault.activeUntil = Date.now();
              fault.detail = `replaced by ${(await cluster.addNode()).id}`;
            });
            break;
          case 'scale-out':
            await record({ kind }, async (fault) => {
              fault.target = (await cluster.addNode()).id;
            });
            break;
          case 'scale-in':
            await record({ kind, target }, () => cluster.stopNode(target!));
            break;
          case 'rolling-replace':
            faultNode = undefined;
            await record({ kind }, async (fault) => {
              const replaced: string[] = [];
              for (const id of [...cluster.nodes.keys()]) {
                while (cliNode === id) await sleep(100); // not under the operator's feet
                faultNode = id;
                const size = cluster.nodes.size;
                const added = await cluster.addNode();
                await cluster.waitForBalancer(size + 1);
                await cluster.stopNode(id);
                replaced.push(`${id}->${added.id}`);
              }
              fault.detail = replaced.join(', ');
            });
            break;
          case 'pause-short':
          case 'pause-long': {
            const ms = kind === 'pause-short' ? faultRng.int(300, LIVENESS_WINDOW_MS - 500) : faultRng.int(4_000, 7_000);
            await record({ kind, target, detail: `${ms} ms` }, (fault) => hold(fault, ms, () => pauseContainer(container!), () => unpauseContainer(container!)));
            break;
          }
          case 'cut-redis': {
            const ms = faultRng.int(3_000, 8_000);
            await record({ kind, target, detail: `${ms} ms` }, (fault) =>
              hold(fault, ms, () => disconnect(container!, backs), () => connectNetwork(container!, backs, [target!])),
            );
            break;
          }
          case 'cut-all': {
            const ms = faultRng.int(3_000, 6_000);
            await record({ kind, target, detail: `${ms} ms` }, (fault) =>
              hold(
                fault,
                ms,
                async () => {
                  await disconnect(container!, fronts);
                  await disconnect(container!, backs);
                },
                async () => {
                  await connectNetwork(container!, backs, [target!]);
                  await connectNetwork(container!, fronts, ['app', target!]);
                },
              ),
            );
            break;
          }
          case 'restart-redis': {
            const ms = faultRng.int(1_000, 4_000);
            await record({ kind, target: 'redis', detail: `down ${ms} ms` }, (fault) =>
              hold(
                fault,
                ms,
                () => stopContainer(cluster.redis.container),
                async () => {
                  await startContainer(cluster.redis.container);
                  await observer.connect();
                },
              ),
            );
            break;
          }
        }
        faultNode = undefined;
        await sleep(faultRng.int(500, 3_000));
      }
    };

    const operator = async () => {
      await sleep(operatorRng.int(...operatorEveryMs));
      while (Date.now() < deadline) {
        const kind = operatorRng.weighted({ rotate: 3, revoke: 2 });
        cliNode = pickNode(operatorRng, faultNode);
        if (cliNode) {
          const node = cliNode;
          if (kind === 'rotate') {
            const purpose = operatorRng.pick(['sign', 'encrypt', 'cookie', 'all']);
            await record({ kind, target: node, purpose }, async (fault) => {
              const result = await cluster.cli(['rotate', '--purpose', purpose, '--timeout', '10s'], node);
              fault.exitCode = result.exitCode;
              if (result.exitCode !== 0 && result.exitCode !== 3) throw new Error(`rotate exited ${result.exitCode}: ${result.output.trim().slice(-300)}`);
            });
          } else {
            const purpose = operatorRng.weighted({ sign: 2, encrypt: 2, cookie: 1 });
            const kid = observer.activeKid(purpose);
            if (kid) {
              // A credential of the key about to be revoked, presented again once revoke returns.
              const login = await call(`${cluster.url}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'demo', password: 'demo-password' }) });
              const auth = login.cookies.find((c) => c.startsWith('auth='))?.split(';')[0];
              const credential: Record<string, string> | undefined =
                purpose === 'sign' && headerKid(login.body?.token ?? '') === kid
                  ? { authorization: `Bearer ${login.body.token}` }
                  : purpose === 'encrypt' && auth && headerKid(auth.slice(5)) === kid
                    ? { cookie: auth }
                    : undefined;
              await record({ kind, target: node, purpose, kid }, async (fault) => {
                const result = await cluster.cli(['revoke', kid], node);
                fault.exitCode = result.exitCode;
                if (result.exitCode !== 0 && result.exitCode !== 3) throw new Error(`revoke exited ${result.exitCode}: ${result.output.trim().slice(-300)}`);
              });
              if (credential) await probeRevoked(cluster, history, credential, kid, purpose === 'sign' ? 'me-token' : 'me-cookie');
            }
          }
        }
        cliNode = undefined;
        await sleep(operatorRng.int(...operatorEveryMs));
      }
    };

    await Promise.all([faults(), operator()]);
    history.lastFaultEnd = Math.max(...history.faults.map((fault) => fault.end));
    let why = '';
    const healed = await waitUntil(
      async () => {
        const state = await observer.healthy().catch((error: unknown) => ({ ok: false, why: String(error) }));
        why = state.why;
        return state.ok;
      },
      { timeoutMs: 120_000, intervalMs: 100, what: `the cluster to be healthy after the last fault (${why})` },
    ).then(
      () => true,
      (error: unknown) => (log(`${String(error)}; last: ${why}`), false),
    );
    if (healed) history.healthyAt = Date.now();
    await cluster.waitForBalancer(cluster.nodes.size, 60_000).catch((error: unknown) => log(String(error)));
    // A little traffic on the healed cluster, then stop.
    const after = history.ops.length;
    await waitUntil(() => history.ops.length >= after + 60, { timeoutMs: 30_000, what: 'traffic after healing' }).catch(() => undefined);
    await clients.stop();
    clients = undefined;
    return { history, seed, seconds, recoveryMs: healed ? history.healthyAt! - history.lastFaultEnd : Number.NaN, startupMs };
  } finally {
    await clients?.stop();
    await observer.stop();
    await cluster.stop();
  }
}

/** Presents a revoked key's credential to every node directly and a few times through the balancer (ops of worker -1). */
async function probeRevoked(cluster: Cluster, history: History, headers: Record<string, string>, kid: string, kind: 'me-token' | 'me-cookie'): Promise<void> {
  const targets = [...[...cluster.nodes.values()].map((c) => `http://${c.getHost()}:${c.getMappedPort(3000)}`), ...Array.from({ length: 6 }, () => cluster.url)];
  for (const base of targets) {
    const start = Date.now();
    const reply = await call(`${base}/me`, { headers, signal: AbortSignal.timeout(3_000) });
    history.op({ worker: -1, kind, start, end: Date.now(), status: reply.status, kid, ...(reply.code ? { code: reply.code } : {}), ...(reply.node ? { node: reply.node } : {}) });
  }
}
