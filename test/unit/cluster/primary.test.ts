import { afterEach, describe, expect, it } from 'vitest';
import type { RotationOutcome, RotationProgress } from '../../../app/src/keyring/rotation.js';
import { activeKey, findKey, stagedKey } from '../../../app/src/keyring/lifecycle.js';
import { PURPOSES, type RingDocument } from '../../../app/src/keyring/types.js';
import { caught, LIFETIMES, T0 } from '../support/ring.js';
import { CONFIRM_TIMEOUT_MS, primaryWorld, ROTATION_INTERVAL_MS, settle, until } from '../support/writeSide.js';

// The lease holder's duties (cluster/primary.ts) on in-memory fakes of what it needs: the ring
// store, the lease, the live nodes, the operators' command channel, and a clock that moves
// only when the test moves it or the primary sleeps on it (so a 30 s confirmation timeout
// takes milliseconds). What Redis and real nodes add is proven in test/integration.

type World = ReturnType<typeof primaryWorld>;
const worlds: World[] = [];

/** A primary that has taken the lease and created the ring, with live nodes node-1..3 following it. */
async function started(overrides: Parameters<typeof primaryWorld>[0] = {}) {
  const world = primaryWorld(overrides);
  worlds.push(world);
  world.nodes.following('node-1').following('node-2').following('node-3');
  await world.duty.tick();
  return world;
}

afterEach(async () => {
  for (const { duty, commands } of worlds.splice(0)) {
    await duty.stop();
    commands.wake(); // the command loop, blocked in pop, sees the lease gone and ends
  }
  await settle();
});

const ringOf = (world: World): RingDocument => world.ring.doc!;
const command = (fields: Record<string, unknown>) => JSON.stringify({ actor: 'operator@host', ...fields });

describe('PrimaryDuty: the ring', () => {
  it('takes the lease and creates the ring: an active key per purpose and a published next signing key', async () => {
    const { ring, lease, observer, holder } = await started();
    expect(lease.held).toBe(true);
    expect(observer.leases).toEqual([true]);
    const doc = ringOf({ ring } as World);
    for (const purpose of PURPOSES) expect(activeKey(doc, purpose), purpose).toBeDefined();
    expect(stagedKey(doc, 'sign')).toBeDefined();
    expect(ring.actions()).toEqual(['create']);
    expect(holder.current?.version).toBe(ring.version);
  });

  it('a secondary never takes the lease and never writes', async () => {
    const world = primaryWorld({ role: 'secondary' });
    worlds.push(world);
    await world.duty.tick();
    expect(world.lease.held).toBe(false);
    expect(world.ring.raw).toBeNull();
  });

  it('another node holding the lease: no writes, and none after it is freed until this node takes it', async () => {
    const world = primaryWorld();
    worlds.push(world);
    world.ring.leaseToken = 'node-2/theirs';
    await world.duty.tick();
    expect(world.duty.isPrimary).toBe(false);
    expect(world.ring.raw).toBeNull();
    world.ring.leaseToken = undefined;
    await world.duty.tick();
    expect(world.duty.isPrimary).toBe(true);
    expect(world.ring.actions()).toEqual(['create']);
  });

  it('writes back the ring it holds when Redis lost it', async () => {
    const world = await started();
    const held = world.ring.version;
    world.ring.raw = null;
    world.ring.version = 0;
    await world.duty.tick();
    expect(world.ring.actions().at(-1)).toBe('restore-from-memory');
    expect(world.ring.version).toBeGreaterThan(held);
    expect(ringOf(world).keys.map((key) => key.kid)).toEqual(world.holder.current!.document.keys.map((key) => key.kid));
  });
});

