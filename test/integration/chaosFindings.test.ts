import { GenericContainer, type StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, IMAGES, waitUntil } from '../support/cluster.js';
import { connectNetwork, disconnect, docker, pauseContainer, unpauseContainer } from '../support/docker.js';
import { login, request } from '../support/http.js';

// Regression tests for what the nemesis (chaos.test.ts) found, each on its own.

describe('a session read that fails does not end the session (nemesis finding 1)', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 2 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('Redis paused while a sid is presented: 503 then, and the session still works once Redis answers', async () => {
    const who = await login(cluster.url);
    const sid = decodeURIComponent(who.sidCookie.slice('sid='.length)).slice(2).split('.')[0]!;
    const admin = cluster.redis.admin();
    try {
      expect(await admin.exists(`keyfleet:sess:${sid}`)).toBe(1);
      // Paused, Redis keeps its connections open: the nodes' session reads time out (commandTimeout).
      await pauseContainer(cluster.redis.container);
      let during;
      try {
        during = await request(`${cluster.url}/me`, { headers: { cookie: who.sidCookie }, signal: AbortSignal.timeout(60_000) });
      } finally {
        await unpauseContainer(cluster.redis.container);
      }
      expect(during.status).toBe(503);
      expect(during.body.code).toBe('ERR_SESSION_STORE_UNAVAILABLE');
      // What each node sent while Redis was paused has been carried out once a later write of
      // that node (a login's session, on the same connection) has been answered.
      const written = new Set<string>();
      await waitUntil(
        async () => {
          const reply = await request(`${cluster.url}/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
            signal: AbortSignal.timeout(10_000),
          });
          if (reply.status === 200 && reply.body.session === true) written.add(reply.node!);
          return written.size === cluster.nodes.size;
        },
        { timeoutMs: 30_000, what: 'a session written by every node after Redis came back' },
      );
      expect(await admin.exists(`keyfleet:sess:${sid}`)).toBe(1);
      const after = await request(`${cluster.url}/me`, { headers: { cookie: who.sidCookie }, signal: AbortSignal.timeout(10_000) });
      expect(after.status).toBe(200);
      expect(after.body).toMatchObject({ user: 'demo', via: 'session' });
    } finally {
      admin.disconnect();
    }
  });
});

describe('a node reconnected to Redis under another address (nemesis finding 2)', () => {
  let cluster: Cluster;
  let filler: StartedTestContainer | undefined;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 2, env: { HEARTBEAT_INTERVAL: '500ms', LEASE_TTL: '3s' } });
  });
  afterAll(async () => {
    await filler?.stop({ timeout: 0 });
    await cluster?.stop();
  });

  it('drops its dead connection and heartbeats again (no socket left waiting for minutes)', async () => {
    const status = JSON.parse((await cluster.cli(['--json', 'status'])).stdout) as { primary: string };
    const victimId = [...cluster.nodes.keys()].find((id) => id !== status.primary)!;
    const victim = cluster.nodes.get(victimId)!;
    const back = cluster.backNetwork.getName();
    const address = async () => (await (await docker()).getContainer(victim.getId()).inspect()).NetworkSettings.Networks[back]?.IPAddress;
    const before = await address();
    const admin = cluster.redis.admin();
    try {
      await disconnect(victim, back);
      // Another container takes the address it had: when the node comes back under a new one,
      // its old connection to Redis gets no RST and no answer, as in the nemesis (containers
      // come and go while a node is cut off).
      filler = await new GenericContainer(IMAGES.redis).withNetwork(cluster.backNetwork).withEnvironment({ REDIS_PASSWORD: 'filler-only' }).start();
      await waitUntil(async () => (await admin.exists(`keyfleet:node:${victimId}`)) === 0, { what: `${victimId}'s heartbeat to expire` });
      await connectNetwork(victim, back, [victimId]);
      const reconnected = Date.now();
      expect(await address()).not.toBe(before);
      await waitUntil(
        async () => {
          const beat = await admin.get(`keyfleet:node:${victimId}`);
          return beat !== null && JSON.parse(beat).at > reconnected;
        },
        { timeoutMs: 20_000, what: `${victimId} to heartbeat again after it was reconnected under a new address` },
      );
      console.log(`[figures] ${victimId} heartbeating again ${Date.now() - reconnected} ms after it was reconnected under a new address`);
    } finally {
      admin.disconnect();
    }
  });
});

describe('a node back in touch with Redis after a rotation went ahead without it (nemesis finding 3)', () => {
  let cluster: Cluster;
  let filler: StartedTestContainer | undefined;
  beforeAll(async () => {
    // A long periodic reload: only coming back itself can bring the node's ring up to date.
    cluster = await Cluster.start({ nodes: 3, env: { HEARTBEAT_INTERVAL: '500ms', LEASE_TTL: '3s', RING_RELOAD_INTERVAL: '60s' } });
  });
  afterAll(async () => {
    await filler?.stop({ timeout: 0 });
    await cluster?.stop();
  });

  it('loads the ring before it vouches for it again: no session signed by the new cookie key refused', async () => {
    const status = JSON.parse((await cluster.cli(['--json', 'status'])).stdout) as { primary: string };
    const victimId = [...cluster.nodes.keys()].find((id) => id !== status.primary)!;
    const victim = cluster.nodes.get(victimId)!;
    const back = cluster.backNetwork.getName();
    const admin = cluster.redis.admin();
    await disconnect(victim, back);
    let reconnected = false;
    try {
      // Back under another address (its old one taken), as in the nemesis: its subscriber's
      // connection is dead, so the announcement of the rotation below never reaches it.
      filler = await new GenericContainer(IMAGES.redis).withNetwork(cluster.backNetwork).withEnvironment({ REDIS_PASSWORD: 'filler-only' }).start();
      const rotated = await cluster.cli(['rotate', '--purpose', 'cookie'], status.primary);
      expect(rotated.exitCode, rotated.output).toBe(0);
      const fresh = await login(cluster.url);
      await connectNetwork(victim, back, [victimId]);
      reconnected = true;
      const since = Date.now();
      await waitUntil(
        async () => {
          const beat = await admin.get(`keyfleet:node:${victimId}`);
          return beat !== null && JSON.parse(beat).at > since;
        },
        { timeoutMs: 20_000, what: `${victimId} to heartbeat again` },
      );
      // From its first acknowledged heartbeat on: every answer to the fresh sid, 6 s of them.
      const refused: string[] = [];
      let answered = 0;
      const until = Date.now() + 6_000;
      await waitUntil(
        async () => {
          const reply = await request(`${cluster.url}/me`, { headers: { cookie: fresh.sidCookie }, signal: AbortSignal.timeout(10_000) });
          if (reply.node === victimId) answered++;
          if (reply.status !== 200) refused.push(`${reply.status} ${reply.body.code} from ${reply.node}`);
          return Date.now() > until;
        },
        { timeoutMs: 30_000, intervalMs: 20, what: '6 s of requests after it is back' },
      );
      console.log(`[figures] node back in touch: answered ${answered} requests with a fresh sid in 6 s, ${refused.length} refused ${refused.slice(0, 3).join('; ')}`);
      expect(refused).toEqual([]);
      expect(answered).toBeGreaterThan(0);
    } finally {
      admin.disconnect();
      if (!reconnected) await connectNetwork(victim, back, [victimId]);
    }
  });
});
