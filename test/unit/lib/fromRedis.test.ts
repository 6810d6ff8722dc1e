import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { checkStored, parseStored, reportMalformed } from '../../../app/src/lib/fromRedis.js';
import { capturedLog } from '../support/writeSide.js';

// What every read from Redis goes through: parsed, checked, and when malformed reported by
// place and code, never by content.

const Schema = z.object({ id: z.string(), n: z.number() });

describe('parseStored', () => {
  it('answers the value, or why not: not JSON, or not the shape', () => {
    expect(parseStored(Schema, '{"id":"a","n":1}')).toEqual({ ok: true, value: { id: 'a', n: 1 } });
    expect(parseStored(Schema, '{"id":')).toEqual({ ok: false, code: 'ERR_NOT_JSON' });
    expect(parseStored(Schema, '')).toEqual({ ok: false, code: 'ERR_NOT_JSON' });
    expect(parseStored(Schema, 'null')).toEqual({ ok: false, code: 'ERR_BAD_SHAPE' });
    expect(parseStored(Schema, '{"id":"a","n":"1"}')).toEqual({ ok: false, code: 'ERR_BAD_SHAPE' });
    expect(checkStored(Schema, { id: 'b', n: 2 })).toEqual({ ok: true, value: { id: 'b', n: 2 } });
  });
});

describe('reportMalformed', () => {
  it('logs place and code, at most once a minute per place and code, and nothing without a logger', () => {
    const { log, lines } = capturedLog();
    const place = `keyfleet:test:${Math.random()}`;
    reportMalformed(log, place, 'ERR_NOT_JSON');
    reportMalformed(log, place, 'ERR_NOT_JSON');
    reportMalformed(log, place, 'ERR_BAD_SHAPE');
    reportMalformed(undefined, place, 'ERR_BAD_SHAPE');
    expect(lines.map((line) => [line.source, line.code, line.level])).toEqual([
      [place, 'ERR_NOT_JSON', 40],
      [place, 'ERR_BAD_SHAPE', 40],
    ]);
  });
});
