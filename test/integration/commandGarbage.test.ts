import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { mappedPort } from '../support/docker.js';
import { request } from '../support/http.js';

// Issue 17: whoever holds the nodes' Redis password can write anything at keyfleet:commands,
// where the CLI pushes operator commands for the primary. Whatever lands there, the primary
// stays up, keeps rotating, and keeps taking the operators' commands.

const COMMANDS = 'keyfleet:commands';

describe('garbage at the operators\' command key', () => {
  let cluster: Cluster;
  let admin: Redis;

  const nodeHealth = async () => {
    const container = cluster.nodes.get('node-1')!;
    return request(`http://${container.getHost()}:${await mappedPort(container, 3000)}/healthz`);
  };
  const ringVersion = async () => Number(await admin.get('keyfleet:ring:version'));
  /** BLPOPs that Redis refused so far (INFO commandstats: failed_calls). */
  const failedPops = async () => Number(/cmdstat_blpop:.*failed_calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 1, env: { HEARTBEAT_INTERVAL: '1s' } });
    admin = cluster.redis.admin();
  });
  afterAll(async () => {
    admin?.disconnect();
    await cluster?.stop();
  });

  it('skips entries that are not JSON or not commands, and still rotates on the next command', async () => {
    const before = await ringVersion();
    await admin.lpush(COMMANDS, 'not json', '{"action":', '\u0000\u00ff', 'null', JSON.stringify({ action: 'rotate', id: 7, purposes: 'all' }));
    const rotated = await cluster.cli(['rotate', '--purpose', 'encrypt']);
    expect(rotated.exitCode, rotated.output).toBe(0);
    expect(await admin.llen(COMMANDS)).toBe(0);
    expect(await ringVersion()).toBeGreaterThan(before);
    expect((await nodeHealth()).status).toBe(200);
  });

  it('a stream written at the command key (XADD) neither stops the primary nor locks the operators out', async () => {
    const failedBefore = await failedPops();
    await admin.xadd(COMMANDS, '*', 'm', 'not json', 'x', '\u00ff');
    // The primary removes what is not its list of commands (the CLI's RPUSH would fail on it).
    await waitUntil(async () => ['none', 'list'].includes(await admin.type(COMMANDS)), { what: 'the primary to remove the stream', timeoutMs: 15_000 });
    const before = await ringVersion();
    const rotated = await cluster.cli(['rotate', '--purpose', 'encrypt']);
    expect(rotated.exitCode, rotated.output).toBe(0);
    expect(await ringVersion()).toBeGreaterThan(before);
    // It backed off rather than spinning on the refused BLPOP.
    expect(await failedPops()).toBeLessThan(failedBefore + 10);
    const health = await nodeHealth();
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('ok');
  });
});
