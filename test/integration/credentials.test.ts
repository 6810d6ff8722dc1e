import { decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, waitUntil } from '../support/cluster.js';
import { connectNetwork, containerLogs, disconnect, mappedPort, startContainer, stopContainer } from '../support/docker.js';
import { postLogin, request, type Reply } from '../support/http.js';

// Issue 12 through the balancer on three nodes: logout ends the bearer token (by jti), the
// `auth` cookie and the `sid` session on every node; log out everywhere (route and CLI);
// refresh-token rotation with reuse detection; sliding cookies across a key rotation;
// Redis outages. "Every node" is checked on each node's own port as well as through HAProxy.

const GRACE_MS = 1_000;
const REFRESH_IDLE_MS = 4_000;

interface Credentials {
  token: string;
  refreshToken: string;
  auth: string;
  sid: string;
  node: string;
}

async function fullLogin(base: string): Promise<Credentials> {
  const reply = await postLogin(base, { username: 'demo', password: 'demo-password' });
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  const cookies = reply.headers.getSetCookie().map((line) => line.split(';')[0]!);
  return {
    token: reply.body.token,
    refreshToken: reply.body.refreshToken,
    auth: cookies.find((c) => c.startsWith('auth='))!,
    sid: cookies.find((c) => c.startsWith('sid='))!,
    node: reply.body.node,
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const timeout = () => AbortSignal.timeout(10_000);
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: timeout() });
const refresh = (base: string, refreshToken: string) => post(`${base}/token/refresh`, { refreshToken });

// P-256's group order: (r, n - s) is a second valid ECDSA signature of the same token.
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
function reencodeSignature(token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const bytes = Buffer.from(signature, 'base64url');
  const s = BigInt(`0x${bytes.subarray(32).toString('hex')}`);
  const flipped = Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex');
  return `${header}.${payload}.${Buffer.concat([bytes.subarray(0, 32), flipped]).toString('base64url')}`;
}

