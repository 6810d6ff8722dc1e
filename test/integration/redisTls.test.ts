import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS, IMAGES, randomMasterKey } from '../support/cluster.js';

// Issue 11, part 4: optional TLS between the nodes and Redis (REDIS_URL=rediss://...),
// tested once. Redis (Debian's package is built with TLS) serves TLS only, with a
// certificate for the name `redis`; the node trusts it through NODE_EXTRA_CA_CERTS.

describe('a node on rediss:// (TLS to Redis)', () => {
  let dir: string;
  let network: StartedNetwork;
  let redis: StartedTestContainer;
  let node: StartedTestContainer;
  const password = randomBytes(18).toString('base64url');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'keyfleet-redis-tls-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=redis', '-addext', 'subjectAltName=DNS:redis', '-addext', 'basicConstraints=critical,CA:FALSE',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'pipe' });
    network = await new Network().start();
    redis = await new GenericContainer(IMAGES.redis)
      .withNetwork(network)
      .withNetworkAliases('redis')
      .withEnvironment({
        REDIS_PASSWORD: password,
        REDIS_TLS_CERT_FILE: '/etc/keyfleet/tls/cert.pem',
        REDIS_TLS_KEY_FILE: '/etc/keyfleet/tls/key.pem',
      })
      // A throwaway key made for this test: readable by the image's redis user.
      .withCopyFilesToContainer([
        { source: join(dir, 'cert.pem'), target: '/etc/keyfleet/tls/cert.pem', mode: 0o444 },
        { source: join(dir, 'key.pem'), target: '/etc/keyfleet/tls/key.pem', mode: 0o444 },
      ])
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections tls/))
      .withStartupTimeout(60_000)
      .start();
    node = await new GenericContainer(IMAGES.app)
      .withNetwork(network)
      .withEnvironment({
        NODE_ID: 'node-tls',
        REDIS_URL: `rediss://keyfleet:${password}@redis:6379/0`,
        NODE_EXTRA_CA_CERTS: '/etc/keyfleet/redis-ca.pem',
        KEYRING_MASTER_KEY: randomMasterKey(),
        USERS: DEMO_USERS,
      })
      .withCopyFilesToContainer([{ source: join(dir, 'cert.pem'), target: '/etc/keyfleet/redis-ca.pem', mode: 0o444 }])
      .withExposedPorts(3000)
      .withWaitStrategy(Wait.forHttp('/healthz', 3000).forStatusCode(200))
      .withStartupTimeout(60_000)
      .start();
  });
  afterAll(async () => {
    await node?.stop({ timeout: 0 });
    await redis?.stop({ timeout: 0 });
    await network?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const connect = (options: Record<string, unknown>) =>
    new Redis({ host: redis.getHost(), port: redis.getMappedPort(6379), username: 'keyfleet', password, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true, ...options });

  it('creates its ring and logs in through Redis over TLS', async () => {
    const login = await fetch(`http://${node.getHost()}:${node.getMappedPort(3000)}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(login.status).toBe(200);
    expect((await login.json()).session).toBe(true); // the session was written to Redis, over TLS
    const client = connect({ tls: { ca: readFileSync(join(dir, 'cert.pem')), servername: 'redis' } });
    try {
      await client.connect();
      expect(await client.exists('keyfleet:ring')).toBe(1);
    } finally {
      client.disconnect();
    }
  });

  it('speaks no plain Redis, and a client that does not trust the certificate is refused', async () => {
    const plain = connect({ connectTimeout: 3_000 });
    plain.on('error', () => undefined);
    await expect(plain.connect().then(() => plain.ping())).rejects.toThrow();
    plain.disconnect();
    const untrusting = connect({ tls: { servername: 'redis' } });
    const errors: Error[] = [];
    untrusting.on('error', (error: Error) => errors.push(error));
    await expect(untrusting.connect()).rejects.toThrow();
    expect(errors.map((e) => e.message)).toContainEqual(expect.stringMatching(/self-signed certificate/));
    untrusting.disconnect();
  });
});
