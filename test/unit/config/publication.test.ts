import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseAudiences } from '../../../app/src/config/index.js';
import { ConfigError } from '../../../app/src/lib/errors.js';

// JWKS_PREPUBLISH, PUBLIC_ISSUER and AUDIENCES: what other services rely on (issue 13).

const minimal = { REDIS_URL: 'redis://localhost:6379/0', KEYRING_MASTER_KEY: randomBytes(32).toString('base64') };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...minimal, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('JWKS_PREPUBLISH', () => {
  it('defaults to 30 minutes: longer than the JWKS caches of jose (10 min), Envoy (10 min) and Istio (20 min)', () => {
    expect(loadConfig(minimal).jwksPrepublishMs).toBe(30 * 60_000);
  });

  it.each([
    ['0', 0],
    ['0s', 0],
    ['5s', 5_000],
    ['12h', 12 * 3_600_000],
  ])('reads %s', (text, ms) => {
    expect(loadConfig({ ...minimal, JWKS_PREPUBLISH: text }).jwksPrepublishMs).toBe(ms);
  });

  it('names the variable when the value is not a duration', () => {
    expect(problemsOf({ JWKS_PREPUBLISH: 'soon' })).toEqual([expect.stringMatching(/^JWKS_PREPUBLISH: "soon" is not a duration/)]);
    expect(problemsOf({ JWKS_PREPUBLISH: '-5m' })[0]).toMatch(/^JWKS_PREPUBLISH:/);
  });
});

describe('PUBLIC_ISSUER', () => {
  it('is absent by default (tokens keep the issuer "keyfleet") and loses a trailing slash', () => {
    expect(loadConfig(minimal).publicIssuer).toBeUndefined();
    expect(loadConfig({ ...minimal, PUBLIC_ISSUER: 'https://auth.example.com/' }).publicIssuer).toBe('https://auth.example.com');
    expect(loadConfig({ ...minimal, PUBLIC_ISSUER: 'https://example.com/auth' }).publicIssuer).toBe('https://example.com/auth');
  });

  it.each(['keyfleet', 'ftp://auth.example.com', 'https://auth.example.com/?x=1', 'https://auth.example.com/#f', 'https://u:p@auth.example.com'])(
    'refuses %s, naming the variable',
    (value) => {
      expect(problemsOf({ PUBLIC_ISSUER: value })).toEqual([expect.stringMatching(/^PUBLIC_ISSUER: must be an https:\/\//)]);
    },
  );
});

describe('AUDIENCES', () => {
  it('is empty by default and reads a comma-separated list without duplicates', () => {
    expect(loadConfig(minimal).audiences).toEqual([]);
    expect(loadConfig({ ...minimal, AUDIENCES: ' notes, reports,notes,https://api.example.com ' }).audiences).toEqual(['notes', 'reports', 'https://api.example.com']);
  });

  it('names the variable and the bad names', () => {
    expect(problemsOf({ AUDIENCES: 'notes,bad name,-x' })).toEqual([expect.stringMatching(/^AUDIENCES: "bad name", "-x": names are/)]);
    expect(parseAudiences('a,,b')).toEqual({ audiences: ['a', 'b'], bad: [] });
  });
});
