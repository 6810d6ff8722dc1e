import { createHmac } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { IncomingMessage, ServerResponse, type Server } from 'node:http';
import { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fc from 'fast-check';
import session, { type SessionData } from 'express-session';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { sessionMiddleware, sessionSerializer } from '../../../app/src/auth/session.js';
import { CachedSessionStore, SESSION_CHANNEL } from '../../../app/src/auth/sessionCache.js';
import { errorHandler } from '../../../app/src/http/errors.js';
import { buildRing, FakeClock, FakeStore, makeHolder, newMasterKey, rotateKey, silentLog } from '../support/ring.js';
import { capturedLog } from '../support/writeSide.js';

/** The pub/sub connection, as far as the cache uses it. */
class FakeSubscriber extends EventEmitter {
  status = 'ready';
  subscribed: string[] = [];
  async subscribe(channel: string) {
    this.subscribed.push(channel);
    return 1;
  }
  pings = 0;
  answering = true;
  ping() {
    this.pings++;
    return this.answering ? Promise.resolve('PONG') : new Promise<string>(() => undefined);
  }
  disconnect() {
    this.status = 'end';
    this.emit('close');
    this.emit('end');
  }
  drop() {
    this.status = 'reconnecting';
    this.emit('close');
    this.emit('reconnecting');
  }
  async reconnect() {
    this.status = 'ready';
    this.emit('ready');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Just enough of ioredis for connect-redis and the cache: strings in a Map, a publish log. */
class FakeRedis extends EventEmitter {
  status = 'ready';
  data = new Map<string, string>();
  gets = 0;
  published: [string, string][] = [];
  subscriber = new FakeSubscriber();
  async get(key: string) {
    this.gets++;
    return this.data.get(key) ?? null;
  }
  async set(key: string, value: string) {
    this.data.set(key, value);
    return 'OK';
  }
  async del(key: string) {
    return this.data.delete(key) ? 1 : 0;
  }
  async expire() {
    return 1;
  }
  async publish(channel: string, message: string) {
    this.published.push([channel, message]);
    return 1;
  }
  duplicate() {
    return this.subscriber;
  }
}

/** express-session's cookie signature (cookie-signature: HMAC-SHA256, base64 without padding). */
const signed = (sid: string, secret: string) => `s:${sid}.${createHmac('sha256', secret).update(sid).digest('base64').replace(/=+$/, '')}`;

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function serve(middleware: express.RequestHandler) {
  const app = express();
  app.get('/whoami', middleware, (req, res) => res.json({ user: req.session.user ?? null }));
  app.post('/login', middleware, (req, res) => {
    req.session.user = 'mallory';
    res.json({ ok: true });
  });
  app.use(errorHandler(silentLog));
  const server = app.listen(0);
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('sessionMiddleware before the ring is loaded', () => {
  it('answers 503 ERR_NOT_READY and never signs or accepts a cookie with a stand-in secret', async () => {
    const masterKey = newMasterKey();
    const holder = makeHolder(new FakeStore(await buildRing(masterKey)), masterKey, new FakeClock());
    const redis = new FakeRedis();
    // A session that exists in Redis, and its id signed with the stand-in secret of old.
    redis.data.set('keyfleet:sess:victim', JSON.stringify({ cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000).toISOString(), path: '/' }, user: 'admin' }));
    const base = await serve(sessionMiddleware(redis as unknown as Redis, holder, 60_000));

    const login = await fetch(`${base}/login`, { method: 'POST', signal: AbortSignal.timeout(5_000) });
    expect(login.status).toBe(503);
    expect(await login.json()).toEqual({ error: 'key ring not loaded yet', code: 'ERR_NOT_READY' });
    expect(login.headers.getSetCookie()).toEqual([]);
    const forged = await fetch(`${base}/whoami`, { headers: { cookie: `sid=${encodeURIComponent(signed('victim', 'not-ready'))}` }, signal: AbortSignal.timeout(5_000) });
    expect(forged.status).toBe(503);
    expect((await forged.json()).code).toBe('ERR_NOT_READY');

    // Once the ring is there, sessions work and are signed with its active cookie key.
    await holder.reload('test', { throwOnError: true });
    const later = await fetch(`${base}/login`, { method: 'POST', signal: AbortSignal.timeout(5_000) });
    expect(later.status).toBe(200);
    const cookie = decodeURIComponent(later.headers.getSetCookie()[0]!.split(';')[0]!.slice('sid='.length));
    const sid = cookie.slice(2, cookie.lastIndexOf('.'));
    expect(cookie).toBe(signed(sid, holder.current!.cookieSecrets[0]!));
    // ...and the stand-in secret signs nothing that is accepted.
    const stale = await fetch(`${base}/whoami`, { headers: { cookie: `sid=${encodeURIComponent(signed('victim', 'not-ready'))}` }, signal: AbortSignal.timeout(5_000) });
    expect(await stale.json()).toEqual({ user: null });
  });
});

// --- the cache itself, with a fake inner store --------------------------------------------
const day = () => ({ cookie: { originalMaxAge: 86_400_000, expires: new Date(Date.now() + 86_400_000), path: '/' } }) as unknown as SessionData;

class CountingStore extends session.MemoryStore {
  reads = 0;
  pending: (() => void)[] = [];
  hold = false;
  override get(sid: string, callback: (error: unknown, data?: SessionData | null) => void): void {
    this.reads++;
    const run = () => super.get(sid, callback);
    if (this.hold) this.pending.push(run);
    else run();
  }
}

function cachedStore(options: Partial<{ maxEntries: number; maxAgeMs: number; livenessMs: number; pingIntervalMs: number }> = {}) {
  const inner = new CountingStore();
  const redis = new FakeRedis();
  const clock = new FakeClock(Date.now());
  const store = new CachedSessionStore(inner, redis as unknown as Redis, redis.subscriber as unknown as Redis, { livenessMs: Infinity, ...options, now: () => clock.now() });
  const get = (sid: string) => new Promise<SessionData | null | undefined>((resolve, reject) => store.get(sid, (error, data) => (error ? reject(error) : resolve(data))));
  const set = (sid: string, data: SessionData) => new Promise<void>((resolve, reject) => store.set(sid, data, (error) => (error ? reject(error) : resolve())));
  const destroy = (sid: string) => new Promise<void>((resolve, reject) => store.destroy(sid, (error) => (error ? reject(error) : resolve())));
  const put = (sid: string, data: SessionData) => new Promise<void>((resolve) => inner.set(sid, data, () => resolve()));
  return { store, inner, redis, clock, get, set, destroy, put };
}

const announce = (redis: FakeRedis, message: string) => redis.subscriber.emit('message', SESSION_CHANNEL, message);
const lastMessage = (redis: FakeRedis) => redis.published.at(-1)![1];

describe('CachedSessionStore', () => {
  it('subscribes, then answers an unchanged session from memory, a fresh copy each time', async () => {
    const { store, inner, redis, get, put } = cachedStore();
    await new Promise((resolve) => setImmediate(resolve));
    expect(redis.subscriber.subscribed).toEqual([SESSION_CHANNEL]);
    await put('s1', { ...day(), user: 'alice' });
    const first = await get('s1');
    const second = await get('s1');
    expect(second).toEqual(first);
    expect(second).not.toBe(first);
    expect(inner.reads).toBe(1);
    // Read-only callers share one deep-frozen copy.
    const frozen = () => new Promise<unknown>((resolve) => store.getFrozen('s1', (_error, data) => resolve(data)));
    const [a, b] = [await frozen(), await frozen()];
    expect(a).toBe(b);
    expect(a).toEqual(first);
    expect(Object.isFrozen(a) && Object.isFrozen((a as { cookie: object }).cookie)).toBe(true);
    expect(inner.reads).toBe(1);
  });

  it('writes go to the store first, then a message with a digest (not the id); the copy is dropped', async () => {
    const { inner, redis, get, set } = cachedStore();
    await new Promise((resolve) => setImmediate(resolve));
    await set('s1', { ...day(), user: 'alice' });
    expect(await get('s1')).toMatchObject({ user: 'alice' });
    await set('s1', { ...day(), user: 'alice', visits: 2 });
    expect(redis.published).toHaveLength(2);
    expect(redis.published[0]![0]).toBe(SESSION_CHANNEL);
    expect(lastMessage(redis)).not.toContain('s1');
    expect(await get('s1')).toMatchObject({ visits: 2 });
    expect(inner.reads).toBe(2);
  });

  it('a message from another node drops the copy: the next read goes to the store', async () => {
    const { inner, redis, get, put, destroy } = cachedStore();
    await new Promise((resolve) => setImmediate(resolve));
    await put('s1', { ...day(), user: 'alice' });
    await get('s1');
    await destroy('s1');
    const digest = lastMessage(redis);
    await put('s1', { ...day(), user: 'alice', visits: 9 }); // "another node" wrote it back
    await get('s1');
    expect(inner.reads).toBe(2);
    await get('s1');
    expect(inner.reads).toBe(2);
    announce(redis, digest);
    expect(await get('s1')).toMatchObject({ visits: 9 });
    expect(inner.reads).toBe(3);
  });

  it('a read overtaken by an invalidation is not kept', async () => {
    const { inner, redis, get, put, destroy } = cachedStore();
    await new Promise((resolve) => setImmediate(resolve));
    await destroy('s1');
    const digest = lastMessage(redis);
    await put('s1', { ...day(), user: 'alice' });
    inner.hold = true;
    const reading = get('s1'); // the GET left before the write elsewhere...
    announce(redis, digest); // ...whose message arrived before its answer
    inner.hold = false;
    inner.pending.shift()!();
    expect(await reading).toMatchObject({ user: 'alice' });
    await get('s1');
    expect(inner.reads).toBe(2);
  });

  it('serves nothing from memory while its subscription is down, and forgets everything', async () => {
    const { inner, redis, get, put } = cachedStore();
    await new Promise((resolve) => setImmediate(resolve));
    await put('s1', { ...day(), user: 'alice' });
    await get('s1');
    redis.subscriber.drop();
    await get('s1');
    await get('s1');
    expect(inner.reads).toBe(3);
    await redis.subscriber.reconnect();
    expect(redis.subscriber.subscribed).toHaveLength(2);
    await get('s1');
    await get('s1');
    expect(inner.reads).toBe(4);
    expect(inner.reads).toBe(4);
  });

  it('keeps a copy at most maxAgeMs, never past the session cookie, and at most maxEntries', async () => {
    const { inner, clock, get, put } = cachedStore({ maxAgeMs: 1_000, maxEntries: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    await put('a', { ...day(), user: 'a' });
    await get('a');
    clock.advance(999);
    await get('a');
    expect(inner.reads).toBe(1);
    clock.advance(1);
    await get('a');
    expect(inner.reads).toBe(2);
    const short = { cookie: { originalMaxAge: 500, expires: new Date(clock.now() + 500), path: '/' }, user: 'b' } as unknown as SessionData;
    await put('b', short);
    await get('b');
    clock.advance(499);
    await get('b');
    expect(inner.reads).toBe(3);
    // MemoryStore itself drops it at its expiry; what matters is that the copy is not served.
    await put('b', { ...day(), user: 'b' });
    clock.advance(1);
    await get('b');
    expect(inner.reads).toBe(4);
    await put('c', { ...day(), user: 'c' });
    await get('c'); // a, b, c: a (least recently used) goes
    await get('b');
    await get('a');
    expect(inner.reads).toBe(6);
  });

  it('serves nothing from memory once Redis has been silent on the pub/sub connection for livenessMs', async () => {
    const { store, inner, redis, clock, get, put } = cachedStore({ livenessMs: 1_000, pingIntervalMs: 10 });
    await new Promise((resolve) => setImmediate(resolve));
    await put('s1', { ...day(), user: 'alice' });
    await get('s1');
    clock.advance(1_000);
    await get('s1');
    expect(inner.reads).toBe(1);
    // A partition: the connection stays "ready", but nothing comes back any more.
    redis.subscriber.answering = false;
    clock.advance(1);
    await get('s1');
    await get('s1');
    expect(inner.reads).toBe(3);
    // Pongs again: trusted again (after the pending ping is abandoned on reconnection).
    redis.subscriber.answering = true;
    redis.subscriber.drop();
    await redis.subscriber.reconnect();
    const pinged = redis.subscriber.pings;
    for (let i = 0; i < 200 && redis.subscriber.pings === pinged; i++) await new Promise((resolve) => setTimeout(resolve, 5)); // the interval's next ping
    expect(redis.subscriber.pings).toBeGreaterThan(pinged);
    await get('s1');
    await get('s1');
    expect(inner.reads).toBe(4);
    store.close();
  });

  it('a failed announcement fails the write', async () => {
    const { redis, set } = cachedStore();
    redis.publish = async () => {
      throw new Error('connection lost');
    };
    await expect(set('s1', { ...day(), user: 'alice' })).rejects.toThrow('connection lost');
  });
});

// --- the read-only path against express-session (the oracle) ------------------------------
describe('SessionMiddleware.read agrees with express-session', () => {
  it('on 3,000 generated, forged and mutated sid cookies: the same session or none', async () => {
    const masterKey = newMasterKey();
    let doc = await buildRing(masterKey);
    doc = await rotateKey(doc, 'cookie', Date.now(), masterKey); // an active and a retired secret
    const holder = makeHolder(new FakeStore(doc), masterKey, new FakeClock());
    await holder.reload('test', { throwOnError: true });
    const [active, retired] = holder.current!.cookieSecrets as [string, string];
    const redis = new FakeRedis();
    const expires = new Date(Date.now() + 3_600_000).toISOString();
    for (const [sid, user] of [['alice-sid', 'alice'], ['bob-sid', 'bob'], ['we.ird sid', 'weird']]) {
      redis.data.set(`keyfleet:sess:${sid}`, JSON.stringify({ cookie: { originalMaxAge: 3_600_000, expires, path: '/' }, user, visits: 3 }));
    }
    const middleware = sessionMiddleware(redis as unknown as Redis, holder, 3_600_000);
    await new Promise((resolve) => setImmediate(resolve));

    const oracle = (cookie: string) =>
      new Promise<unknown>((resolve, reject) => {
        const req = new IncomingMessage(new Socket());
        req.url = '/me';
        req.method = 'GET';
        req.headers = { cookie };
        const res = new ServerResponse(req);
        middleware(req as never, res as never, (error?: unknown) => (error ? reject(error) : resolve((req as { session?: SessionData }).session?.user)));
      });
    const readOnly = async (cookie: string) => {
      const req = new IncomingMessage(new Socket());
      req.headers = { cookie };
      await middleware.read(req as never);
      return (req as { session?: SessionData }).session?.user;
    };

    const sid = fc.constantFrom('alice-sid', 'bob-sid', 'we.ird sid', 'nobody-sid', '', 'alice-sid.x');
    const secret = fc.constantFrom(active, active, retired, 'not-ready', 'someone-else');
    const value = fc.oneof(
      { weight: 6, arbitrary: fc.tuple(sid, secret).map(([id, key]) => signed(id, key)) },
      { weight: 1, arbitrary: sid },
      { weight: 1, arbitrary: fc.tuple(sid, secret).map(([id, key]) => signed(id, key).slice(2)) },
      { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
    );
    const encoded = fc.tuple(value, fc.constantFrom('plain', 'uri', 'quoted', 'half')).map(([text, how]) =>
      how === 'uri' ? encodeURIComponent(text) : how === 'quoted' ? `"${encodeURIComponent(text)}"` : how === 'half' ? text.replace(':', '%3A') : text,
    );
    const mutatedText = fc.tuple(encoded, fc.nat(), fc.constantFrom('', 'x', '%', ';', '=', ' ')).map(([text, at, char]) =>
      char === '' ? text : text.slice(0, at % (text.length + 1)) + char + text.slice((at % (text.length + 1)) + 1),
    );
    const header = fc
      .tuple(fc.oneof({ weight: 3, arbitrary: encoded }, { weight: 1, arbitrary: mutatedText }), fc.constantFrom('only', 'after', 'twice', 'spaced', 'other-case'), encoded)
      .map(([v, shape, second]) =>
        shape === 'only' ? `sid=${v}` : shape === 'after' ? `auth=x; sid=${v}` : shape === 'twice' ? `sid=${v}; sid=${second}` : shape === 'spaced' ? ` sid = ${v} ` : `SID=${v}; sid=${second}`,
      );
    let found = 0;
    await fc.assert(
      fc.asyncProperty(header, async (cookie) => {
        const expected = await oracle(cookie);
        expect(await readOnly(cookie), cookie).toBe(expected);
        if (expected !== undefined) found++;
      }),
      { numRuns: 3_000 },
    );
    expect(found).toBeGreaterThan(300);
  });
});

describe('sessionSerializer', () => {
  it('reads back a session, and treats anything else in Redis as no session (logged by code)', () => {
    const { log, lines } = capturedLog();
    const serializer = sessionSerializer(log);
    const data = { cookie: { originalMaxAge: 1000, httpOnly: true, path: '/' }, user: 'alice' } as unknown as SessionData;
    expect(serializer.parse(serializer.stringify(data))).toEqual(data);
    expect(serializer.parse('{"user":"mallory"}')).toBeNull();
    expect(serializer.parse('not json')).toBeNull();
    expect(lines.map((line) => line.code)).toEqual(['ERR_BAD_SHAPE', 'ERR_NOT_JSON']);
    expect(JSON.stringify(lines)).not.toContain('mallory');
  });
});

describe('CachedSessionStore: messages', () => {
  it('ignores a message on its channel that is not a digest', async () => {
    const { store, redis } = cachedStore();
    announce(redis, 'not a digest');
    announce(redis, 'x'.repeat(33));
    expect(store.info.invalidations).toBe(0);
    announce(redis, 'A'.repeat(32));
    expect(store.info.invalidations).toBe(1);
    store.close();
  });
});