describe('credentials that end when users say so (issue 12)', () => {
  let cluster: Cluster;
  let base: string;
  /** Each node's own port, from the host (no balancer in between; read again: a network change moves it). */
  const nodeUrls = () => Promise.all([...cluster.nodes.entries()].map(async ([id, c]) => [id, `http://${c.getHost()}:${await mappedPort(c, 3000)}`] as const));
  /** The answers of every node to one request. */
  const onEveryNode = async (path: string, headers: Record<string, string>) =>
    Promise.all((await nodeUrls()).map(async ([id, url]) => [id, await request(`${url}${path}`, { headers, signal: timeout() })] as const));
  const statuses = (replies: (readonly [string, Reply])[]) => replies.map(([id, r]) => `${id}:${r.status}:${r.body.code ?? r.body.user}`);

  beforeAll(async () => {
    cluster = await Cluster.start({
      nodes: 3,
      env: {
        DASHBOARD: 'login',
        DASHBOARD_USERS: 'demo',
        REFRESH_REUSE_GRACE: `${GRACE_MS}ms`,
        REFRESH_IDLE_TIMEOUT: `${REFRESH_IDLE_MS}ms`,
        RING_RELOAD_INTERVAL: '2s',
      },
    });
    base = cluster.url;
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('logout ends the bearer token (by jti, whatever its encoding), the auth cookie and the session on every node, and the dashboard refuses the cookie', async () => {
    const who = await fullLogin(base);
    const twin = reencodeSignature(who.token);
    expect(twin).not.toBe(who.token);
    for (const headers of [bearer(who.token), bearer(twin), { cookie: who.auth }, { cookie: who.sid }]) {
      for (const [id, reply] of await onEveryNode('/me', headers)) expect(reply.status, `${id} before logout`).toBe(200);
    }
    expect((await request(`${base}/dashboard/data`, { headers: { cookie: who.auth }, signal: timeout() })).status).toBe(200);

    const logout = await post(`${base}/logout`, {}, { ...bearer(who.token), cookie: `${who.auth}; ${who.sid}` });
    expect(logout.status, JSON.stringify(logout.body)).toBe(200);
    // It answered once every live node said it refuses them (their heartbeats).
    expect(logout.body.nodes).toEqual({ confirmed: 3, live: 3 });
    // Every node, at once after the answer (the benchmark measures how soon: scripts/bench-logout.mjs).
    await waitUntil(async () => {
      const all = [...(await onEveryNode('/me', bearer(who.token))), ...(await onEveryNode('/me', bearer(twin))), ...(await onEveryNode('/me', { cookie: who.auth }))];
      return all.every(([, r]) => r.status === 401);
    }, { timeoutMs: 2_000, intervalMs: 10, what: 'every node to refuse the logged-out token and cookie' });
    for (const [id, reply] of await onEveryNode('/me', bearer(twin))) expect(reply.body.code, id).toBe('ERR_TOKEN_REVOKED');
    // The login's access token carries its refresh family: that ends too.
    expect(logout.body.ended.sort()).toEqual(['cookie', 'refresh', 'session', 'token']);
    expect((await refresh(base, who.refreshToken)).body.code).toBe('ERR_REFRESH_INVALID'); // the family is gone from Redis
    for (const [id, reply] of await onEveryNode('/me', { cookie: who.auth })) expect(reply.body.code, id).toBe('ERR_COOKIE_REVOKED');
    for (const [id, reply] of await onEveryNode('/me', { cookie: who.sid })) expect(reply.status, id).toBe(401);
    const dashboard = await request(`${base}/dashboard/data`, { headers: { cookie: who.auth }, signal: timeout() });
    expect(dashboard.status).toBe(401);
    expect(dashboard.body.code).toBe('ERR_COOKIE_REVOKED');
    // A logout with nothing valid ends nothing and fails nothing.
    expect((await post(`${base}/logout`, {}, bearer(who.token))).body.ended).toEqual([]);
  });

  it('logs a user out everywhere: every earlier credential ends on every node, refresh families too, and a new login works at once', async () => {
    const [a, b] = [await fullLogin(base), await fullLogin(base)];
    const everywhere = await post(`${base}/logout/everywhere`, {}, bearer(a.token));
    expect(everywhere.status, JSON.stringify(everywhere.body)).toBe(200);
    const fresh = await fullLogin(base);
    for (const [id, reply] of await onEveryNode('/me', bearer(fresh.token))) expect(reply.status, `${id}: new login`).toBe(200);
    await waitUntil(async () => {
      const all = await Promise.all([b.token, a.token].map((t) => onEveryNode('/me', bearer(t))));
      return all.flat().every(([, r]) => r.status === 401);
    }, { timeoutMs: 2_000, intervalMs: 10, what: 'every node to refuse tokens from before' });
    for (const headers of [bearer(b.token), { cookie: b.auth }, { cookie: b.sid }]) {
      const replies = await onEveryNode('/me', headers);
      expect(statuses(replies).every((s) => /:401:ERR_(TOKEN|COOKIE|SESSION)_REVOKED$/.test(s)), statuses(replies).join(' ')).toBe(true);
    }
    expect((await refresh(base, b.refreshToken)).body.code).toBe('ERR_REFRESH_REVOKED');
    for (const headers of [{ cookie: fresh.auth }, { cookie: fresh.sid }]) {
      for (const [id, reply] of await onEveryNode('/me', headers)) expect(reply.status, `${id}: new login`).toBe(200);
    }
    expect((await refresh(base, fresh.refreshToken)).status).toBe(200);
  });

  it('keyfleet revoke-user ends every credential of the user and reports the nodes that confirmed', async () => {
    const who = await fullLogin(base);
    const cli = await cluster.cli(['revoke-user', 'demo']);
    expect(cli.exitCode, cli.output).toBe(0);
    expect(cli.stdout).toMatch(/3\/3 nodes confirmed/);
    // Confirmed means applied: no waiting here.
    for (const headers of [bearer(who.token), { cookie: who.auth }, { cookie: who.sid }]) {
      for (const [id, reply] of await onEveryNode('/me', headers)) expect(reply.status, id).toBe(401);
    }
    const audit = await cluster.cli(['audit', '-n', '5']);
    expect(audit.stdout).toMatch(/revoke-user\s+every credential of demo/);
  });

  it('rotates refresh tokens: each use returns a new access token and a new refresh token, valid on every node', async () => {
    const who = await fullLogin(base);
    expect(who.refreshToken).toMatch(/^[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}$/);
    const first = await refresh(base, who.refreshToken);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body.refreshToken).not.toBe(who.refreshToken);
    expect(first.body.token).not.toBe(who.token);
    for (const [id, reply] of await onEveryNode('/me', bearer(first.body.token))) expect(reply.status, id).toBe(200);
    const second = await refresh(base, first.body.refreshToken);
    expect(second.status).toBe(200);
    // Redis holds hashes only, never a token.
    const admin = cluster.redis.admin();
    try {
      const family = who.refreshToken.split('.')[0]!;
      const stored = JSON.stringify(await admin.hgetall(`keyfleet:refresh:${family}`));
      for (const token of [who.refreshToken, first.body.refreshToken, second.body.refreshToken]) expect(stored).not.toContain(token.split('.')[1]);
    } finally {
      admin.disconnect();
    }
  });

  it('a token redeemed at once from several nodes rotates once: every answer carries the same successor', async () => {
    const who = await fullLogin(base);
    const replies = await Promise.all(Array.from({ length: 6 }, () => refresh(base, who.refreshToken)));
    expect(replies.map((r) => r.status)).toEqual(Array(6).fill(200));
    expect(new Set(replies.map((r) => r.node)).size).toBeGreaterThanOrEqual(2);
    expect(new Set(replies.map((r) => r.body.refreshToken)).size).toBe(1);
    const admin = cluster.redis.admin();
    try {
      // One rotation: generation 1 -> 2, not one per node.
      expect(await admin.hget(`keyfleet:refresh:${who.refreshToken.split('.')[0]}`, 'gen')).toBe('2');
    } finally {
      admin.disconnect();
    }
    expect((await refresh(base, replies[0]!.body.refreshToken)).status).toBe(200);
  });

  it('a retry within the grace window returns the same successor', async () => {
    const who = await fullLogin(base);
    const first = await refresh(base, who.refreshToken);
    const retry = await refresh(base, who.refreshToken);
    expect([first.status, retry.status]).toEqual([200, 200]);
    expect(retry.body.refreshToken).toBe(first.body.refreshToken);
    expect((await refresh(base, retry.body.refreshToken)).status).toBe(200);
  });

  it('reuse after the grace window revokes the family and every access token it issued, is audited and counted', async () => {
    const reusesBefore = await reuseCount(cluster);
    const who = await fullLogin(base);
    const first = await refresh(base, who.refreshToken);
    const usedAt = Date.now();
    await waitUntil(() => Date.now() - usedAt > GRACE_MS + 200, { what: 'the grace window to pass' });
    const reuse = await refresh(base, who.refreshToken);
    expect(reuse.status).toBe(401);
    expect(reuse.body.code).toBe('ERR_REFRESH_REUSED');
    expect(JSON.stringify(reuse.body)).not.toContain(who.refreshToken);
    // The successor the thief or the client holds is dead too, and so are the family's access tokens.
    expect((await refresh(base, first.body.refreshToken)).body.code).toBe('ERR_REFRESH_INVALID');
    await waitUntil(async () => {
      const all = await Promise.all([who.token, first.body.token].map((t) => onEveryNode('/me', bearer(t))));
      return all.flat().every(([, r]) => r.status === 401 && r.body.code === 'ERR_TOKEN_REVOKED');
    }, { timeoutMs: 2_000, intervalMs: 10, what: 'every node to refuse the family access tokens' });
    // The auth cookie of that login is not part of the family.
    expect((await request(`${base}/me`, { headers: { cookie: who.auth }, signal: timeout() })).status).toBe(200);
    const audit = await cluster.cli(['audit', '-n', '5']);
    expect(audit.stdout).toMatch(/refresh-reuse\s+refresh token of generation 1 presented again/);
    expect(audit.stdout).not.toContain(who.refreshToken.split('.')[1]);
    expect(await reuseCount(cluster)).toBe(reusesBefore + 1);
    // The node that caught it logged the family, never a token.
    const logs = (await Promise.all([...cluster.nodes.values()].map(containerLogs))).join('\n');
    expect(logs).toContain('refresh token reused');
    for (const token of [who.refreshToken, first.body.refreshToken]) expect(logs).not.toContain(token.split('.')[1]);
  });

  it('reuse of a token two generations old revokes the family, even within the grace window', async () => {
    const who = await fullLogin(base);
    const second = await refresh(base, who.refreshToken);
    const third = await refresh(base, second.body.refreshToken);
    expect([second.status, third.status]).toEqual([200, 200]);
    const reuse = await refresh(base, who.refreshToken);
    expect(reuse.body.code).toBe('ERR_REFRESH_REUSED');
    expect((await refresh(base, third.body.refreshToken)).body.code).toBe('ERR_REFRESH_INVALID');
  });

  it('a family unused past its idle timeout expires; malformed bodies are 400, unknown tokens 401', async () => {
    const who = await fullLogin(base);
    const loggedInAt = Date.now();
    await waitUntil(() => Date.now() - loggedInAt > REFRESH_IDLE_MS + 200, { timeoutMs: 10_000, what: 'the idle timeout to pass' });
    const expired = await refresh(base, who.refreshToken);
    expect(expired.status).toBe(401);
    expect(expired.body.code).toBe('ERR_REFRESH_EXPIRED');
    for (const body of [{}, { refreshToken: 42 }, { refreshToken: 'x'.repeat(300) }]) {
      const reply = await post(`${base}/token/refresh`, body);
      expect(reply.status, JSON.stringify(body)).toBe(400);
      expect(reply.body.code).toBe('ERR_BAD_REFRESH_BODY');
    }
    const bad = await request(`${base}/token/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"refreshToken":', signal: timeout() });
    expect(bad.status).toBe(400);
    for (const token of ['nope', `${'A'.repeat(22)}.${'B'.repeat(43)}`, `${who.refreshToken.split('.')[0]}.${'B'.repeat(43)}`]) {
      const reply = await refresh(base, token);
      expect(reply.status).toBe(401);
      expect(reply.body.code).toBe('ERR_REFRESH_INVALID');
    }
  });

  it('after a key rotation, a cookie sealed with the retired key is renewed with the active key; logging out ends both generations', async () => {
    const who = await fullLogin(base);
    const oldKid = decodeProtectedHeader(who.auth.slice('auth='.length)).kid;
    const rotated = await cluster.cli(['rotate', '--purpose', 'encrypt']);
    expect(rotated.exitCode, rotated.output).toBe(0);
    // The dashboard, polled with the cookie, renews it too.
    const polled = await request(`${base}/dashboard/data`, { headers: { cookie: who.auth }, signal: timeout() });
    expect(polled.status).toBe(200);
    const fromDashboard = polled.headers.getSetCookie().find((line) => line.startsWith('auth='));
    expect(decodeProtectedHeader(fromDashboard!.split(';')[0]!.slice('auth='.length)).kid).not.toBe(oldKid);
    const answer = await request(`${base}/me`, { headers: { cookie: who.auth }, signal: timeout() });
    expect(answer.status).toBe(200);
    const renewed = answer.headers.getSetCookie().map((line) => line.split(';')[0]!).find((c) => c.startsWith('auth='));
    expect(renewed, 'a fresh auth cookie in the answer').toBeDefined();
    const header = decodeProtectedHeader(renewed!.slice('auth='.length));
    expect(header.kid).not.toBe(oldKid);
    expect(rotated.stdout).toContain(String(header.kid));
    expect(header.jti).toBe(decodeProtectedHeader(who.auth.slice('auth='.length)).jti);
    for (const [id, reply] of await onEveryNode('/me', { cookie: renewed! })) expect(reply.status, id).toBe(200);
    // The renewed cookie is not renewed again at once: its key is active and it is fresh.
    const again = await request(`${base}/me`, { headers: { cookie: renewed! }, signal: timeout() });
    expect(again.headers.getSetCookie().some((line) => line.startsWith('auth='))).toBe(false);

    expect((await post(`${base}/logout`, {}, { cookie: renewed! })).status).toBe(200);
    await waitUntil(async () => (await onEveryNode('/me', { cookie: who.auth })).every(([, r]) => r.status === 401), {
      timeoutMs: 2_000,
      intervalMs: 10,
      what: 'the older generation of the cookie to be refused everywhere',
    });
  });

  it('while Redis is down, refresh answers 503 and access tokens and cookies keep working on every node', async () => {
    const who = await fullLogin(base);
    await stopContainer(cluster.redis.container);
    try {
      await waitUntil(async () => (await refresh(base, who.refreshToken)).status === 503, { timeoutMs: 15_000, what: 'refresh to answer 503' });
      const reply = await refresh(base, who.refreshToken);
      expect(reply.body.code).toBe('ERR_REFRESH_UNAVAILABLE');
      for (const headers of [bearer(who.token), { cookie: who.auth }]) {
        for (const [id, answer] of await onEveryNode('/me', headers)) expect(answer.status, id).toBe(200);
      }
      // A login still works, without a refresh token.
      const login = await postLogin(base, { username: 'demo', password: 'demo-password' });
      expect(login.status).toBe(200);
      expect(login.body.refreshToken).toBeUndefined();
    } finally {
      await startContainer(cluster.redis.container);
    }
    // Back: a new login's refresh token redeems again (the outage outlasted the old family's idle timeout).
    // Each node finds Redis again on its own: a login, and then a refresh, may land on one that has not yet.
    let after: Credentials | undefined;
    await waitUntil(async () => (after = await fullLogin(base)).refreshToken !== undefined, { timeoutMs: 30_000, what: 'logins to carry a refresh token again' });
    let status = 0;
    await waitUntil(async () => (status = (await refresh(base, after!.refreshToken)).status) !== 503, { timeoutMs: 30_000, what: 'refresh to be answered' });
    expect(status).toBe(200);
  });

  it('a logout made while a node was cut off from Redis is applied on that node when it reconnects', async () => {
    const status = JSON.parse((await cluster.cli(['--json', 'status'])).stdout) as { primary: string };
    const victimId = [...cluster.nodes.keys()].find((id) => id !== status.primary)!;
    const victim = cluster.nodes.get(victimId)!;
    // Its published port goes with the network it was started on: reached through the balancer meanwhile.
    const askVictim = async (headers: Record<string, string>) => {
      for (let i = 0; i < 30; i++) {
        const reply = await request(`${base}/me`, { headers, signal: timeout() });
        if (reply.node === victimId) return reply;
      }
      throw new Error(`the balancer never sent a request to ${victimId}`);
    };
    const who = await fullLogin(base);
    await disconnect(victim, cluster.backNetwork.getName());
    let reconnectedAt = 0;
    try {
      // On a node that can reach Redis (the victim would refuse at once itself, and answer 503).
      const [, connected] = (await nodeUrls()).find(([id]) => id !== victimId)!;
      expect((await post(`${connected}/logout`, {}, bearer(who.token))).status).toBe(200);
      for (let i = 0; i < 9; i++) {
        const reply = await request(`${base}/me`, { headers: bearer(who.token), signal: timeout() });
        // The window: the cut-off node cannot know yet; the others refuse.
        expect(reply.status, reply.node!).toBe(reply.node === victimId ? 200 : 401);
      }
      expect((await askVictim(bearer(who.token))).status).toBe(200);
    } finally {
      await connectNetwork(victim, cluster.backNetwork.getName(), [victimId]);
      reconnectedAt = Date.now();
    }
    await waitUntil(async () => (await askVictim(bearer(who.token))).status === 401, {
      timeoutMs: 20_000,
      what: 'the reconnected node to apply the logout',
    });
    console.log(`[figures] a logout made while a node was cut off from Redis was applied there ${Date.now() - reconnectedAt} ms after it reconnected`);
  });
});

/** keyfleet_refresh_token_reuse_total over every node (METRICS_PORT, read inside each container). */
async function reuseCount(cluster: Cluster): Promise<number> {
  let total = 0;
  for (const container of cluster.nodes.values()) {
    const { stdout } = await container.exec(['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    const match = /^keyfleet_refresh_token_reuse_total (\d+)/m.exec(stdout);
    total += Number(match?.[1] ?? 0);
  }
  return total;
}
