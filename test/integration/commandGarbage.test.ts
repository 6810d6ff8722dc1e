import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { mappedPort } from '../support/docker.js';
import { login, request } from '../support/http.js';

// Issue 17: whoever holds the nodes' Redis password can write anything at keyfleet:commands,
// where the CLI pushes operator commands for the primary. Whatever lands there, the primary
// stays up, keeps rotating, and keeps taking the operators' commands. Likewise for what else
// keyfleet reads back from Redis: heartbeats, the audit stream, announcements, sessions.

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

  it('garbage elsewhere (a heartbeat, audit entries, announcements, a session) is skipped: status, audit and the node carry on', async () => {
    const who = await login(cluster.url);
    await admin.set('keyfleet:node:evil', 'not json', 'PX', 60_000);
    await admin.set('keyfleet:node:evil2', JSON.stringify({ id: 'evil2', role: 'king' }), 'PX', 60_000);
    await admin.xadd('keyfleet:audit', '*', 'version', 'seven', 'actor', 'evil');
    await admin.xadd('keyfleet:audit', '*', 'm', 'not an audit entry');
    for (const [channel, message] of [
      ['keyfleet:ring:changed', '{"version":"evil"}'],
      ['keyfleet:revoked:changed', 'garbage'],
      ['keyfleet:revoked:changed', '9 {"ids":[{"id":7}]}'],
      ['keyfleet:sess:changed', 'not a digest'],
    ]) {
      await admin.publish(channel!, message!);
    }
    // The session this login made, overwritten with what no session is (and announced, so no
    // node keeps its copy): the sid is no session any more (401), not a 503 on every node.
    const sid = decodeURIComponent(who.sidCookie.slice(who.sidCookie.indexOf('=') + 1)).replace(/^s:/, '').replace(/\.[^.]*$/, '');
    expect(await admin.exists(`keyfleet:sess:${sid}`)).toBe(1);
    await admin.set(`keyfleet:sess:${sid}`, 'not json', 'PX', 60_000);
    await admin.publish('keyfleet:sess:changed', createHash('sha256').update(sid).digest('base64url').slice(0, 32));
    const me = await request(`${cluster.url}/me`, { headers: { cookie: who.sidCookie } });
    expect(me.status, JSON.stringify(me.body)).toBe(401);

    const status = await cluster.cli(['--json', 'status']);
    expect(status.exitCode, status.output).toBe(0);
    expect((JSON.parse(status.stdout) as { nodes: { id: string }[] }).nodes.map((node) => node.id)).toEqual(['node-1']);
    const audit = await cluster.cli(['--json', 'audit', '-n', '50']);
    expect(audit.exitCode, audit.output).toBe(0);
    const events = JSON.parse(audit.stdout) as { version: number; action: string }[];
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((event) => Number.isFinite(event.version) && event.action !== '')).toBe(true);

    const rotated = await cluster.cli(['rotate', '--purpose', 'cookie']);
    expect(rotated.exitCode, rotated.output).toBe(0);
    expect((await nodeHealth()).status).toBe(200);
    expect((await request(`${cluster.url}/me`, { headers: { authorization: `Bearer ${who.token}` } })).status).toBe(200);
  });
});
