/**
 * The optimize stage alone (issue 16: ≤ 200 ms for a small filter), without
 * the API, the queue or a worker around it: the example is built once, the
 * way the worker builds it (same language steps, sandbox, mounts and
 * limits), and then the stage runs on that raw module again and again with
 * the job's default settings and nothing reused (no result cache). Each run
 * prints the stage, its steps and every sandboxed run (the tool, how long
 * `Sandbox.run` took), so one can see where the time goes.
 *
 * `--levels` also runs wasm-opt once per level on the stripped module in the
 * same sandbox and prints size and time for each: what choosing another
 * level would buy (decision 0039).
 *
 * Usage: node --import tsx bench/optimize-stage.ts [runs] [example] [--levels]   (default 5, rust-filter)
 */
import { cp, mkdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BASE_DIRECTORIES } from '../src/build-kit/paths.ts';
import { createLanguages } from '../src/languages/index.ts';
import type { BuildContext } from '../src/languages/language.ts';
import { optimizeArtifact, stripCustomSections } from '../src/optimize/index.ts';
import { putFile, runTool, takeFile, type ToolContext } from '../src/optimize/tool-run.ts';
import { wasmOptArguments } from '../src/optimize/wasm-opt.ts';
import { createSandbox, createWorkDir, DEFAULT_LIMITS, DEFAULT_WARM_POOL, type Sandbox } from '../src/sandbox/index.ts';
import { DEFAULT_OPTIMIZE } from '../src/use-cases/upload-version.ts';
import { detectKind } from '../src/wasm/kind.ts';
import { inspectModule } from '../src/wasm/inspect.ts';
import { median } from './stats.ts';

const args = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
const RUNS = Math.max(1, Number(args[0] ?? 5));
const EXAMPLE = args[1] ?? 'rust-filter';
const LEVELS = process.argv.includes('--levels');
const TARGET_MS = 200;

/** The raw module as the worker collects it: the example built by its language's steps in the sandbox. */
async function buildRaw(sandbox: Sandbox, workRoot: string): Promise<Uint8Array> {
  const rust = createLanguages().rust;
  const workDir = await createWorkDir(workRoot, DEFAULT_LIMITS.diskBytes, 'bench-raw');
  try {
    const jobDir = workDir.path;
    await cp(path.resolve(import.meta.dirname, '../examples', EXAMPLE), path.join(jobDir, 'src'), { recursive: true, filter: (source) => path.basename(source) !== 'target' });
    for (const directory of BASE_DIRECTORIES) await mkdir(path.join(jobDir, directory), { recursive: true });
    const detection = await rust.detect(path.join(jobDir, 'src'));
    const context: BuildContext = { jobDir, sourceDir: path.join(jobDir, 'src'), kind: detection?.kind ?? 'wasi-command', log: () => undefined };
    await rust.prepare(context);
    for (const step of await rust.steps(context)) {
      let output = '';
      const result = await sandbox.run({ command: step.command, env: step.env, cwd: step.cwd, workDir: jobDir, mounts: rust.mounts(context), limits: DEFAULT_LIMITS, onOutput: (chunk) => (output = (output + chunk.toString('utf8')).slice(-4000)) });
      if (result.exitCode !== 0) throw new Error(`${step.name} failed: ${output}`);
    }
    return new Uint8Array(await readFile(path.join(jobDir, await rust.locateOutput(context))));
  } finally {
    await workDir.dispose();
  }
}

/** The sandbox, with each run's tool and duration written down (bench-side only). */
function timing(sandbox: Sandbox, runs: string[]): Sandbox {
  return {
    name: sandbox.name,
    check: () => sandbox.check(),
    close: () => sandbox.close?.() ?? Promise.resolve(),
    async run(options) {
      const started = performance.now();
      const result = await sandbox.run(options);
      const tool = path.basename(options.command[0] ?? '?');
      const file = options.command.find((arg) => arg.endsWith('.wasm'))?.replace('/build/', '') ?? '';
      runs.push(`${tool} ${file} ${(performance.now() - started).toFixed(0)} ms`);
      return result;
    },
  };
}

