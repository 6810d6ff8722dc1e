import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { authenticBeats, HeartbeatDirectory, liveNodes, type NodeBeat } from '../../../app/src/cluster/heartbeat.js';
import { beatMac } from '../../../app/src/keyring/seal.js';
import { newMasterKey, T0 } from '../support/ring.js';
import { capturedLog } from '../support/writeSide.js';

// Heartbeats are what rotations wait on and what starting nodes and the CLI trust (with a
// MAC): each one read from Redis is checked; a malformed one is skipped and logged by key.

const beat = (id: string, extra: Partial<NodeBeat> = {}): NodeBeat => ({ id, role: 'auto', primary: false, ringVersion: 3, startedAt: T0, at: T0, draining: false, ...extra });

function redisWith(values: Record<string, string | null>): Redis {
  return {
    scan: async () => ['0', Object.keys(values)],
    mget: async (...keys: string[]) => keys.map((key) => values[key] ?? null),
  } as unknown as Redis;
}

describe('liveNodes', () => {
  it('keeps the well-formed beats, sorted, and skips the rest with their key and code', async () => {
    const { log, lines } = capturedLog();
    const redis = redisWith({
      'keyfleet:node:b': JSON.stringify(beat('b', { revocationSeq: 4, figures: { verificationsPerSecond: 1 } })),
      'keyfleet:node:a': JSON.stringify(beat('a')),
      'keyfleet:node:gone': null,
      'keyfleet:node:junk': 'not json: hunter2',
      'keyfleet:node:role': JSON.stringify(beat('r', { role: 'king' as never })),
      'keyfleet:node:seq': JSON.stringify(beat('s', { revocationSeq: '4' as never })),
    });
    const nodes = await liveNodes(redis, log);
    expect(nodes.map((node) => node.id)).toEqual(['a', 'b']);
    expect(nodes[1]).toMatchObject({ revocationSeq: 4, figures: { verificationsPerSecond: 1 } });
    expect(lines.map((line) => [line.source, line.code])).toEqual([
      ['keyfleet:node:junk', 'ERR_NOT_JSON'],
      ['keyfleet:node:role', 'ERR_BAD_SHAPE'],
      ['keyfleet:node:seq', 'ERR_BAD_SHAPE'],
    ]);
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('the directory the write side waits on answers the same nodes; only beats with a valid MAC are authentic', async () => {
    const masterKey = newMasterKey();
    const signed = beat('a');
    const redis = redisWith({
      'keyfleet:node:a': JSON.stringify({ ...signed, mac: beatMac(masterKey, signed) }),
      'keyfleet:node:b': JSON.stringify({ ...beat('b'), mac: 'forged' }),
    });
    expect((await new HeartbeatDirectory(redis).liveNodes()).map((node) => [node.id, node.ringVersion])).toEqual([
      ['a', 3],
      ['b', 3],
    ]);
    expect((await authenticBeats(redis, masterKey)).map((node) => node.id)).toEqual(['a']);
  });
});
