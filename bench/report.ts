/**
 * `npm run bench`: every benchmark behind the report, one after another
 * (they compete for the same cores, so never in parallel), printed as one
 * table with each target and ✓/✗; `npm run bench -- --json` also writes
 * bench/results.json (one object, the figures of this run). See bench/README.md.
 *
 * Flags: --json (write bench/results.json), --quick (fewer samples: a smoke
 * run, not a measurement), --only=sandbox,pipeline,api,testbed (a subset).
 * PostgreSQL: KILN_BENCH_DATABASE_URL names a server to create a fresh
 * database on; without it the bench starts its own throwaway server
 * (scripts/services/start-postgres.sh, as scripts/test.sh does) and stops it after.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { measureApi, type ApiFigures } from './api.ts';
import { measurePipeline } from './pipeline.ts';
import { measureSandboxStart } from './sandbox-start.ts';
import { measureTestbedFigures } from './testbed-figures.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');

type Figures = Record<string, number | null>;

interface Row {
  field: string;
  label: string;
  unit: string;
  /** 'max': the figure must be ≤ target; 'min': ≥ target; 'below': < target. */
  target?: { kind: 'max' | 'min' | 'below'; value: number };
  /** The field holding the bare reference measured in the same run. */
  reference?: string;
}

const ROWS: Row[] = [
  { field: 'sandboxStartMsP50', label: 'sandbox start (warm pool), p50', unit: 'ms', target: { kind: 'max', value: 10 }, reference: 'bareBwrapMsP50' },
  { field: 'bareBwrapMsP50', label: '  reference: bare bwrap true, p50', unit: 'ms' },
  { field: 'sandboxFreshMsP50', label: '  sandbox start without a pool, p50', unit: 'ms' },
  { field: 'pipelineOwnMs', label: "pipeline's own phases per build", unit: 'ms', target: { kind: 'max', value: 100 } },
  { field: 'optimizeMs', label: 'optimize stage, nothing reused', unit: 'ms', target: { kind: 'max', value: 200 } },
  { field: 'optimizeReusedMs', label: '  optimize stage, result reused', unit: 'ms' },
  { field: 'warmBuildRatio', label: 'warm build / bare build', unit: '×', target: { kind: 'max', value: 1.15 }, reference: 'bareBuildMs' },
  { field: 'bareBuildMs', label: '  reference: bare build (same sandbox)', unit: 'ms' },
  { field: 'previewAddedMsP50', label: 'preview: added to a warm request, p50', unit: 'ms', target: { kind: 'max', value: 0.3 }, reference: 'previewUpstreamMsP50' },
  { field: 'previewUpstreamMsP50', label: '  reference: upstream alone, p50', unit: 'ms' },
  { field: 'previewBareProxyAddedMsP50', label: '  reference: a do-nothing Node proxy adds, p50', unit: 'ms' },
  { field: 'invokePerSecond', label: 'HTTP invoke of a small function', unit: '/s', target: { kind: 'min', value: 2000 } },
  { field: 'firstRequestAfterUploadMs', label: 'first request after upload (1 MB)', unit: 'ms', target: { kind: 'max', value: 5 } },
  { field: 'freshInstanceUs', label: 'fresh instance per request, added', unit: 'µs', target: { kind: 'max', value: 50 } },
  { field: 'victimP99Ratio', label: "victim owner's p99 under busy loops / idle", unit: '×', target: { kind: 'max', value: 2 } },
  { field: 'pgGetBuildPerSecond', label: 'PostgreSQL: GET /v1/builds/:id', unit: '/s', target: { kind: 'min', value: 5000 }, reference: 'healthzPerSecond' },
  { field: 'pgGetBuildP99Ms', label: 'PostgreSQL: GET /v1/builds/:id p99', unit: 'ms', target: { kind: 'below', value: 20 } },
  { field: 'pgGetQueuedBuildPerSecond', label: '  GET of a queued build (a query each)', unit: '/s' },
  { field: 'pgCreateBuildPerSecond', label: 'PostgreSQL: create a queued build', unit: '/s', target: { kind: 'min', value: 1000 } },
  { field: 'pgliteGetBuildPerSecond', label: '  PGlite: GET /v1/builds/:id', unit: '/s' },
  { field: 'pgliteGetBuildP99Ms', label: '  PGlite: GET /v1/builds/:id p99', unit: 'ms' },
  { field: 'pgliteCreateBuildPerSecond', label: '  PGlite: create a queued build', unit: '/s' },
  { field: 'healthzPerSecond', label: '  reference: GET /healthz (HTTP only)', unit: '/s' },
];

interface Plan {
  json: boolean;
  quick: boolean;
  only?: Set<string>;
}

