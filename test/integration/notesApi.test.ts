import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialHeaders, login, request, type CredentialKind, type LoginResult, type Reply } from '../support/http.js';
import { waitUntil } from '../support/cluster.js';
import { startNotesStack, type StartedNotesStack } from '../support/notesStack.js';

// Somebody else's app on keyfleet as a library (examples/notes-api: its own users, its own
// routes, notes in Redis, a `role` claim), run as its README runs it: compose.yaml with the
// example's override, 3 replicas behind the kit's HAProxy. Every check goes through the
// balancer, over and over, so each credential meets every node.

const KINDS: CredentialKind[] = ['token', 'cookie', 'session'];
const ALICE = ['alice', 'alice-password'] as const; // editor
const BOB = ['bob', 'bob-password'] as const; // reader
const requestTimeoutMs = 5_000;

const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()).kid as string;

describe('examples/notes-api: an app built on the keyfleet library, 3 replicas behind HAProxy', () => {
  let stack: StartedNotesStack;
  let sent = 0;

  const call = (path: string, init: RequestInit = {}): Promise<Reply> => {
    sent++;
    return request(`${stack.url}${path}`, { ...init, signal: AbortSignal.timeout(requestTimeoutMs) });
  };
  const json = (method: string, body: unknown, headers: Record<string, string>): RequestInit => ({
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

  /**
   * Sends the same request until every node has answered it (and at least `rounds` times);
   * each answer must pass `check`. Returns the nodes seen.
   */
  async function everywhere(path: string, init: () => RequestInit, check: (reply: Reply) => void, rounds = 9): Promise<Set<string>> {
    const nodes = new Set<string>();
    for (let i = 0; i < 60 && (i < rounds || nodes.size < 3); i++) {
      const reply = await call(path, init());
      check(reply);
      nodes.add(reply.node!);
    }
    expect(nodes.size, `answered by ${[...nodes].join(', ')}`).toBe(3);
    return nodes;
  }

  beforeAll(async () => {
    // JWKS_PREPUBLISH=0s: a routine rotation lets the next signing key sign at once.
    stack = await startNotesStack({ env: { JWKS_PREPUBLISH: '0s' } });
  });
  afterAll(async () => {
    console.log(`[figures] notes-api: ${sent} requests from the checks, beside the rotation's traffic`);
    await stack?.stop();
  });

  it('serves keyfleet\'s routes from the app: /healthz on every node, the JWKS, discovery', async () => {
    const nodes = await everywhere('/healthz', () => ({}), (reply) => {
      expect(reply.status).toBe(200);
      expect(reply.body.status).toBe('ok');
    });
    const jwks = await call('/.well-known/jwks.json');
    expect(jwks.status).toBe(200);
    expect(jwks.body.keys.length).toBeGreaterThan(0);
    const discovery = await call('/.well-known/openid-configuration');
    expect(discovery.status).toBe(200);
    expect(discovery.body.jwks_uri).toMatch(/\/\.well-known\/jwks\.json$/);
    console.log(`[figures] notes-api: ${nodes.size} nodes behind the balancer: ${[...nodes].sort().join(', ')}`);
  });

  it('has every node listening for ring changes and revocations, so they reach it at once', async () => {
    // What the contract promises (changes published to all nodes) and what an app's start-up
    // can break: a subscription made while ioredis is between `connect` and `ready` is lost
    // without an error, and that node then hears of a rotation or a revocation only from its
    // periodic reload, seconds later (see examples/notes-api/src/server.ts).
    const channels = ['keyfleet:ring:changed', 'keyfleet:revoked:changed'];
    const listening = await stack.subscribers(...channels);
    console.log(`[figures] notes-api: nodes subscribed per channel: ${JSON.stringify(listening)}`);
    expect(listening).toEqual(Object.fromEntries(channels.map((channel) => [channel, 3])));
  });

  it('accepts a token, an auth cookie and a sid session minted on one node on all three, with the app\'s role claim typed', async () => {
    const before = sent;
    const alice = await login(stack.url, ...ALICE);
    let count = 0;
    for (const kind of KINDS) {
      await everywhere('/whoami', () => ({ headers: credentialHeaders(kind, alice) }), (reply) => {
        expect(reply.status, `${kind} on ${reply.node}: ${JSON.stringify(reply.body)}`).toBe(200);
        expect(reply.body).toMatchObject({ user: 'alice', via: kind, role: 'editor', claims: { role: 'editor' }, node: reply.node });
        // The app's own data in the session (kf.requireUser({ session: 'load' })) follows it from node to node.
        if (kind === 'session') expect(reply.body.session.count).toBe(++count);
      });
    }
    const last = await call('/whoami', { headers: credentialHeaders('session', alice) });
    expect(last.body.session.count).toBe(count + 1);
    expect(new Set(last.body.session.nodes)).toEqual(new Set([...(await everywhere('/healthz', () => ({}), () => undefined, 3))]));
    const bob = await login(stack.url, ...BOB);
    for (const kind of KINDS) {
      const reply = await call('/whoami', { headers: credentialHeaders(kind, bob) });
      expect(reply.body).toMatchObject({ user: 'bob', via: kind, role: 'reader' });
    }
    // The claim decides, on whichever node: readers may not write.
    await everywhere('/notes', () => json('POST', { text: 'bob was here' }, credentialHeaders('token', bob)), (reply) => {
      expect(reply.status).toBe(403);
      expect(reply.body.code).toBe('ERR_FORBIDDEN');
    }, 3);
    // The app's users decide who logs in; keyfleet's demo account is not one of them.
    expect((await call('/login', json('POST', { username: 'bob', password: 'wrong' }, {}))).status).toBe(401);
    expect((await call('/login', json('POST', { username: 'demo', password: 'demo-password' }, {}))).status).toBe(401);
    // No credential, a tampered one: 401 JSON from every node, never 5xx.
    await everywhere('/whoami', () => ({}), (reply) => {
      expect(reply.status).toBe(401);
      expect(reply.body.code).toEqual(expect.any(String));
    }, 3);
    await everywhere('/notes', () => ({ headers: { authorization: `Bearer ${alice.token.slice(0, -4)}AAAA` } }), (reply) => {
      expect(reply.status).toBe(401);
    }, 3);
    console.log(`[figures] notes-api cross-node: ${sent - before} requests through the balancer, every credential kind accepted by all 3 nodes with its role claim; the app's session data written on each of them`);
  });

  it('reads on every node the notes written on one, per user, and deletes them everywhere', async () => {
    const alice = await login(stack.url, ...ALICE);
    const bob = await login(stack.url, ...BOB);
    const created = await call('/notes', json('POST', { text: 'buy milk' }, credentialHeaders('token', alice)));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const { id, node: writer } = created.body.note as { id: string; node: string };
    expect(writer).toBe(created.node);
    const readers = await everywhere('/notes', () => ({ headers: credentialHeaders('session', alice) }), (reply) => {
      expect(reply.status).toBe(200);
      expect(reply.body.notes).toContainEqual(expect.objectContaining({ id, text: 'buy milk', node: writer }));
    });
    expect([...readers].filter((node) => node !== writer)).toHaveLength(2);
    // Bob's list is his own.
    const bobs = await call('/notes', { headers: credentialHeaders('cookie', bob) });
    expect(bobs.status).toBe(200);
    expect(bobs.body.notes.map((note: { id: string }) => note.id)).not.toContain(id);

    // A page of another site cannot write with the browser's cookies: kf.routes() puts the
    // same-origin check in front of the app's own routes too.
    const crossSite = await call('/notes', json('POST', { text: 'from evil.example' }, { ...credentialHeaders('cookie', alice), origin: 'https://evil.example' }));
    expect(crossSite.status).toBe(403);
    expect(crossSite.body.code).toBe('ERR_CROSS_SITE');

    const deleted = await call(`/notes/${id}`, { method: 'DELETE', headers: credentialHeaders('cookie', alice) });
    expect(deleted.status).toBe(204);
    await everywhere('/notes', () => ({ headers: credentialHeaders('token', alice) }), (reply) => {
      expect(reply.status).toBe(200);
      expect(reply.body.notes.map((note: { id: string }) => note.id)).not.toContain(id);
    });
    expect((await call(`/notes/${id}`, { method: 'DELETE', headers: credentialHeaders('session', alice) })).status).toBe(404);
    console.log(`[figures] notes-api notes: written on ${writer}, read on ${[...readers].filter((node) => node !== writer).join(' and ')}, deleted on ${deleted.node}`);
  });

  it('rotates every key under traffic, three times over, without failing a request', async () => {
    const before = await login(stack.url, ...ALICE);
    const oldKid = kidOf(before.token);
    const traffic = startNotesTraffic(stack.url, 3);
    await waitUntil(() => traffic.report.sent >= 60, { timeoutMs: 60_000, what: 'traffic before the rotation' });
    const started = Date.now();
    const outputs: string[] = [];
    for (let round = 0; round < 3; round++) {
      // Traffic between rotations, so credentials minted with each generation meet every node.
      const sent = traffic.report.sent;
      await waitUntil(() => traffic.report.sent >= sent + 40, { timeoutMs: 60_000, what: 'traffic between rotations' });
      const rotated = await stack.cli(['rotate', '--purpose', 'all']);
      expect(rotated.exitCode, rotated.stdout + rotated.stderr).toBe(0);
      outputs.push(rotated.stdout);
    }
    const rotationMs = Date.now() - started;
    // Credentials minted before and after the rotations, on every node.
    const rotatedAt = Date.now();
    const sentAtRotation = traffic.report.sent;
    await waitUntil(() => traffic.report.sent >= sentAtRotation + 150, { timeoutMs: 60_000, what: 'traffic after the rotation' });
    const report = await traffic.stop();
    for (const line of outputs.join('\n').split('\n').filter((text) => / rotated to /.test(text))) console.log(`[figures] notes-api rotate: ${line.trim()}`);
    console.log(
      `[figures] notes-api rotation under traffic: ${report.sent} requests (${Object.entries(report.byKind).map(([k, n]) => `${k} ${n}`).join(', ')}) over ${report.nodes.size} nodes, ${report.failed} failed; 3 rotations of every purpose within ${rotationMs} ms`,
    );
    expect(report.failures).toEqual([]);
    expect(report.nodes.size).toBe(3);
    // What was minted before is still good everywhere, and new logins use the new keys.
    for (const kind of KINDS) {
      await everywhere('/whoami', () => ({ headers: credentialHeaders(kind, before) }), (reply) => {
        expect(reply.status, `${kind} minted before the rotation, on ${reply.node}: ${JSON.stringify(reply.body)}`).toBe(200);
        expect(reply.body).toMatchObject({ via: kind, role: 'editor' });
      }, 3);
    }
    // New logins use the new keys, on whichever node (each learns of an activation through
    // pub/sub after the CLI has returned: a login in between still uses the old, valid key).
    const oldCookieKid = kidOf(before.authCookie.slice('auth='.length));
    let fresh = before;
    const stale: string[] = [];
    const checkedAt = Date.now();
    await waitUntil(async () => {
      fresh = await login(stack.url, ...ALICE);
      const old = [kidOf(fresh.token) === oldKid && 'sign', kidOf(fresh.authCookie.slice('auth='.length)) === oldCookieKid && 'encrypt'].filter(Boolean);
      if (old.length > 0) stale.push(`${fresh.node} (${old.join(', ')}) ${Date.now() - checkedAt} ms`);
      return old.length === 0;
    }, { timeoutMs: 10_000, what: 'a login with the new signing and encryption keys' });
    if (stale.length > 0) console.log(`[figures] notes-api rotation: ${Date.now() - rotatedAt} ms after rotate returned, ${stale.length} login(s) still minted with an old key: ${stale.join('; ')}`);
    await everywhere('/whoami', () => ({ headers: credentialHeaders('token', fresh) }), (reply) => expect(reply.status).toBe(200), 3);
  });

  it('refreshes a token at keyfleet\'s /token/refresh on another node, the role claim kept', async () => {
    const first = await call('/login', json('POST', { username: 'alice', password: 'alice-password' }, {}));
    expect(first.status).toBe(200);
    expect(first.body.refreshToken).toEqual(expect.any(String));
    const refreshed = await call('/token/refresh', json('POST', { refreshToken: first.body.refreshToken }, {}));
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
    await everywhere('/whoami', () => ({ headers: { authorization: `Bearer ${refreshed.body.token}` } }), (reply) => {
      expect(reply.status).toBe(200);
      expect(reply.body).toMatchObject({ user: 'alice', via: 'token', role: 'editor' });
    }, 3);
  });

  it('refuses on every node a token whose key `keyfleet revoke` revoked', async () => {
    const victim = await login(stack.url, ...ALICE);
    const kid = kidOf(victim.token);
    // Accepted (and cached) on every node first.
    await everywhere('/whoami', () => ({ headers: credentialHeaders('token', victim) }), (reply) => expect(reply.status).toBe(200));
    const started = Date.now();
    const revoked = await stack.cli(['revoke', kid]);
    const elapsed = Date.now() - started;
    expect(revoked.exitCode, revoked.stdout + revoked.stderr).toBe(0);
    await everywhere('/whoami', () => ({ headers: credentialHeaders('token', victim) }), (reply) => {
      expect(reply.status, `${reply.node}: ${JSON.stringify(reply.body)}`).toBe(401);
    });
    await everywhere('/notes', () => ({ headers: credentialHeaders('token', victim) }), (reply) => expect(reply.status).toBe(401), 3);
    // The active signing key was replaced at once: logins go on.
    const next = await login(stack.url, ...ALICE);
    expect(kidOf(next.token)).not.toBe(kid);
    await everywhere('/whoami', () => ({ headers: credentialHeaders('token', next) }), (reply) => expect(reply.status).toBe(200), 3);
    console.log(`[figures] notes-api revoke: ${revoked.stdout.trim().split('\n')[0]} (${elapsed} ms wall, CLI exec included); refused by 3/3 nodes`);
  });

  it('ends the token, the auth cookie and the session on every node at POST /logout', async () => {
    const who = await login(stack.url, ...ALICE);
    for (const kind of KINDS) {
      await everywhere('/whoami', () => ({ headers: credentialHeaders(kind, who) }), (reply) => expect(reply.status).toBe(200), 3);
    }
    const out = await call('/logout', { method: 'POST', headers: { authorization: `Bearer ${who.token}`, cookie: `${who.authCookie}; ${who.sidCookie}` } });
    expect(out.status, JSON.stringify(out.body)).toBeLessThan(300);
    for (const kind of KINDS) {
      await everywhere('/whoami', () => ({ headers: credentialHeaders(kind, who) }), (reply) => {
        expect(reply.status, `${kind} after logout on ${reply.node}: ${JSON.stringify(reply.body)}`).toBe(401);
      });
    }
    console.log(`[figures] notes-api logout on ${out.node}: token, auth cookie and sid refused by 3/3 nodes`);
  });

});

interface NotesTrafficReport {
  sent: number;
  failed: number;
  failures: string[];
  nodes: Set<string>;
  byKind: Record<string, number>;
}

/**
 * Users of the notes API: each worker logs in as alice now and then, and in turn asks
 * /whoami by token, lists its notes by `auth` cookie, writes a note by `sid` session and
 * lists by token. Any status other than the expected one is a failure.
 */
function startNotesTraffic(baseUrl: string, workers: number, maxMs = 90_000) {
  const report: NotesTrafficReport = { sent: 0, failed: 0, failures: [], nodes: new Set(), byKind: {} };
  let stopping = false;
  const deadline = Date.now() + maxMs;
  const note = (kind: string, ok: boolean, detail: string, node: string | null) => {
    report.sent++;
    report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
    if (node) report.nodes.add(node);
    if (!ok) {
      report.failed++;
      if (report.failures.length < 20) report.failures.push(`${kind}: ${detail}`);
    }
  };
  const get = (path: string, headers: Record<string, string>) => request(`${baseUrl}${path}`, { headers, signal: AbortSignal.timeout(requestTimeoutMs) });
  const worker = async (index: number) => {
    let who: LoginResult | undefined;
    for (let i = 0; !stopping && Date.now() < deadline; i++) {
      if (!who || i % 20 === 0) {
        try {
          who = await login(baseUrl, ...ALICE);
          note('login', true, '', who.node);
        } catch (error) {
          note('login', false, String(error), null);
          continue;
        }
      }
      const step = (i + index) % 4;
      try {
        if (step === 0) {
          const reply = await get('/whoami', credentialHeaders('token', who));
          note('whoami', reply.status === 200 && reply.body.role === 'editor' && reply.body.via === 'token', `${reply.status} ${JSON.stringify(reply.body)} from ${reply.node}`, reply.node);
        } else if (step === 1 || step === 3) {
          const kind = step === 1 ? 'cookie' : 'token';
          const reply = await get('/notes', credentialHeaders(kind, who));
          note(`list-${kind}`, reply.status === 200 && Array.isArray(reply.body.notes), `${reply.status} ${JSON.stringify(reply.body)} from ${reply.node}`, reply.node);
        } else {
          const reply = await request(`${baseUrl}/notes`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...credentialHeaders('session', who) },
            body: JSON.stringify({ text: `note ${index}.${i}` }),
            signal: AbortSignal.timeout(requestTimeoutMs),
          });
          note('write-session', reply.status === 201 || (reply.status === 409 && reply.body.code === 'ERR_TOO_MANY_NOTES'), `${reply.status} ${JSON.stringify(reply.body)} from ${reply.node}`, reply.node);
        }
      } catch (error) {
        note(`step-${step}`, false, String(error), null);
      }
    }
  };
  const running = Promise.all(Array.from({ length: workers }, (_, index) => worker(index)));
  return {
    report,
    async stop(): Promise<NotesTrafficReport> {
      stopping = true;
      await running;
      return report;
    },
  };
}