describe('PrimaryDuty: scheduled rotation', () => {
  it('rotates every purpose once its active key is an interval old, not before', async () => {
    const world = await started();
    const before = ringOf(world);
    world.clock.advance(ROTATION_INTERVAL_MS - 1);
    await world.duty.tick();
    await settle();
    expect(world.ring.actions()).toEqual(['create']);

    world.clock.advance(1);
    await world.duty.tick();
    await until(() => world.observer.rotations.length === PURPOSES.length, 'three scheduled rotations');
    expect(world.observer.rotations.every((run) => run.ok)).toBe(true);
    const after = ringOf(world);
    for (const purpose of PURPOSES) {
      expect(activeKey(after, purpose)!.kid, purpose).not.toBe(activeKey(before, purpose)!.kid);
      expect(findKey(after, activeKey(before, purpose)!.kid)?.state, purpose).toBe('retired');
    }
    // The promoted next signing key is replaced by a new one, published ahead of its use.
    expect(activeKey(after, 'sign')!.kid).toBe(stagedKey(before, 'sign')!.kid);
    expect(stagedKey(after, 'sign')).toBeDefined();
  });

  it('deletes a retired key once nothing it minted can be valid (deleteAfter), not a tick earlier', async () => {
    const world = await started();
    const old = activeKey(ringOf(world), 'encrypt')!.kid;
    const outcome = await world.duty.rotate('encrypt', 'test');
    expect(outcome.ok).toBe(true);
    const retired = findKey(ringOf(world), old)!;
    expect(retired.deleteAfter).toBe(world.clock.now() + LIFETIMES.encrypt + LIFETIMES.clockSkewMs);

    world.clock.t = retired.deleteAfter! - 1;
    await world.duty.tick();
    expect(findKey(ringOf(world), old)?.state).toBe('retired');

    world.clock.t = retired.deleteAfter!;
    await world.duty.tick();
    expect(findKey(ringOf(world), old)).toBeUndefined();
    const deletion = world.ring.audits.at(-1)!;
    expect(deletion).toMatchObject({ action: 'delete', detail: old, actor: 'node-1' });
  });

  it('a blocked scheduled rotation leaves its key staged, unforced, until an operator rotates again (runbook: KeyfleetRotationStuck)', async () => {
    const world = await started();
    world.nodes.stuck('node-9', 1);
    world.clock.advance(ROTATION_INTERVAL_MS);
    await world.duty.tick();
    await until(() => world.observer.rotations.length === PURPOSES.length, 'three scheduled runs');
    // node-9 holds v1, which already held the next signing key: only sign could be promoted.
    expect(Object.fromEntries(world.observer.rotations.map((run) => [run.purpose, run.ok]))).toEqual({ sign: true, encrypt: false, cookie: false });
    const staged = stagedKey(ringOf(world), 'encrypt')!.kid;

    world.nodes.remove('node-9'); // its heartbeat expired
    world.clock.advance(ROTATION_INTERVAL_MS);
    await world.duty.tick();
    await settle(50);
    expect(stagedKey(ringOf(world), 'encrypt')?.kid).toBe(staged);
    world.commands.push(command({ action: 'rotate', id: 'again', purposes: ['encrypt'] }));
    await until(() => world.commands.last('again')?.type === 'result', 'the operator rotation');
    expect(activeKey(ringOf(world), 'encrypt')?.kid).toBe(staged);
  });
});

describe('PrimaryDuty: propagate-then-activate', () => {
  it('activates only once every live node reports the version that holds the staged key', async () => {
    const world = await started();
    world.nodes.following('node-4', 6); // loads new versions six polls late
    const progress: RotationProgress[] = [];
    const outcome = await world.duty.rotate('encrypt', 'test', (step) => progress.push(step));

    expect(outcome).toMatchObject({ ok: true, pending: [], nodes: 4 });
    const staged = progress.find((step) => step.phase === 'staged')!;
    const confirming = progress.filter((step) => step.phase === 'confirming');
    expect(confirming[0]).toMatchObject({ confirmed: ['node-1', 'node-2', 'node-3'], pending: ['node-4'] });
    expect(confirming.at(-1)).toMatchObject({ confirmed: ['node-1', 'node-2', 'node-3', 'node-4'], pending: [] });
    expect(progress.at(-1)).toMatchObject({ phase: 'active', kid: staged.kid });
    // The activation is the commit right after the staging: nothing else moved the key.
    expect(world.ring.actions().slice(-2)).toEqual(['stage', 'activate']);
  });

  it('blocks activation when a live node never confirms: the key stays staged, the node is named, the run is audited', async () => {
    const world = await started();
    world.nodes.stuck('node-9', 1);
    const staged0 = world.clock.now();
    const outcome = await world.duty.rotate('encrypt', 'test');

    expect(outcome).toMatchObject({ ok: false, pending: ['node-9'], nodes: 4 });
    expect(world.clock.now() - staged0).toBeGreaterThanOrEqual(CONFIRM_TIMEOUT_MS);
    expect(stagedKey(ringOf(world), 'encrypt')?.kid).toBe(outcome.kid);
    expect(world.ring.audits.at(-1)).toMatchObject({ action: 'rotation-blocked', kid: outcome.kid, detail: 'unconfirmed: node-9' });
    expect(world.observer.rotations).toEqual([{ purpose: 'encrypt', ok: false }]);
    expect(world.lines.some((line) => line.level === 50 && String(line.msg).includes('node-9 never confirmed'))).toBe(true);
  });

  it('stops waiting for a node whose heartbeat expired (it left the live nodes)', async () => {
    const world = await started();
    world.nodes.stuck('node-9', 1);
    world.nodes.onPoll = (poll) => poll === 20 && world.nodes.remove('node-9');
    const outcome = await world.duty.rotate('encrypt', 'test');
    expect(outcome).toMatchObject({ ok: true, pending: [], nodes: 3 });
  });

  it('a second rotation of the same purpose while one runs is refused', async () => {
    const world = await started();
    world.nodes.following('node-4', 10);
    const first = world.duty.rotate('encrypt', 'test');
    expect((await caught(() => world.duty.rotate('encrypt', 'test'))).code).toBe('ERR_ROTATION_RUNNING');
    expect((await first).ok).toBe(true);
  });

  it('waits for Redis replicas too when asked, and names them when they do not acknowledge', async () => {
    const world = await started({ minReplicas: 1 });
    world.ring.replicas = 0;
    const blocked = await world.duty.rotate('encrypt', 'test');
    expect(blocked).toMatchObject({ ok: false, pending: ['redis replicas (0/1 acknowledged)'] });
    world.ring.replicas = 1;
    const done = await world.duty.rotate('encrypt', 'test');
    expect(done).toMatchObject({ ok: true, kid: blocked.kid }); // the key staged before is the one activated
  });
});