function parseArgs(argv: string[]): Plan {
  const only = argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length);
  const unknown = argv.filter((arg) => !['--json', '--quick'].includes(arg) && !arg.startsWith('--only='));
  if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(' ')} (use --json, --quick, --only=sandbox,pipeline,api,testbed)`);
  return { json: argv.includes('--json'), quick: argv.includes('--quick'), only: only ? new Set(only.split(',')) : undefined };
}

/** Runs one section; a section that fails leaves its figures null and says why, the others still run. */
async function section(plan: Plan, name: string, figures: Figures, measure: () => Promise<Figures>): Promise<void> {
  if (plan.only && !plan.only.has(name)) return;
  console.log(`\n== ${name}`);
  try {
    Object.assign(figures, await measure());
  } catch (error) {
    console.log(`${name}: not measured: ${(error as Error).stack ?? String(error)}`);
  }
}

/** A database of our own on a real PostgreSQL server, and how to drop it. */
async function postgres(): Promise<{ url: string; dispose(): Promise<void> }> {
  const given = process.env.KILN_BENCH_DATABASE_URL;
  if (given) {
    const name = `kiln_bench_${randomBytes(4).toString('hex')}`;
    await withClient(given, (client) => client.query(`create database ${name}`));
    const url = new URL(given);
    url.pathname = `/${name}`;
    return { url: url.toString(), dispose: () => withClient(given, (client) => client.query(`drop database if exists ${name} with (force)`)).then(() => undefined) };
  }
  const state = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-postgres-'));
  const { stdout } = await run('bash', [path.join(root, 'scripts/services/start-postgres.sh'), state]);
  const url = /^DATABASE_URL=(.+)$/m.exec(stdout)?.[1];
  if (!url) throw new Error(`start-postgres.sh printed no DATABASE_URL: ${stdout}`);
  return {
    url,
    dispose: async () => {
      await run('bash', [path.join(root, 'scripts/services/stop-postgres.sh'), state]).catch(() => undefined);
      await rm(state, { recursive: true, force: true });
    },
  };
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

function prefixed(prefix: 'pg' | 'pglite', api: ApiFigures): Figures {
  return {
    [`${prefix}GetBuildPerSecond`]: api.getBuildPerSecond,
    [`${prefix}GetBuildP99Ms`]: api.getBuildP99Ms,
    [`${prefix}GetQueuedBuildPerSecond`]: api.getQueuedBuildPerSecond,
    [`${prefix}CreateBuildPerSecond`]: api.createBuildPerSecond,
    ...(prefix === 'pg' ? { healthzPerSecond: api.healthzPerSecond } : {}),
  };
}

function verdict(row: Row, value: number | null): string {
  if (!row.target) return '';
  if (value === null || !Number.isFinite(value)) return '–';
  const { kind, value: target } = row.target;
  const met = kind === 'max' ? value <= target : kind === 'min' ? value >= target : value < target;
  return met ? '✓' : '✗';
}

function format(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'not measured';
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function table(figures: Figures): string {
  const lines = [`${'figure'.padEnd(42)} ${'measured'.padStart(14)}   ${'target'.padEnd(10)} ok  vs reference`];
  for (const row of ROWS) {
    const value = figures[row.field] ?? null;
    const target = row.target ? `${row.target.kind === 'min' ? '≥' : row.target.kind === 'max' ? '≤' : '<'} ${row.target.value} ${row.unit}` : '';
    const shown = value === null ? 'not measured' : `${format(value)} ${row.unit}`;
    const reference = row.reference ? (figures[row.reference] ?? null) : null;
    // A ratio only where both are the same quantity (the build ratio is already one).
    const versus = value !== null && reference !== null && row.unit !== '×' && reference !== 0 ? `${(value / reference).toFixed(2)}× ${row.reference}` : '';
    lines.push(`${row.label.padEnd(42)} ${shown.padStart(14)}   ${target.padEnd(10)} ${verdict(row, value).padEnd(3)} ${versus}`.trimEnd());
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const plan = parseArgs(process.argv.slice(2));
  const figures: Figures = Object.fromEntries(ROWS.map((row) => [row.field, null]));
  const startedAt = new Date();
  console.log(`Kiln benchmarks${plan.quick ? ' (--quick: few samples, a smoke run)' : ''}: ${os.cpus().length} cores, load average ${os.loadavg().map((value) => value.toFixed(2)).join(' ')}`);
  await section(plan, 'sandbox', figures, async () => ({ ...(await measureSandboxStart(plan.quick ? 8 : 30)) }));
  await section(plan, 'pipeline', figures, async () => {
    const { pipelineMs: _pipelineMs, ...rest } = await measurePipeline(plan.quick ? 1 : 5);
    return { ...rest };
  });
  const apiSettings = { seconds: plan.quick ? 2 : 5, levels: plan.quick ? [16] : [16, 32, 64] };
  await section(plan, 'api', figures, async () => {
    const pglite = await measureApi({ ...apiSettings, label: 'PGlite' });
    const server = await postgres();
    try {
      return { ...prefixed('pglite', pglite), ...prefixed('pg', await measureApi({ ...apiSettings, databaseUrl: server.url, label: 'PostgreSQL' })) };
    } finally {
      await server.dispose();
    }
  });
  await section(plan, 'testbed', figures, async () => ({ ...(await measureTestbedFigures(plan.quick ? 300 : 2000)) }));
  console.log(`\n== report (${((Date.now() - startedAt.getTime()) / 60_000).toFixed(1)} min; load average now ${os.loadavg().map((value) => value.toFixed(2)).join(' ')})`);
  console.log(table(figures));
  if (plan.json) {
    const output = path.join(root, 'bench/results.json');
    const result = { ...figures, measuredAt: startedAt.toISOString(), cores: os.cpus().length, loadAverage1m: os.loadavg()[0] ?? null, quick: plan.quick };
    await writeFile(output, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`written to ${path.relative(process.cwd(), output)}`);
  }
}

await main();
// Sandboxes, workers and servers are closed; anything a library left behind must not keep the bench alive.
process.exit(0);
