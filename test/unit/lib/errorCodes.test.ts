import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS, exitCodeOf, isErrorCode, KeyfleetError, type ErrorCode, type ErrorSpec } from '../../../app/src/lib/errors.js';

// One catalogue of error codes (app/src/lib/errorCodes.ts): KeyfleetError takes nothing else
// (the type system sees to that for every `new KeyfleetError`), and this test for the codes
// that appear as plain text: every ERR_… named in app/src is in the catalogue, and
// docs/api.md's "Error codes" section lists exactly the catalogue.
// UPDATE_DOCS=1 npx vitest run --project unit test/unit/lib/errorCodes.test.ts rewrites that section.

const ROOT = resolve(import.meta.dirname, '../../..');
const API_DOC = join(ROOT, 'docs/api.md');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

/** The code names written out in the source (template-built ones are left to the type checker). */
function codesNamedIn(text: string): string[] {
  return [...text.matchAll(/\bERR_[A-Z0-9]+(?:_[A-Z0-9]+)*\b/g)].map((match) => match[0]);
}

export function renderErrorTable(): string {
  const rows = Object.entries(ERRORS).map(([code, spec]: [string, ErrorSpec]) => `| \`${code}\` | ${spec.status} | ${spec.exitCode ?? 1} | ${spec.message.replaceAll('|', '\\|')} |`);
  return ['| code | HTTP status | CLI exit | default message |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

const BEGIN = '<!-- error-codes:begin (generated from app/src/lib/errorCodes.ts; test/unit/lib/errorCodes.test.ts checks it) -->';
const END = '<!-- error-codes:end -->';

describe('the error catalogue', () => {
  it('holds every code app/src names', () => {
    const unknown = new Map<string, string[]>();
    for (const file of sources(join(ROOT, 'app/src'))) {
      for (const code of codesNamedIn(readFileSync(file, 'utf8'))) {
        if (!isErrorCode(code)) unknown.set(code, [...(unknown.get(code) ?? []), file.slice(ROOT.length + 1)]);
      }
    }
    expect(Object.fromEntries(unknown)).toEqual({});
  });

  it('gives each code an HTTP status, a message, and the CLI exit codes the runbook names', () => {
    for (const [code, spec] of Object.entries(ERRORS) as [ErrorCode, ErrorSpec][]) {
      expect(code).toMatch(/^ERR_[A-Z0-9_]+$/);
      expect(spec.status, code).toBeGreaterThanOrEqual(400);
      expect(spec.status, code).toBeLessThan(600);
      expect(spec.message.length, code).toBeGreaterThan(0);
    }
    // docs/runbook.md: a rotation a node never confirmed exits 3, a next key not due yet 4.
    expect(exitCodeOf('ERR_NODES_UNCONFIRMED')).toBe(3);
    expect(exitCodeOf('ERR_NEXT_KEY_NOT_DUE')).toBe(4);
    expect(exitCodeOf('ERR_CONFIG')).toBe(1);
    expect(exitCodeOf('ERR_RING_CONFLICT')).toBe(1);
  });

  it('sets a KeyfleetError status from the catalogue, and its default message', () => {
    expect(new KeyfleetError('ERR_TOKEN_EXPIRED').status).toBe(401);
    expect(new KeyfleetError('ERR_RING_STALE').status).toBe(503);
    expect(new KeyfleetError('ERR_TOO_MANY_ATTEMPTS').message).toBe(ERRORS.ERR_TOO_MANY_ATTEMPTS.message);
    expect(isErrorCode('ERR_NOPE')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
  });

  it('is listed, exactly, in docs/api.md under "Error codes"', () => {
    const doc = readFileSync(API_DOC, 'utf8');
    const start = doc.indexOf(BEGIN);
    const end = doc.indexOf(END);
    expect(start, 'docs/api.md has the generated error-codes block').toBeGreaterThan(doc.indexOf('## Error codes'));
    const expected = `${BEGIN}\n${renderErrorTable()}\n${END}`;
    const actual = doc.slice(start, end + END.length);
    if (process.env.UPDATE_DOCS && actual !== expected) writeFileSync(API_DOC, doc.replace(actual, expected));
    else expect(actual, 'regenerate with UPDATE_DOCS=1').toBe(expected);
  });
});
