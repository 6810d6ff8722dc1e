import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Network, type StartedNetwork } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, waitUntil, type StartedRedis } from '../support/cluster.js';
import { request } from '../support/http.js';
import { tsBlocks } from '../support/markdown.js';

// What a user gets: the tarball `npm pack` makes installs into an empty project offline (from
// npm's cache), the README's wiring type-checks against it with the repository's tsc, and
// runs against a real Redis (keyfleet's own image): /healthz 200, a login at the app's own
// route, then requireUser() accepting the token and the auth cookie it minted.

const ROOT = resolve(import.meta.dirname, '../..');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };

const PRELUDE = `// The app's own user store (the test's): one account.
const myUsers = {
  check: async (username: unknown, password: unknown) =>
    username === 'ann' && password === 'ann-password' ? { id: 'ann', role: 'admin' as const } : undefined,
};
`;

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

let staging: string;
let project: string;
let network: StartedNetwork | undefined;
let redis: StartedRedis | undefined;
let app: ChildProcess | undefined;
let appOutput = '';

beforeAll(async () => {
  staging = mkdtempSync(join(tmpdir(), 'keyfleet-pack-'));
  project = mkdtempSync(join(tmpdir(), 'keyfleet-consumer-'));
});

afterAll(async () => {
  if (app && app.exitCode === null) {
    app.kill('SIGKILL');
    await once(app, 'exit');
  }
  await redis?.container.stop({ timeout: 0 });
  await network?.stop();
  rmSync(staging, { recursive: true, force: true });
  rmSync(project, { recursive: true, force: true });
});

describe('the npm package', () => {
  let tarball: string;

  it('packs the entry point, its declarations and the CLI, nothing of the sources or tests', async () => {
    // Built into a staging copy, so the repository's own dist/ is left as it is.
    for (const file of ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE']) copyFileSync(join(ROOT, file), join(staging, file));
    await run(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.json'), '--outDir', join(staging, 'dist')]);
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', staging], { cwd: staging });
    const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
    tarball = join(staging, packed.filename);
    expect(packed.filename).toBe(`keyfleet-${pkg.version}.tgz`);
    const paths = packed.files.map((file) => file.path);
    expect(paths).toEqual(expect.arrayContaining(['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js']));
    expect(paths.filter((path) => !path.startsWith('dist/') && !['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE'].includes(path))).toEqual([]);
  });

  it('installs into an empty project offline, and the README wiring type-checks against it', { timeout: 240_000 }, async () => {
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // What the app itself brings: zod for its claims schema, and the types of Express and Node.
    const own = [`zod@${pkg.dependencies.zod}`, `@types/express@${pkg.dependencies['@types/express']}`, `@types/node@${pkg.devDependencies['@types/node']}`];
    // npm's cache holds every tarball `npm ci` fetched, but resolving a version range offline
    // also needs the registry's metadata, which `npm ci` (reading the lock file) never asks
    // for: here it is cached for all but @types/express-session, which therefore comes packed
    // from the repository's node_modules (the same version). Where the cache lacks more (a
    // fresh clone), the tarball is unpacked into node_modules/keyfleet and the repository's
    // installed dependencies are linked beside it, and the test says so.
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', staging, join(ROOT, 'node_modules/@types/express-session')], { cwd: staging });
    const sessionTypes = join(staging, (JSON.parse(stdout) as [{ filename: string }])[0].filename);
    const installed = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', tarball, sessionTypes, ...own], { cwd: project }).then(
      () => 'npm install --offline (from the cache)',
      (error: { stderr?: string }) => {
        if (!String(error.stderr).includes('ENOTCACHED')) throw error;
        return undefined;
      },
    );
    if (installed === undefined) {
      rmSync(join(project, 'node_modules'), { recursive: true, force: true });
      mkdirSync(join(project, 'node_modules/keyfleet'), { recursive: true });
      await run('tar', ['-xzf', tarball, '-C', join(project, 'node_modules/keyfleet'), '--strip-components=1']);
      for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
        if (entry !== 'keyfleet' && entry !== '.bin' && !entry.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', entry), join(project, 'node_modules', entry));
      }
    }
    console.log(`[figures] the tarball was installed by ${installed ?? 'unpacking it beside links to the repository node_modules (npm cache incomplete)'}`);
    expect(readdirSync(join(project, 'node_modules/keyfleet/dist'))).toContain('index.d.ts');

    const [wiring] = tsBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'), '## Use it in your own Express app');
    expect(wiring?.code).toContain('app.listen(3000)');
    const server = PRELUDE + wiring!.code.replace('app.listen(3000)', 'app.listen(Number(process.env.PORT))');
    writeFileSync(join(project, 'server.ts'), server);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', types: ['node'] }, files: ['server.ts'] }),
    );
    const compiled = await run(process.execPath, [TSC, '-p', project], { cwd: project }).then(
      () => '',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    expect(compiled).toBe('');
  });

  it('runs against a real Redis: /healthz 200, a login, requireUser() with its token and auth cookie, graceful stop', { timeout: 240_000 }, async () => {
    network = await new Network().start();
    redis = await startRedis(network);
    const port = await freePort();
    app = spawn(process.execPath, ['out/server.js'], {
      cwd: project,
      env: {
        PATH: process.env.PATH,
        REDIS_URL: redis.hostUrl,
        KEYRING_MASTER_KEY: randomBytes(32).toString('base64'),
        NODE_ID: 'consumer-1',
        PORT: String(port),
        METRICS_PORT: '0',
        SHUTDOWN_DRAIN: '100ms',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    app.stdout!.on('data', (chunk: Buffer) => (appOutput += chunk.toString()));
    app.stderr!.on('data', (chunk: Buffer) => (appOutput += chunk.toString()));
    const base = `http://127.0.0.1:${port}`;
    await waitUntil(async () => (await request(`${base}/healthz`).catch(() => ({ status: 0 }))).status === 200, { timeoutMs: 30_000, what: `the consumer's /healthz (output: ${appOutput})` });

    const health = await request(`${base}/healthz`);
    expect(health.body).toMatchObject({ status: 'ok', node: 'consumer-1', ring: { complete: true } });
    expect(health.node).toBe('consumer-1');
    const jwks = await request(`${base}/.well-known/jwks.json`);
    expect(jwks.body.keys.length).toBeGreaterThanOrEqual(1);

    const post = (body: unknown) => fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post({ username: 'ann', password: 'wrong' })).status).toBe(401);
    const login = await post({ username: 'ann', password: 'ann-password' });
    expect(login.status).toBe(200);
    const body = (await login.json()) as { token: string; refreshToken?: string; session: boolean; node: string };
    expect(body).toMatchObject({ node: 'consumer-1', session: true });
    expect(body.refreshToken).toEqual(expect.any(String));
    const auth = login.headers.getSetCookie().find((cookie) => cookie.startsWith('auth='))!.split(';')[0]!;

    expect((await request(`${base}/notes`, { headers: { authorization: `Bearer ${body.token}` } })).body).toEqual({ user: 'ann', role: 'admin' });
    expect((await request(`${base}/notes`, { headers: { cookie: auth } })).body).toEqual({ user: 'ann', role: 'admin' });
    const refused = await request(`${base}/notes`);
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'ERR_NO_CREDENTIALS' });

    // Graceful shutdown through kf.serve(): drain, stop, exit 0.
    const exited = once(app, 'exit');
    app.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    expect(code, appOutput).toBe(0);
  });
});
