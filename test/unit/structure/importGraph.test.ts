import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// The folder import graph of app/src, built from the import statements themselves (static,
// type-only, re-exports and dynamic import() alike: a type-only import is still a dependency
// of the design). Each file directly in app/src is a node of its own ("index.ts": the public
// entry point; "server.ts": the process that runs the demo node built on it).

const SRC = resolve(import.meta.dirname, '../../../app/src');

export interface ImportGraph {
  /** folder -> folders it imports from, each with the file-level imports that make the edge. */
  edges: Map<string, Map<string, string[]>>;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

export const folderOf = (file: string) => {
  const parts = relative(SRC, file).split(sep);
  return parts[0]!.replace(/\.js$/, '.ts');
};

export function buildImportGraph(src = SRC): ImportGraph {
  const edges = new Map<string, Map<string, string[]>>();
  for (const file of sourceFiles(src)) {
    const from = folderOf(file);
    if (!edges.has(from)) edges.set(from, new Map());
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue; // a package, not ours
      const target = resolve(dirname(file), fileName);
      if (!target.startsWith(src + sep)) continue;
      const to = folderOf(target);
      if (to === from) continue;
      const byTarget = edges.get(from)!;
      const why = byTarget.get(to) ?? [];
      why.push(`${relative(src, file)} -> ${relative(src, target).replace(/\.js$/, '.ts')}`);
      byTarget.set(to, why);
    }
  }
  return { edges };
}

/** Strongly connected components with more than one folder: each is a cycle (Tarjan). */
export function folderCycles({ edges }: ImportGraph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node)?.keys() ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const node of [...edges.keys()].sort()) if (!index.has(node)) visit(node);
  return components;
}

/** One line per folder: what it imports. */
export function describeGraph({ edges }: ImportGraph): string {
  return [...edges.keys()]
    .sort()
    .map((from) => `${from.padEnd(8)} -> ${[...edges.get(from)!.keys()].sort().join(', ') || '(nothing)'}`)
    .join('\n');
}

/** The file-level imports that make the edges inside each cycle. */
export function describeCycles(graph: ImportGraph, cycles: string[][]): string {
  return cycles
    .map((members) => {
      const inside = new Set(members);
      const lines = members.flatMap((from) =>
        [...(graph.edges.get(from)?.entries() ?? [])].filter(([to]) => inside.has(to)).flatMap(([, why]) => why.map((line) => `    ${line}`)),
      );
      return `cycle among ${members.join(', ')}:\n${lines.join('\n')}`;
    })
    .join('\n');
}

describe('the folder import graph of app/src', () => {
  it('has no cycle between folders', () => {
    const graph = buildImportGraph();
    const cycles = folderCycles(graph);
    // The graph is the proof; print it with every run.
    console.log(`folder import graph of app/src:\n${describeGraph(graph)}`);
    expect(cycles, describeCycles(graph, cycles)).toEqual([]);
  });

  it('keeps the core (keyring, cluster, auth, metrics, lib) free of the edges (config, http, cli)', () => {
    // The public entry point hands the core its options; the environment (config), the HTTP
    // layer and the CLI are built on the core, never under it.
    const { edges } = buildImportGraph();
    const core = ['keyring', 'cluster', 'auth', 'metrics', 'lib'];
    const edgeFolders = new Set(['config', 'http', 'cli', 'demo']);
    const isEdge = (to: string) => edgeFolders.has(to) || to.endsWith('.ts');
    const wrong = core.flatMap((from) => [...(edges.get(from)?.entries() ?? [])].filter(([to]) => isEdge(to)).flatMap(([, why]) => why));
    expect(wrong).toEqual([]);
    // The ring itself knows nothing of the cluster that shares it: the write side reaches
    // live nodes, the lease and the store through keyring/ports.ts.
    expect([...(edges.get('keyring')?.keys() ?? [])]).toEqual(['lib']);
  });

  it('finds a cycle when there is one', () => {
    const graph: ImportGraph = {
      edges: new Map([
        ['a', new Map([['b', ['a/x.ts -> b/y.ts']]])],
        ['b', new Map([['c', ['b/y.ts -> c/z.ts']]])],
        ['c', new Map([['a', ['c/z.ts -> a/x.ts']]])],
        ['d', new Map([['a', ['d/w.ts -> a/x.ts']]])],
      ]),
    };
    expect(folderCycles(graph)).toEqual([['a', 'b', 'c']]);
  });
});
