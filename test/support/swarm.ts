import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { waitUntil } from './cluster.js';

// The docker CLI, for the Swarm test: a single-node swarm, a stack, its services.

const run = promisify(execFile);

export async function docker(args: string[], { env = process.env, timeoutMs = 120_000, cwd }: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}) {
  const { stdout } = await run('docker', args, { env, cwd, timeout: timeoutMs, maxBuffer: 16 << 20 });
  return stdout.trim();
}

const lines = (text: string) => text.split('\n').filter(Boolean);

/** `active`, `inactive`, `pending`, `error` or `locked`. */
export const swarmState = () => docker(['info', '--format', '{{.Swarm.LocalNodeState}}']);

/** Makes this engine a single-node swarm if it is not in one; true when it did. */
export async function ensureSwarm(): Promise<boolean> {
  if ((await swarmState()) === 'active') return false;
  await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
  return true;
}

export const leaveSwarm = () => docker(['swarm', 'leave', '--force']);

/** A TCP port nothing listens on right now (the OS picks it), for a host-mode publish. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '0.0.0.0', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const byStack = (stack: string) => ['--filter', `label=com.docker.stack.namespace=${stack}`];

export async function deployStack(stack: string, composeFile: string, env: NodeJS.ProcessEnv) {
  // Local images only: never ask a registry for digests.
  await docker(['stack', 'deploy', '--resolve-image', 'never', '--detach=true', '-c', composeFile, stack], { env });
}

/** What is left of a stack: services, containers, networks, secrets. */
export async function stackLeftovers(stack: string): Promise<string[]> {
  const [services, containers, networks, secrets] = await Promise.all([
    docker(['service', 'ls', '-q', ...byStack(stack)]),
    docker(['ps', '-aq', ...byStack(stack)]),
    docker(['network', 'ls', '-q', ...byStack(stack)]),
    docker(['secret', 'ls', '-q', ...byStack(stack)]),
  ]);
  return [...lines(services).map((id) => `service ${id}`), ...lines(containers).map((id) => `container ${id}`),
    ...lines(networks).map((id) => `network ${id}`), ...lines(secrets).map((id) => `secret ${id}`)];
}

/** `docker stack rm`, then waits until nothing of it is left, and removes its volumes. */
export async function removeStack(stack: string, timeoutMs = 90_000) {
  await docker(['stack', 'rm', stack]).catch((error) => console.error(`docker stack rm ${stack}:`, error.message));
  let left: string[] = [];
  await waitUntil(async () => (left = await stackLeftovers(stack)).length === 0, {
    timeoutMs, intervalMs: 500, what: `stack ${stack} to be gone (left: ${left.join(', ')})`,
  });
  const volumes = lines(await docker(['volume', 'ls', '-q', ...byStack(stack)]));
  if (volumes.length) await docker(['volume', 'rm', ...volumes]);
}

/** Running tasks of a service (`<stack>_<service>`). */
export async function runningTasks(service: string): Promise<number> {
  const states = await docker(['service', 'ps', service, '--filter', 'desired-state=running', '--format', '{{.CurrentState}}']);
  return lines(states).filter((state) => state.startsWith('Running')).length;
}

export const scaleService = (service: string, replicas: number) =>
  docker(['service', 'scale', '--detach=true', `${service}=${replicas}`]);

/** A rolling restart of every task (`--force`), waiting until Swarm says it converged. */
export async function forceRollingUpdate(service: string, timeoutMs: number): Promise<string> {
  await docker(['service', 'update', '--force', '--detach=false', '--quiet', '--no-resolve-image', service], { timeoutMs });
  return docker(['service', 'inspect', '--format', '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}', service]);
}
