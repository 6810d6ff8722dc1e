import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../../app/src/cluster/commands.js';

// The primary pops operator commands from a Redis list that anyone with the nodes' password
// can push to: an entry that is not a command must be skipped, never crash the primary.

describe('parseCommand', () => {
  it('accepts the two commands the CLI sends', () => {
    expect(parseCommand(JSON.stringify({ action: 'rotate', id: 'a', purposes: ['sign'], actor: 'cli@x', confirmTimeoutMs: 30_000, now: true }))).toMatchObject({ action: 'rotate', purposes: ['sign'], now: true });
    expect(parseCommand(JSON.stringify({ action: 'revoke', id: 'b', kid: 'sign-1', actor: 'cli@x' }))).toMatchObject({ action: 'revoke', kid: 'sign-1' });
  });

  it.each([
    ['not JSON', 'rotate everything'],
    ['JSON null', 'null'],
    ['an unknown action', JSON.stringify({ action: 'flush', id: 'a', actor: 'x' })],
    ['a rotate without purposes', JSON.stringify({ action: 'rotate', id: 'a', actor: 'x' })],
    ['a revoke with a number for a kid', JSON.stringify({ action: 'revoke', id: 'a', kid: 7, actor: 'x' })],
    ['an absurd timeout', JSON.stringify({ action: 'rotate', id: 'a', purposes: ['sign'], actor: 'x', confirmTimeoutMs: -1 })],
  ])('skips %s', (_label, raw) => {
    expect(parseCommand(raw)).toBeUndefined();
  });
});
