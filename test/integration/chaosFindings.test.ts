import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { pauseContainer, unpauseContainer } from '../support/docker.js';
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
