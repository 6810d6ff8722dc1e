import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { waitUntil } from './cluster.js';

// The notes API (examples/notes-api) as its README runs it: compose.yaml with the example's
// override, `app` (3 replicas of the notes image), Redis and HAProxy, under a project name
// and host ports of its own. examples/notes-api/build.sh builds the image (a no-op when
// scripts/bootstrap.sh already built it from the same inputs).

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const startupTimeoutMs = 90_000;

export const NOTES_OVERRIDE = 'examples/notes-api/compose.notes.yaml';

export interface NotesStackOptions {
  replicas?: number;
  /** Extra variables for compose's interpolation (compose.yaml reads e.g. JWKS_PREPUBLISH). */
  env?: Record<string, string>;
}

export class StartedNotesStack {
  constructor(
    readonly project: string,
    readonly url: string,
    readonly statsUrl: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  compose(...args: string[]) {
    return run('docker', ['compose', '-p', this.project, '-f', 'compose.yaml', '-f', NOTES_OVERRIDE, ...args], {
      cwd: root,
      env: this.env,
      maxBuffer: 16 << 20,
    });
  }

  /** The keyfleet CLI the notes image carries (it came with the library), as operators run it. */
  async cli(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await this.compose('exec', '-T', 'app', 'keyfleet', ...args);
      return { exitCode: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { exitCode: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  /** How many clients listen on each Redis pub/sub channel (PUBSUB NUMSUB, as Redis's admin). */
  async subscribers(...channels: string[]): Promise<Record<string, number>> {
    const { stdout } = await this.compose(
      'exec', '-T', 'redis', 'sh', '-c',
      `redis-cli --no-auth-warning --user admin --pass "$REDIS_ADMIN_PASSWORD" pubsub numsub ${channels.join(' ')}`,
    );
    const lines = stdout.trim().split('\n');
    return Object.fromEntries(channels.map((channel, i) => [channel, Number(lines[2 * i + 1])]));
  }

  /** Until HAProxy counts `count` app servers UP. */
  async waitForBalancer(count: number, timeoutMs = 60_000): Promise<void> {
    let up = 0;
    await waitUntil(async () => {
      const csv = await fetch(`${this.statsUrl}/;csv`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.text()).catch(() => '');
      up = csv.split('\n').filter((line) => {
        const cells = line.split(',');
        return cells[0] === 'app' && cells[1]?.startsWith('app') && cells[17] === 'UP';
      }).length;
      return up === count;
    }, { timeoutMs, intervalMs: 200, what: `the balancer to count ${count} notes-api nodes UP (has ${up})` });
  }

  async stop(): Promise<void> {
    await this.compose('down', '-v', '--timeout', '5').catch((error: unknown) => console.error(error));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Builds the image if needed, then `docker compose up` of redis, app and lb; ready once HAProxy has every node UP. */
export async function startNotesStack({ replicas = 3, env = {} }: NotesStackOptions = {}): Promise<StartedNotesStack> {
  await run('bash', ['examples/notes-api/build.sh'], { cwd: root, maxBuffer: 16 << 20 });
  const project = `kfnotes${randomBytes(3).toString('hex')}`;
  const composeEnv = { ...process.env, LB_PORT: '0', LB_TLS_PORT: '0', STATS_PORT: '0', ...env };
  let stack = new StartedNotesStack(project, '', '', composeEnv);
  try {
    await stack.compose('up', '-d', '--no-build', '--scale', `app=${replicas}`, 'app', 'lb');
    const port = async (service: string, inner: number) => (await stack.compose('port', service, String(inner))).stdout.trim().split(':').pop();
    stack = new StartedNotesStack(project, `http://127.0.0.1:${await port('lb', 8080)}`, `http://127.0.0.1:${await port('lb', 8404)}`, composeEnv);
    await stack.waitForBalancer(replicas, startupTimeoutMs);
    return stack;
  } catch (error) {
    await stack.stop();
    throw error;
  }
}
