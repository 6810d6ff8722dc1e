import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../../app/src/lib/duration.js';

describe('parseDuration', () => {
  it.each([
    ['15m', 900_000],
    ['8h', 28_800_000],
    ['1500ms', 1_500],
    ['30s', 30_000],
    ['2d', 172_800_000],
    ['1.5h', 5_400_000],
    ['15M', 900_000],
    [' 30s ', 30_000],
    ['10 s', 10_000],
    ['250', 250],
  ])('%j -> %i ms', (text, expected) => {
    expect(parseDuration(text)).toBe(expected);
  });

  it.each([[''], ['soon'], ['-5s'], ['1w'], ['2 weeks'], ['15 minutes'], ['1e3'], ['0s'], ['.5h'], ['m']])(
    'rejects %j',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );
});

describe('formatDuration', () => {
  it('formats milliseconds the short way', () => {
    expect(formatDuration(900_000)).toBe('15m');
    expect(formatDuration(86_400_000)).toBe('1d');
  });
});

describe('zero', () => {
  it('is not a duration, with or without a unit', () => {
    expect(parseDuration('0')).toBeUndefined();
    expect(parseDuration('0s')).toBeUndefined();
  });
});
