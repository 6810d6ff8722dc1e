import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// keyfleet's own node is built on the public entry point alone, like any app: server.ts and
// the demo (app/src/demo/) may import packages, the entry point and each other, and no other
// module of app/src. If the demo needs something, the entry point exports it.

const SRC = resolve(import.meta.dirname, '../../../app/src');

/** Every module specifier a file imports or re-exports (static, dynamic, type-only). */
export function importsOf(text: string): string[] {
  const specifiers: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/gms,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) specifiers.push(match[1]!);
  return specifiers;
}

const demoFiles = readdirSync(join(SRC, 'demo')).filter((name) => name.endsWith('.ts')).map((name) => join(SRC, 'demo', name));
const files = [join(SRC, 'server.ts'), ...demoFiles];

/** What a relative import may reach from `file`: the entry point, or a file of the demo. */
function allowed(file: string, specifier: string): boolean {
  if (!specifier.startsWith('.')) return true; // a package
  const target = resolve(file, '..', specifier);
  return target === join(SRC, 'index.js') || relative(join(SRC, 'demo'), target).split('/')[0] !== '..';
}

describe('the public boundary', () => {
  it('finds the files it checks, and their imports', () => {
    expect(demoFiles.length).toBeGreaterThanOrEqual(2);
    expect(allowed(join(SRC, 'server.ts'), './node.js')).toBe(false);
    expect(allowed(join(SRC, 'demo', 'routes.ts'), '../http/kit.js')).toBe(false);
    expect(allowed(join(SRC, 'demo', 'routes.ts'), '../index.js')).toBe(true);
    expect(importsOf("import a from 'x';\nimport type { B } from '../y.js';\nexport { c } from './z.js';\nimport {\n  d,\n} from 'w';\nconst e = await import('./v.js');")).toEqual(['x', '../y.js', './z.js', 'w', './v.js']);
  });

  it.each(files.map((file) => [relative(SRC, file), file]))('%s imports only packages, the entry point and the demo', (_name, file) => {
    const imports = importsOf(readFileSync(file, 'utf8'));
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((specifier) => !allowed(file, specifier))).toEqual([]);
  });

  it('server.ts and the demo reach the entry point itself', () => {
    const reaching = files.filter((file) => importsOf(readFileSync(file, 'utf8')).some((specifier) => specifier.startsWith('.') && resolve(file, '..', specifier) === join(SRC, 'index.js')));
    expect(reaching.map((file) => relative(SRC, file)).sort()).toEqual(['demo/app.ts', 'demo/page.ts', 'demo/routes.ts', 'server.ts']);
  });
});
