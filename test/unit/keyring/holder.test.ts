import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RingHolder, resolveVerifier } from '../../../app/src/keyring/holder.js';
import { redisKeys } from '../../../app/src/lib/redisKeys.js';
import { capturedLog, settle } from '../support/writeSide.js';
import { activeKey } from '../../../app/src/keyring/lifecycle.js';
import { RingSnapshot } from '../../../app/src/keyring/snapshot.js';
import {
  buildRing,
  caught,
  FakeClock,
  FakeStore,
  loadedHolder,
  makeHolder,
  newMasterKey,
  revokeActive,
  rotateKey,
  snapshotAt,
  T0,
  silentLog,
} from '../support/ring.js';

describe('RingHolder.reload', () => {
  it('holds nothing until loaded, then the ring from the store, announcing the change', async () => {
    const masterKey = newMasterKey();
    const store = new FakeStore(await buildRing(masterKey));
    const holder = makeHolder(store, masterKey, new FakeClock());
    const changes: number[] = [];
    holder.on('change', (ring) => changes.push(ring.version));
    expect(holder.current).toBeUndefined();

    const ring = await holder.reload('test');
    expect(ring?.version).toBe(1);
    expect(holder.current).toBe(ring);
    expect(changes).toEqual([1]);
  });

  it('keeps the same snapshot, silently, when the version has not moved', async () => {
    const { holder, ring, store } = await loadedHolder();
    let changes = 0;
    holder.on('change', () => changes++);
    expect(await holder.reload('again')).toBe(ring);
    expect(store.reads).toBe(2);
    expect(changes).toBe(0);
  });

  it('adopts a newer version', async () => {
    const { holder, store, doc } = await loadedHolder();
    expect(holder.current?.active('sign')).toBeDefined();
    store.doc = revokeActive(doc, 'sign', T0);
    const next = await holder.reload('test');
    expect(next?.version).toBe(2);
    expect(holder.current).toBe(next);
    expect(holder.current?.active('sign')).toBeUndefined();
  });

  it('keeps serving the ring it holds when the ring is missing from Redis', async () => {
    const { holder, ring, store } = await loadedHolder();
    store.doc = null;
    expect(await holder.reload('test')).toBe(ring);
    expect(holder.current).toBe(ring);
  });

  it('keeps serving the ring it holds when Redis fails, unless asked to throw', async () => {
    const { holder, ring, store } = await loadedHolder();
    store.failWith = new Error('ECONNREFUSED');
    expect(await holder.reload('test')).toBe(ring);
    await expect(holder.reload('start', { throwOnError: true })).rejects.toThrow('ECONNREFUSED');
    expect(holder.current).toBe(ring);
  });

  it('refuses, at start, a ring wrapped under another master key', async () => {
    const store = new FakeStore(await buildRing(newMasterKey()));
    const holder = makeHolder(store, newMasterKey(), new FakeClock());
    const error = await caught(() => holder.reload('start', { throwOnError: true }));
    expect(error.code).toBe('ERR_MASTER_KEY_MISMATCH');
    expect(holder.current).toBeUndefined();
  });

  it('shares reads between concurrent callers: one, and one more for all who came while it ran', async () => {
    const masterKey = newMasterKey();
    const store = new FakeStore(await buildRing(masterKey));
    const holder = makeHolder(store, masterKey, new FakeClock());
    const [a, b, c, d] = await Promise.all([holder.reload('a'), holder.reload('b'), holder.reload('c'), holder.reload('d')]);
    expect(store.reads).toBe(2);
    expect(a).toBe(b);
    expect(b).toBe(c);
    expect(c).toBe(d);
  });
});

describe('RingHolder.reload after a read already in flight', () => {
  it('reads again for a caller that came after the read had started, and shares that read', async () => {
    const { holder, store, doc, masterKey } = await loadedHolder();
    // A read that reached Redis before the rotation, and answers only after it.
    let answer!: () => void;
    const stale = (await store.readRaw())!;
    store.reads = 1;
    const readRaw = store.readRaw.bind(store);
    store.readRaw = async () => {
      store.readRaw = readRaw;
      store.reads++;
      await new Promise<void>((resolve) => (answer = resolve));
      return stale;
    };
    const first = holder.reload('periodic');
    await new Promise((resolve) => setImmediate(resolve));
    // The rotation lands and its announcement arrives while that read is in flight.
    store.doc = await rotateKey(doc, 'sign', T0 + 1000, masterKey);
    const announced = holder.reload('announced');
    const another = holder.reload('unknown kid');
    answer();
    expect((await first)?.version).toBe(1);
    expect((await announced)?.version).toBe(2);
    expect(await another).toBe(await announced);
    expect(store.reads).toBe(3);
    expect(holder.current?.version).toBe(2);
    expect(await holder.settled(10)).toBe(true);
  });
});

