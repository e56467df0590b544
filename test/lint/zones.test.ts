/**
 * The import zones of eslint.config.js (decision 0025): the lint refuses an
 * import against the drawing, and the folder graph of src/ has no cycles.
 * The lint runs through ESLint's Node API on text, so these tests say what
 * the configuration does, not what today's files happen to contain; the
 * graph test reads today's files.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

const ROOT = new URL('../../', import.meta.url).pathname;
const SRC = join(ROOT, 'src');
const eslint = new ESLint({ cwd: ROOT });
/** The zones table itself (a JavaScript config file: imported by URL, typed here). */
const { ZONES, BUILD_PATH, MAX_DEPTH } = (await import(new URL('../../eslint.config.js', import.meta.url).href)) as {
  ZONES: Record<string, readonly string[]>;
  BUILD_PATH: readonly string[];
  MAX_DEPTH: number;
};

/** The zone errors ESLint reports for `code` as if it were the file at `filePath` (other rules are not this test's business). */
async function zoneErrors(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, filePath) });
  assert.ok(result, 'ESLint returned no result');
  return result.messages.filter((message) => message.ruleId === 'no-restricted-imports').map((message) => message.message);
}

describe('import zones (eslint.config.js)', () => {
  it('refuses an import from the build path into the API', async () => {
    const errors = await zoneErrors("import { buildApp } from '../api/app.ts';\nexport const app = buildApp;\n", 'src/worker/x.ts');
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /src\/worker may not import src\/api/);
  });

  it('accepts an import the drawing allows', async () => {
    const errors = await zoneErrors("import { DEFAULT_LIMITS } from '../sandbox/sandbox.ts';\nexport const limits = DEFAULT_LIMITS;\n", 'src/worker/x.ts');
    assert.deepEqual(errors, []);
  });

  it('applies at every depth of a folder and to type-only imports', async () => {
    const errors = await zoneErrors("import type { Build } from '../../store/metadata/schema.ts';\nexport type B = Build;\n", 'src/languages/rust/x.ts');
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /src\/languages may not import src\/store/);
  });

  it('applies to the top-level files of src/', async () => {
    const errors = await zoneErrors("import { queued } from './queue/enqueue.ts';\nexport const q = queued;\n", 'src/errors.ts');
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /src\/errors\.ts may not import src\/queue/);
  });

  it('lets the API reach the worker only through its protocol module', async () => {
    assert.deepEqual(await zoneErrors("import { Job } from '../worker/protocol.ts';\nexport const job = Job;\n", 'src/api/x.ts'), []);
    const errors = await zoneErrors("import { runWorker } from '../worker/worker.ts';\nexport const run = runWorker;\n", 'src/api/x.ts');
    assert.equal(errors.length, 1);
  });

  it('never lets the build path import the API side (the table itself)', () => {
    const apiSide = ['api', 'server', 'store', 'queue', 'evaluator', 'testbed', 'edge'];
    for (const part of BUILD_PATH) {
      assert.deepEqual((ZONES[part] ?? []).filter((allowed) => apiSide.some((side) => allowed === side || allowed.startsWith(`${side}/`))), [], part);
    }
  });

  it('keeps the store and the queue below the API', async () => {
    for (const from of ['src/store/x.ts', 'src/queue/x.ts']) {
      const errors = await zoneErrors("import { buildApp } from '../api/app.ts';\nexport const app = buildApp;\n", from);
      assert.equal(errors.length, 1, `${from} importing src/api`);
    }
  });
});

/** The part of src/ a path belongs to: its first folder, or the file itself at the top. */
function partOf(path: string): string {
  const [first] = relative(SRC, path).split(sep);
  return first ?? path;
}

async function sourceFiles(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) => {
      const path = join(directory, entry.name);
      if (entry.isDirectory()) return sourceFiles(path);
      return Promise.resolve(entry.name.endsWith('.ts') ? [path] : []);
    }),
  );
  return nested.flat();
}

/** Static imports, re-exports and dynamic imports with a relative specifier. */
const IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;

async function folderGraph(): Promise<Map<string, Set<string>>> {
  const graph = new Map<string, Set<string>>();
  for (const file of await sourceFiles(SRC)) {
    const from = partOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const match of (await readFile(file, 'utf8')).matchAll(IMPORT)) {
      const target = normalize(join(dirname(file), match[1] ?? ''));
      if (!target.startsWith(SRC + sep)) continue;
      const to = partOf(target);
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/** One cycle of the graph as a path (first node repeated at the end), or undefined. */
function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] | undefined {
  const done = new Set<string>();
  const visit = (node: string, path: string[]): string[] | undefined => {
    const seen = path.indexOf(node);
    if (seen >= 0) return [...path.slice(seen), node];
    if (done.has(node)) return undefined;
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next, [...path, node]);
      if (cycle) return cycle;
    }
    done.add(node);
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node, []);
    if (cycle) return cycle;
  }
  return undefined;
}

describe('the folder graph of src/', () => {
  it('finds a cycle when there is one (the check itself)', () => {
    const graph = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['c'])],
      ['c', new Set(['a'])],
    ]);
    assert.deepEqual(findCycle(graph), ['a', 'b', 'c', 'a']);
    assert.equal(findCycle(new Map([['a', new Set(['b'])], ['b', new Set<string>()]])), undefined);
  });

  it('has no cycles', async () => {
    const cycle = findCycle(await folderGraph());
    assert.equal(cycle, undefined, `folder cycle: ${cycle?.join(' → ')}`);
  });

  it('has no file deeper than the zones reach', async () => {
    const tooDeep = (await sourceFiles(SRC)).filter((file) => relative(SRC, file).split(sep).length - 1 > MAX_DEPTH);
    assert.deepEqual(tooDeep, [], 'raise MAX_DEPTH in eslint.config.js');
  });

  it('has a zone for every folder and top-level file', async () => {
    const unzoned = [...(await folderGraph()).keys()].filter((part) => !Object.hasOwn(ZONES, part));
    assert.deepEqual(unzoned, [], 'add the new part to ZONES in eslint.config.js and to the zones table of docs/ARCHITECTURE.md');
  });
});

/** The zones table of docs/ARCHITECTURE.md, rows expanded to lists of parts. */
async function documentedZones(parts: readonly string[]): Promise<Record<string, string[]>> {
  const text = await readFile(join(ROOT, 'docs/ARCHITECTURE.md'), 'utf8');
  const section = text.slice(text.indexOf('## Zones'), text.indexOf('## Invariants'));
  const zones: Record<string, string[]> = {};
  for (const match of section.matchAll(/^\| `([^`]+)` \| ([^|]+) \|$/gm)) {
    const [part, allowed] = [match[1] ?? '', (match[2] ?? '').trim()];
    const others = parts.filter((other) => other !== part);
    if (allowed === 'nothing') zones[part] = [];
    else if (allowed === 'everything') zones[part] = others;
    else if (allowed.startsWith('everything but ')) zones[part] = others.filter((other) => other !== allowed.slice('everything but '.length));
    else zones[part] = allowed.split(', ');
  }
  return zones;
}

describe('docs/ARCHITECTURE.md', () => {
  it('has the zones table that eslint.config.js enforces', async () => {
    const parts = Object.keys(ZONES);
    const sorted = (zones: Record<string, readonly string[]>): Record<string, string[]> =>
      Object.fromEntries(Object.entries(zones).map(([part, allowed]) => [part, [...allowed].sort()]));
    assert.deepEqual(sorted(await documentedZones(parts)), sorted(ZONES));
  });
});