describe('PrimaryDuty: the lease lost mid-rotation', () => {
  it('refuses the fenced activation: the key stays staged and the node stops acting as primary', async () => {
    const world = await started();
    world.nodes.following('node-4', 5);
    world.nodes.onPoll = (poll) => poll === 2 && world.lease.steal('node-2');
    const error = await caught(() => world.duty.rotate('encrypt', 'test'));

    expect(error.code).toBe('ERR_NOT_PRIMARY');
    expect(world.ring.actions().at(-1)).toBe('stage');
    expect(stagedKey(ringOf(world), 'encrypt')).toBeDefined();
    expect(world.lease.dropped).toBe(1);
    expect(world.duty.isPrimary).toBe(false);
    // And it does not take the lease back while the other node holds it.
    await world.duty.tick();
    expect(world.duty.isPrimary).toBe(false);
    expect(world.observer.leases).toEqual([true, false]);
  });
});

describe('PrimaryDuty: revoke', () => {
  it('revokes a key and replaces an active key of its purpose in the same change', async () => {
    const world = await started();
    const active = activeKey(ringOf(world), 'encrypt')!.kid;
    const { snapshot, outcome } = await world.duty.revoke(active, 'operator');
    const doc = ringOf(world);
    expect(snapshot.version).toBe(doc.version);
    expect(findKey(doc, active)?.state).toBe('revoked');
    expect(activeKey(doc, 'encrypt')?.kid).not.toBe(active);
    expect(outcome.emergency).toBe(false);
    expect(world.ring.audits.at(-1)).toMatchObject({ action: 'revoke', kid: active, actor: 'operator' });
  });

  it('revoking the active signing key activates a fresh key, revokes the next one and publishes another', async () => {
    const world = await started();
    const before = ringOf(world);
    const active = activeKey(before, 'sign')!.kid;
    const next = stagedKey(before, 'sign')!.kid;
    const { outcome } = await world.duty.revoke(active, 'operator');
    const doc = ringOf(world);
    expect(outcome).toMatchObject({ emergency: true, revokedNext: next });
    expect(activeKey(doc, 'sign')?.kid).toBe(outcome.replacedBy);
    expect(stagedKey(doc, 'sign')?.kid).toBe(outcome.next);
    expect([findKey(doc, active)?.state, findKey(doc, next)?.state]).toEqual(['revoked', 'revoked']);
  });

  it('a revoke command is answered once every live node has the change, naming those that never load it', async () => {
    const world = await started();
    const kid = activeKey(ringOf(world), 'cookie')!.kid;
    world.nodes.stuck('node-9', 1);
    world.commands.push(command({ action: 'revoke', id: 'r1', kid }));
    await until(() => world.commands.last('r1') !== undefined, 'an answer to r1', 20_000);
    expect(world.commands.last('r1')).toMatchObject({ type: 'result', data: { kid, version: world.ring.version, nodes: 4, pending: ['node-9'] } });

    world.commands.push(command({ action: 'revoke', id: 'r2', kid: 'sign-nope' }));
    await until(() => world.commands.last('r2') !== undefined, 'an answer to r2');
    expect(world.commands.last('r2')).toMatchObject({ type: 'error', code: 'ERR_UNKNOWN_KID' });
  });
});

