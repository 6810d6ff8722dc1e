import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tsBlocks } from '../../support/markdown.js';

// The API reference stays true: every ```ts block of docs/api.md, and the wiring in the
// README's "Use it in your own Express app", is type-checked with the repository's tsc
// against the declarations the build emits (dist/index.d.ts, what `import … from 'keyfleet'`
// resolves to in an installed package). `myUsers` stands for the app's own user store.

const ROOT = resolve(import.meta.dirname, '../../..');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const run = promisify(execFile);

const AMBIENT = `declare global {
  /** The app's own user store (not keyfleet's). */
  const myUsers: { check(username: unknown, password: unknown): Promise<{ id: string; role: 'admin' | 'member' } | undefined> };
}
export {};
`;

// Inside the repository, so that express, zod and the rest resolve from its node_modules.
let dir: string;
beforeAll(() => {
  mkdirSync(join(ROOT, 'node_modules/.cache'), { recursive: true });
  dir = mkdtempSync(join(ROOT, 'node_modules/.cache/keyfleet-docs-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('docs/api.md and the README wiring', () => {
  it('type-check against the declared entry point', { timeout: 180_000 }, async () => {
    const api = tsBlocks(readFileSync(join(ROOT, 'docs/api.md'), 'utf8'));
    const readme = tsBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'), '## Use it in your own Express app');
    expect(api.length).toBeGreaterThanOrEqual(5);
    expect(readme.length).toBe(1);
    // The README's wiring is at most ~20 lines.
    expect(readme[0]!.code.trim().split('\n').length).toBeLessThanOrEqual(20);

    await run(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.json'), '--declaration', '--emitDeclarationOnly', '--outDir', join(dir, 'types')]);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    writeFileSync(join(dir, 'ambient.d.ts'), AMBIENT);
    const files = new Map<string, string>();
    for (const [name, blocks] of [['api', api], ['readme', readme]] as const) {
      blocks.forEach((block, i) => {
        const file = `${name}-${i}.ts`;
        files.set(file, `${name === 'api' ? 'docs/api.md' : 'README.md'}:${block.line}`);
        writeFileSync(join(dir, file), block.code);
      });
    }
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          types: ['node'],
          paths: { keyfleet: ['./types/index.d.ts'] },
        },
        files: ['ambient.d.ts', ...files.keys()],
      }),
    );
    const result = await run(process.execPath, [TSC, '-p', join(dir, 'tsconfig.json')]).then(
      () => '',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    );
    // Name the Markdown line each failing block starts at.
    const report = result.replace(/\b((?:api|readme)-\d+\.ts)\b/g, (file) => `${file} (${files.get(file)})`);
    expect(report).toBe('');
  });

  it('finds the blocks of a Markdown text and where they start', () => {
    const markdown = '# t\n\n```ts\nconst a = 1;\n```\n\n## Use\n\n```ts\nconst b = 2;\n```\n\n## Next\n\n```js\nx\n```\n';
    expect(tsBlocks(markdown)).toEqual([{ code: 'const a = 1;\n', line: 4 }, { code: 'const b = 2;\n', line: 10 }]);
    expect(tsBlocks(markdown, '## Use')).toEqual([{ code: 'const b = 2;\n', line: 10 }]);
  });
});