async function stageRuns(sandbox: Sandbox, workRoot: string, raw: Uint8Array, kind: 'proxy-wasm' | 'wasi-command'): Promise<void> {
  const totals: number[] = [];
  for (let run = 1; run <= RUNS; run++) {
    const tools: string[] = [];
    const started = performance.now();
    const result = await optimizeArtifact({ original: raw, kind, options: DEFAULT_OPTIMIZE, sandbox: timing(sandbox, tools), workRoot, limits: DEFAULT_LIMITS, log: () => undefined, onOutput: () => undefined });
    const ms = performance.now() - started;
    totals.push(ms);
    const { steps, served } = result.details.optimize;
    console.log(`  run ${run}: stage ${ms.toFixed(0)} ms, served ${served}, ${raw.length} → ${result.optimized?.length ?? raw.length} bytes`);
    console.log(`    steps: ${steps.map((step) => `${step.name} ${step.status} ${step.durationMs} ms`).join(', ')}`);
    console.log(`    sandboxed runs (in the order they ended): ${tools.join(', ')}`);
  }
  const stage = median(totals);
  console.log(`optimize stage, nothing reused: median ${stage.toFixed(0)} ms (target ≤ ${TARGET_MS} ms: ${stage <= TARGET_MS ? 'met' : 'not met'})`);
}

/** wasm-opt at every level on the stripped module, in the sandbox, as the stage runs it. */
async function levels(sandbox: Sandbox, workRoot: string, raw: Uint8Array): Promise<void> {
  const stripped = stripCustomSections(raw).bytes;
  const volume = await createWorkDir(workRoot, DEFAULT_LIMITS.diskBytes, 'bench-levels');
  try {
    const context: ToolContext = { sandbox, volume: volume.path, limits: DEFAULT_LIMITS, onOutput: () => undefined };
    await putFile(volume.path, 'in.wasm', stripped);
    console.log(`wasm-opt on the stripped module (${stripped.length} bytes), in the sandbox, median of ${RUNS}:`);
    for (const level of ['O1', 'O2', 'O3', 'O4', 'Os', 'Oz'] as const) {
      const times: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const outcome = await runTool(context, { command: wasmOptArguments('in.wasm', 'out.wasm', { level, keepDebugInfo: false, bulkMemory: false }), wallMs: 5 * 60_000, quiet: true });
        if (!outcome.ok) throw new Error(`wasm-opt -${level}: ${outcome.reason}`);
        times.push(outcome.durationMs);
      }
      const out = await takeFile(volume.path, 'out.wasm', 128 * 1024 ** 2);
      console.log(`  -${level}: ${out?.length ?? '?'} bytes (${(100 * (out?.length ?? 0) / raw.length).toFixed(1)} % of raw), ${median(times).toFixed(0)} ms`);
    }
  } finally {
    await volume.dispose();
  }
}

async function main(): Promise<void> {
  const workRoot = path.join(os.tmpdir(), `kiln-bench-optimize-stage-${process.pid}`);
  await mkdir(workRoot, { recursive: true, mode: 0o755 });
  const sandbox = createSandbox('bubblewrap', { warmPool: DEFAULT_WARM_POOL });
  try {
    console.log(`optimize stage: examples/${EXAMPLE}, ${RUNS} runs, defaults ${JSON.stringify(DEFAULT_OPTIMIZE)}`);
    console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((load) => load.toFixed(2)).join(' ')}`);
    const raw = await buildRaw(sandbox, workRoot);
    const kind = detectKind(inspectModule(raw));
    if (kind !== 'proxy-wasm' && kind !== 'wasi-command') throw new Error(`unexpected kind ${kind}`);
    await stageRuns(sandbox, workRoot, raw, kind);
    if (LEVELS) await levels(sandbox, workRoot, raw);
  } finally {
    await sandbox.close?.();
    await rm(workRoot, { recursive: true, force: true });
  }
}

await main();
