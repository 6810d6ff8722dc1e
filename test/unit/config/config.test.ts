import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../../app/src/config/index.js';
import { ConfigError } from '../../../app/src/lib/errors.js';

const MASTER = randomBytes(32);
const minimal = () => ({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY: MASTER.toString('base64') });

/** The ConfigError's problems, failing the test if loadConfig does not throw one. */
function problemsOf(env: Record<string, string | undefined>): string[] {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error(`expected a ConfigError, got a config for ${JSON.stringify(config.redis)}`);
}

/** The variables the problems name, in order (each problem starts "NAME: ..."). */
const named = (problems: string[]) => problems.map((problem) => problem.slice(0, problem.indexOf(':')));

describe('loadConfig: a minimal environment', () => {
  it('needs only REDIS_URL and KEYRING_MASTER_KEY, and applies the contract defaults', () => {
    const config = loadConfig(minimal());
    expect(config.redis).toEqual({ kind: 'url', url: 'redis://localhost:6379/0' });
    expect(config.masterKey.equals(MASTER)).toBe(true);
    expect(config).toMatchObject({
      nodeRole: 'auto',
      keyRotationIntervalMs: 24 * 3_600_000,
      tokenTtlMs: 15 * 60_000,
      sessionTtlMs: 8 * 3_600_000,
      port: 3000,
      leaseTtlMs: 10_000,
      heartbeatIntervalMs: 1_000,
      ringReloadIntervalMs: 5_000,
      rotationConfirmTimeoutMs: 30_000,
      clockSkewMs: 30_000,
      shutdownDrainMs: 3_000,
      trustProxy: 'loopback, linklocal, uniquelocal',
      logLevel: 'info',
    });
    expect(config.users.size).toBe(0);
    expect(config.nodeId).toMatch(/^[A-Za-z0-9._-]{1,64}$/);
  });

  it('treats empty strings as unset', () => {
    const config = loadConfig({ ...minimal(), PORT: '', TOKEN_TTL: '', NODE_ROLE: '', USERS: '' });
    expect(config).toMatchObject({ port: 3000, tokenTtlMs: 900_000, nodeRole: 'auto' });
  });

  it('reads explicit values', () => {
    const config = loadConfig({
      ...minimal(),
      REDIS_URL: 'rediss://keyfleet:secret@redis.internal:6380/2',
      NODE_ROLE: 'secondary',
      NODE_ID: 'app-2',
      KEY_ROTATION_INTERVAL: '1h',
      TOKEN_TTL: '90s',
      SESSION_TTL: '1d',
      PORT: '8080',
      TRUST_PROXY: 'true',
      LOG_LEVEL: 'warn',
    });
    expect(config).toMatchObject({
      redis: { kind: 'url', url: 'rediss://keyfleet:secret@redis.internal:6380/2' },
      nodeRole: 'secondary',
      nodeId: 'app-2',
      keyRotationIntervalMs: 3_600_000,
      tokenTtlMs: 90_000,
      sessionTtlMs: 86_400_000,
      port: 8080,
      trustProxy: true,
      logLevel: 'warn',
    });
    expect(loadConfig({ ...minimal(), TRUST_PROXY: 'false' }).trustProxy).toBe(false);
  });

  it('parses USERS into name -> password hash', () => {
    const hash = `scrypt.16384.8.1.${randomBytes(16).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    const config = loadConfig({ ...minimal(), USERS: `alice=${hash}, bob=${hash}` });
    expect([...config.users.keys()]).toEqual(['alice', 'bob']);
    expect(config.users.get('alice')).toMatchObject({ N: 16384, r: 8, p: 1 });
  });
});

describe('loadConfig: problems', () => {
  it('reports several bad values together, each naming its variable', () => {
    const problems = problemsOf({
      ...minimal(),
      PORT: '70000',
      TOKEN_TTL: 'soon',
      NODE_ROLE: 'leader',
      SESSION_TTL: '-1h',
      LOG_LEVEL: 'loud',
    });
    expect(named(problems).sort()).toEqual(['LOG_LEVEL', 'NODE_ROLE', 'PORT', 'SESSION_TTL', 'TOKEN_TTL']);
  });

  it('reports a missing REDIS_URL and KEYRING_MASTER_KEY together', () => {
    const problems = problemsOf({});
    expect(problems).toHaveLength(2);
    expect(problems.some((p) => p.startsWith('REDIS_URL'))).toBe(true);
    expect(problems.some((p) => p.startsWith('KEYRING_MASTER_KEY'))).toBe(true);
  });

  it('reports a bad REDIS_URL and a bad KEYRING_MASTER_KEY together', () => {
    const problems = problemsOf({ REDIS_URL: 'http://localhost:6379', KEYRING_MASTER_KEY: 'c2hvcnQ=', PORT: 'http' });
    expect(named(problems).sort()).toEqual(['KEYRING_MASTER_KEY', 'PORT', 'REDIS_URL']);
  });

  it.each([
    ['too short', randomBytes(16).toString('base64')],
    ['too long', randomBytes(33).toString('base64')],
    ['not canonical base64 (no padding)', MASTER.toString('base64').replace(/=+$/, '')],
    ['base64url, not base64', Buffer.from('\xfb'.repeat(32), 'latin1').toString('base64url')],
    ['not base64 at all', 'this is not a key'],
  ])('refuses a KEYRING_MASTER_KEY that is %s', (_label, value) => {
    const problems = problemsOf({ ...minimal(), KEYRING_MASTER_KEY: value });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.startsWith('KEYRING_MASTER_KEY:')).toBe(true);
  });

  it.each([
    ['REDIS_URL', 'localhost:6379'],
    ['NODE_ID', 'has spaces'],
    ['NODE_ID', 'x'.repeat(65)],
    ['PORT', '0'],
    ['PORT', '3000.5'],
    ['KEY_ROTATION_INTERVAL', '1 fortnight'],
    ['CLOCK_SKEW', 'abc'],
    ['USERS', 'alice'],
    ['USERS', 'alice=plaintext-password'],
    ['USERS', '=scrypt.16384.8.1.AAAA.AAAA'],
  ])('names %s when it is %j', (name, value) => {
    expect(named(problemsOf({ ...minimal(), [name]: value }))).toEqual([name]);
  });

  it('requires LEASE_TTL to be at least three HEARTBEAT_INTERVALs', () => {
    expect(named(problemsOf({ ...minimal(), LEASE_TTL: '2s', HEARTBEAT_INTERVAL: '1s' }))).toEqual(['LEASE_TTL']);
    expect(loadConfig({ ...minimal(), LEASE_TTL: '3s', HEARTBEAT_INTERVAL: '1s' }).leaseTtlMs).toBe(3_000);
  });
});

describe('loadConfig: KEYRING_MASTER_KEY_FILE', () => {
  let dir: string | undefined;
  const tempFile = (content: string) => {
    dir ??= mkdtempSync(join(tmpdir(), 'keyfleet-config-'));
    const path = join(dir, `master-${randomBytes(4).toString('hex')}.key`);
    writeFileSync(path, content, { mode: 0o600 });
    return path;
  };
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('reads the key from the file, ignoring a trailing newline', () => {
    const path = tempFile(`${MASTER.toString('base64')}\n`);
    const config = loadConfig({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY_FILE: path });
    expect(config.masterKey.equals(MASTER)).toBe(true);
  });

  it('names KEYRING_MASTER_KEY_FILE when the file holds no valid key', () => {
    const path = tempFile('not a key\n');
    const problems = problemsOf({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY_FILE: path });
    expect(named(problems)).toEqual(['KEYRING_MASTER_KEY_FILE']);
  });

  it('names KEYRING_MASTER_KEY_FILE when the file cannot be read', () => {
    const missing = join(tmpdir(), `keyfleet-missing-${randomBytes(6).toString('hex')}`);
    const problems = problemsOf({ REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY_FILE: missing });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.startsWith('KEYRING_MASTER_KEY_FILE:')).toBe(true);
    expect(problems[0]).toContain('ENOENT');
  });

  it('refuses KEYRING_MASTER_KEY and KEYRING_MASTER_KEY_FILE together', () => {
    const path = tempFile(MASTER.toString('base64'));
    const problems = problemsOf({ ...minimal(), KEYRING_MASTER_KEY_FILE: path });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.startsWith('KEYRING_MASTER_KEY')).toBe(true);
  });
});

describe('loadConfig: Redis through Sentinel', () => {
  const sentinelEnv = () => {
    const { REDIS_URL: _url, ...rest } = minimal();
    return { ...rest, REDIS_SENTINELS: 'sentinel-1:26379, sentinel-2:26379', REDIS_USERNAME: 'keyfleet', REDIS_PASSWORD: 'pw' };
  };

  it('takes REDIS_SENTINELS, REDIS_MASTER_NAME and credentials instead of REDIS_URL', () => {
    const config = loadConfig({ ...sentinelEnv(), REDIS_MASTER_NAME: 'ring', REDIS_MIN_REPLICAS: '2' });
    expect(config.redis).toEqual({
      kind: 'sentinel',
      sentinels: [{ host: 'sentinel-1', port: 26379 }, { host: 'sentinel-2', port: 26379 }],
      name: 'ring',
      username: 'keyfleet',
      password: 'pw',
    });
    expect(config.redisMinReplicas).toBe(2);
  });

  it('refuses both REDIS_URL and REDIS_SENTINELS, and a malformed list, naming the variable', () => {
    expect(named(problemsOf({ ...sentinelEnv(), REDIS_URL: 'redis://x:6379/0' }))).toContain('REDIS_URL and REDIS_SENTINELS');
    expect(named(problemsOf({ ...sentinelEnv(), REDIS_SENTINELS: 'sentinel-1' }))).toContain('REDIS_SENTINELS');
    expect(named(problemsOf({ ...sentinelEnv(), REDIS_MIN_REPLICAS: '-1' }))).toContain('REDIS_MIN_REPLICAS');
  });
});