describe('PrimaryDuty: operator commands', () => {
  it('rotates on a command, streaming progress and then the outcome', async () => {
    const world = await started();
    world.commands.push(command({ action: 'rotate', id: 'c1', purposes: ['encrypt', 'cookie'] }));
    await until(() => world.commands.last('c1')?.type === 'result', 'the result of c1');
    const replies = world.commands.replies.get('c1')!;
    expect(replies.filter((reply) => reply.type === 'progress').length).toBeGreaterThanOrEqual(4);
    const outcomes = (replies.at(-1) as { data: RotationOutcome[] }).data;
    expect(outcomes.map((outcome) => [outcome.purpose, outcome.ok])).toEqual([
      ['encrypt', true],
      ['cookie', true],
    ]);
  });

  it('answers a command it cannot carry out with the error code', async () => {
    const world = await started();
    world.commands.push(command({ action: 'rotate', id: 'c2', purposes: ['blue'] }));
    await until(() => world.commands.last('c2') !== undefined, 'an answer to c2');
    expect(world.commands.last('c2')).toMatchObject({ type: 'error', code: 'ERR_BAD_PURPOSE' });
  });

  it('skips entries that are not JSON or not commands, logging their code and size but not their content, and goes on', async () => {
    const world = await started();
    world.commands.push('not json at all: s3cr3t', '{"action":"rotate"}', 'null', command({ action: 'flush', id: 'x' }), command({ action: 'rotate', id: 'c3', purposes: ['cookie'] }));
    await until(() => world.commands.last('c3')?.type === 'result', 'the result of c3');
    const skipped = world.lines.filter((line) => line.msg === 'skipped a malformed operator command');
    expect(skipped.map((line) => line.code)).toEqual(['ERR_NOT_JSON', 'ERR_BAD_SHAPE', 'ERR_BAD_SHAPE', 'ERR_BAD_SHAPE']);
    expect(skipped[0]).toMatchObject({ level: 40, bytes: 'not json at all: s3cr3t'.length });
    expect(JSON.stringify(world.lines)).not.toContain('s3cr3t');
  });

  it('a reply that cannot be written is logged, never an unhandled rejection, and the next command is served', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const world = await started();
      world.commands.failReplies = true;
      const version = world.ring.version;
      world.commands.push(command({ action: 'rotate', id: 'c4', purposes: ['encrypt'] }));
      await until(() => world.ring.version >= version + 2, 'the rotation to activate');
      await until(() => world.lines.some((line) => line.msg === 'could not answer an operator command' && line.type === 'result'), 'the failed result logged');
      await settle(20);

      world.commands.failReplies = false;
      world.commands.push(command({ action: 'rotate', id: 'c5', purposes: ['cookie'] }));
      await until(() => world.commands.last('c5')?.type === 'result', 'the result of c5');
      expect(world.lines.filter((line) => line.msg === 'could not answer an operator command' && line.type === 'progress').length).toBeGreaterThan(0);
    } finally {
      await settle(20);
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });

  it('when reading commands fails (Redis away) it waits before asking again, then serves commands', async () => {
    const world = primaryWorld();
    worlds.push(world);
    world.nodes.following('node-1');
    world.commands.failPops = 3;
    const before = world.clock.now();
    await world.duty.tick();
    await until(() => world.commands.pops >= 4, 'the fourth pop');
    expect(world.clock.now() - before).toBeGreaterThanOrEqual(3 * 1_000);
    expect(world.lines.filter((line) => line.msg === 'could not read operator commands; retrying')).toHaveLength(3);
    world.commands.push(command({ action: 'rotate', id: 'c6', purposes: ['encrypt'] }));
    await until(() => world.commands.last('c6')?.type === 'result', 'the result of c6');
  });

  it('stops taking commands when it loses the lease', async () => {
    const world = await started();
    world.lease.steal('node-2');
    await world.duty.tick(); // the renewal fails: no longer primary
    world.commands.wake();
    await settle(20);
    world.commands.push(command({ action: 'rotate', id: 'c7', purposes: ['encrypt'] }));
    await settle(50);
    expect(world.commands.last('c7')).toBeUndefined();
    expect(world.ring.actions()).toEqual(['create']);
    expect(T0).toBeLessThanOrEqual(world.clock.now());
  });
});