describe('RingHolder.reloadIfChanged', () => {
  it('reads only the version while it has not moved, and the document once it has', async () => {
    const { holder, store, doc } = await loadedHolder();
    await holder.reloadIfChanged();
    expect(store.versionReads).toBe(1);
    expect(store.reads).toBe(1);

    store.doc = revokeActive(doc, 'cookie', T0);
    await holder.reloadIfChanged();
    expect(store.reads).toBe(2);
    expect(holder.current?.version).toBe(2);
  });
});

describe('RingHolder.reloadForUnknownKid', () => {
  it('reloads at most once per interval (1 s by default) on the injected clock', async () => {
    const { holder, store, clock } = await loadedHolder();
    expect(await holder.reloadForUnknownKid()).toBe(true);
    expect(store.reads).toBe(2);
    clock.advance(999);
    expect(await holder.reloadForUnknownKid()).toBe(false);
    expect(store.reads).toBe(2);
    clock.advance(1);
    expect(await holder.reloadForUnknownKid()).toBe(true);
    expect(store.reads).toBe(3);
  });

  it('honours a configured interval', async () => {
    const masterKey = newMasterKey();
    const store = new FakeStore(await buildRing(masterKey));
    const clock = new FakeClock();
    const holder = makeHolder(store, masterKey, clock, 10_000);
    expect(await holder.reloadForUnknownKid()).toBe(true);
    clock.advance(9_999);
    expect(await holder.reloadForUnknownKid()).toBe(false);
    clock.advance(1);
    expect(await holder.reloadForUnknownKid()).toBe(true);
  });

  it('does not throw when the reload fails, and says it could not read', async () => {
    const { holder, store, ring } = await loadedHolder();
    store.failWith = new Error('down');
    expect(await holder.reloadForUnknownKid()).toBe(false);
    expect(holder.current).toBe(ring);
  });
});

describe('RingHolder.adopt', () => {
  it('takes a snapshot this node committed, once', async () => {
    const { holder, doc, masterKey } = await loadedHolder();
    const next = await snapshotAt(await rotateKey(doc, 'sign', T0 + 1, masterKey), masterKey, holder.current);
    let changes = 0;
    holder.on('change', () => changes++);
    await holder.adopt(next);
    await holder.adopt(next);
    expect(holder.current).toBe(next);
    expect(changes).toBe(1);
  });
});

describe('resolveVerifier', () => {
  it('answers 503 ERR_NOT_READY (for another node to take) before the ring is loaded, and nothing without a kid', async () => {
    const masterKey = newMasterKey();
    const doc = await buildRing(masterKey);
    const store = new FakeStore(doc);
    const holder = makeHolder(store, masterKey, new FakeClock());
    expect(await caught(() => resolveVerifier(holder, 'sign', activeKey(doc, 'sign')!.kid))).toMatchObject({ code: 'ERR_NOT_READY', status: 503 });
    expect(store.reads).toBe(0);
    await holder.reload('test');
    expect(await resolveVerifier(holder, 'sign', undefined)).toBeUndefined();
    expect(await resolveVerifier(holder, 'sign', activeKey(doc, 'sign')!.kid)).toBeDefined();
  });

  it('a node not in sync finds a kid that only a newer ring has, by reloading', async () => {
    const { holder, store, doc, masterKey } = await loadedHolder(T0, { inSync: false });
    store.doc = await rotateKey(doc, 'sign', T0 + 1, masterKey);
    const newKid = activeKey(store.doc, 'sign')!.kid;
    expect(holder.current?.has(newKid)).toBe(false);
    expect((await resolveVerifier(holder, 'sign', newKid))?.meta.kid).toBe(newKid);
    expect(holder.current?.version).toBe(2);
  });

  it('a node in sync refuses a kid it does not know without reading Redis', async () => {
    const { holder, store, doc, masterKey } = await loadedHolder();
    store.doc = await rotateKey(doc, 'sign', T0 + 1, masterKey);
    expect(await resolveVerifier(holder, 'sign', activeKey(store.doc, 'sign')!.kid)).toBeUndefined();
    expect(store.reads).toBe(1);
  });

  it('a node stops counting itself in sync when its heartbeats stop being acknowledged', async () => {
    const masterKey = newMasterKey();
    const store = new FakeStore(await buildRing(masterKey));
    const clock = new FakeClock();
    const holder = makeHolder(store, masterKey, clock, undefined, undefined, 2_500);
    await holder.reload('start', { throwOnError: true });
    expect(holder.inSync).toBe(false); // no heartbeat acknowledged yet
    holder.markCurrent(clock.now());
    expect(holder.inSync).toBe(true);
    clock.advance(2_499);
    expect(holder.inSync).toBe(true);
    clock.advance(1);
    expect(holder.inSync).toBe(false);
  });

  it('does not reload for a kid the ring already knows, even a revoked one', async () => {
    const { holder, store, doc } = await loadedHolder();
    const kid = activeKey(doc, 'sign')!.kid;
    store.doc = revokeActive(doc, 'sign', T0);
    expect(await resolveVerifier(holder, 'sign', kid)).toBeDefined(); // still version 1 here
    expect(store.reads).toBe(1);
  });
});

describe('RingHolder never goes back to an older ring', () => {
  it('keeps the newer ring when Redis answers with an older version (a failover that lost writes)', async () => {
    const { holder, store, doc, masterKey } = await loadedHolder();
    const newer = { ...(await rotateKey(doc, 'sign', T0 + 1_000, masterKey)), version: doc.version + 1 };
    store.doc = newer;
    await holder.reload('newer');
    expect(holder.current!.version).toBe(newer.version);
    const kid = activeKey(newer, 'sign')!.kid;

    store.doc = doc; // Redis now holds the older version, without the new key
    let changes = 0;
    holder.on('change', () => changes++);
    await holder.reload('older');
    expect(holder.current!.version).toBe(newer.version);
    expect(holder.current!.verifier('sign', kid)).toBeDefined();
    expect(changes).toBe(0);
  });
});

describe('RingHolder: announcements', () => {
  it('reloads on an announced version, and skips (and reports) a message that is not one', async () => {
    const masterKey = newMasterKey();
    const store = new FakeStore(await buildRing(masterKey));
    store.masterKey = masterKey;
    const subscriber = Object.assign(new EventEmitter(), { status: 'ready', subscribe: async () => 1, ping: async () => 'PONG' });
    const { log, lines } = capturedLog();
    const holder = new RingHolder({ store: store as never, subscriber: subscriber as never, masterKey, clock: new FakeClock(), log, reloadIntervalMs: 60_000 });
    await holder.start();
    const reads = store.reads;
    subscriber.emit('message', redisKeys.ringChannel, '{"version": "evil"}');
    await settle();
    expect(store.reads).toBe(reads);
    expect(lines.filter((line) => line.code === 'ERR_BAD_SHAPE').map((line) => line.source)).toEqual([redisKeys.ringChannel]);
    subscriber.emit('message', redisKeys.ringChannel, '2');
    await settle();
    expect(store.reads).toBe(reads + 1);
    holder.stop();
  });
});

describe('RingHolder: in sync needs a subscription that answers', () => {
  it('stops counting itself in sync when its subscriber falls silent, though heartbeats go through', async () => {
    const masterKey = newMasterKey();
    const store = new FakeStore(await buildRing(masterKey));
    store.masterKey = masterKey;
    // A subscriber whose route died without a reset: "ready", its PINGs never answered.
    let answer = true;
    const unanswered: ((pong: string) => void)[] = [];
    const pong = () => (answer ? Promise.resolve('PONG') : new Promise<string>((resolve) => unanswered.push(resolve)));
    const subscriber = Object.assign(new EventEmitter(), { status: 'ready', subscribe: async () => 1, ping: () => pong() });
    const clock = new FakeClock();
    const currentForMs = 1_000;
    const holder = new RingHolder({ store: store as never, subscriber: subscriber as never, masterKey, clock, log: silentLog, reloadIntervalMs: 60_000, currentForMs });
    await holder.start();
    try {
      holder.markCurrent(clock.now());
      expect(holder.inSync).toBe(true);
      // Heartbeats keep going through (the main connection), the subscriber says nothing.
      answer = false;
      clock.advance(currentForMs);
      holder.markCurrent(clock.now());
      expect(holder.inSync).toBe(false);
      // Any word from Redis on that connection (a message, or a pong) brings it back.
      subscriber.emit('message', redisKeys.ringChannel, String(holder.current!.version));
      expect(holder.inSync).toBe(true);
      // A connection known to be down is not waited for.
      subscriber.emit('close');
      expect(holder.inSync).toBe(false);
      // Back: ioredis sends the unanswered PING again on the new connection, and it is answered.
      answer = true;
      for (const resolve of unanswered.splice(0)) resolve('PONG');
      await expect.poll(() => holder.inSync, { timeout: 2_000 }).toBe(true);
    } finally {
      holder.stop();
    }
  });
});
