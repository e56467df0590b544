/**
 * The optimize stage with the real tools in the real bubblewrap sandbox, on
 * hand-made modules (no compiler needed): steps fail on their own, the
 * original is served when nothing could be done, and start-up is measured.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OptimizeCancelled, optimizeArtifact, OptimizeResultCache, type OptimizeDetails, type OptimizeInput } from '../../src/optimize/index.ts';
import { OVERLAP_MAX_BYTES } from '../../src/optimize/optimize.ts';
import { isStartupTimes } from '../../src/optimize/startup.ts';
import { createSandbox } from '../../src/sandbox/index.ts';
import type { Sandbox, SandboxLimits } from '../../src/sandbox/sandbox.ts';
import { inspectModule } from '../../src/wasm/inspect.ts';
import { commandModule, trappingInitModule } from './modules.ts';

const LIMITS: SandboxLimits = { wallMs: 60_000, memoryBytes: 1024 ** 3, pids: 64, diskBytes: 64 * 1024 ** 2, logBytes: 1024 ** 2, cpus: 1 };

let workRoot: string;
before(async () => {
  workRoot = await mkdtemp(join(tmpdir(), 'kiln-optimize-'));
  await chmod(workRoot, 0o755);
});
after(async () => {
  await rm(workRoot, { recursive: true, force: true });
});

async function optimize(original: Uint8Array, options: Partial<OptimizeInput['options']>, measure = false) {
  const lines: string[] = [];
  const result = await optimizeArtifact({
    original,
    kind: 'wasi-command',
    options: { strip: true, wasmOpt: 'O1', wizer: true, memoryCapPages: null, ...options },
    sandbox: createSandbox('bubblewrap'),
    workRoot,
    limits: LIMITS,
    log: (line) => lines.push(line),
    onOutput: (chunk) => lines.push(chunk.toString('utf8')),
    measure,
  });
  return { ...result, log: lines.join('\n') };
}

/** The real bubblewrap sandbox, with `around` wrapped about each run (to watch, delay or replace it). */
function wrappedSandbox(around: (options: Parameters<Sandbox['run']>[0], run: Sandbox['run']) => ReturnType<Sandbox['run']>): Sandbox {
  const real = createSandbox('bubblewrap');
  return { name: real.name, check: () => real.check(), run: (options) => around(options, (inner) => real.run(inner)) };
}

/** The `.wasm` file a sandboxed run of the stage works on (its tool's input, or the module a measurement loads). */
function runFile(options: Parameters<Sandbox['run']>[0]): string {
  return options.command.find((arg) => arg.endsWith('.wasm')) ?? '';
}

/** The stage with start-up measured, nothing logged, and `options` over strip + wasm-opt O1 (no Wizer, no cap). */
function optimizeIn(sandbox: Sandbox, original: Uint8Array, extra: Partial<Omit<OptimizeInput, 'original' | 'sandbox' | 'options'>> & { options?: Partial<OptimizeInput['options']> } = {}) {
  const { options, ...rest } = extra;
  return optimizeArtifact({
    original,
    kind: 'wasi-command',
    options: { strip: true, wasmOpt: 'O1', wizer: false, memoryCapPages: null, ...options },
    sandbox,
    workRoot,
    limits: LIMITS,
    log: () => undefined,
    onOutput: () => undefined,
    measure: true,
    ...rest,
  });
}

/** `module` with a custom section of `size` payload bytes appended (too large to build through modules.ts' arrays). */
function withCustomSection(module: Uint8Array, name: string, size: number): Uint8Array {
  const leb = (value: number): number[] => {
    const out: number[] = [];
    do {
      const byte = value & 0x7f;
      value >>>= 7;
      out.push(value === 0 ? byte : byte | 0x80);
    } while (value !== 0);
    return out;
  };
  const nameBytes = Buffer.from(name);
  const content = Buffer.concat([Buffer.from(leb(nameBytes.length)), nameBytes, Buffer.alloc(size, 7)]);
  return Buffer.concat([module, Buffer.from([0, ...leb(content.length)]), content]);
}

describe('the optimize stage', { timeout: 120_000 }, () => {
  it('goes on without Wizer when the init function traps, and logs why', async () => {
    const { optimized, details, log } = await optimize(trappingInitModule(), { memoryCapPages: 4 });
    const byName = Object.fromEntries(details.optimize.steps.map((step) => [step.name, step]));
    assert.equal(byName.strip?.status, 'applied');
    assert.equal(byName.wizer?.status, 'failed');
    assert.match(byName.wizer?.reason ?? '', /unreachable|trap/i);
    assert.equal(byName['wasm-opt']?.status, 'applied');
    assert.equal(byName['memory-cap']?.status, 'applied');
    assert.match(log, /wizer failed, continuing without it: .*(unreachable|trap)/i);
    assert.equal(details.optimize.served, 'optimized');
    assert.ok(optimized);
    const info = inspectModule(optimized);
    assert.ok(info.exports.some((entry) => entry.name === 'wizer-initialize'), 'not pre-initialized: the init export is still there');
    assert.equal(info.memories[0]?.max, 4);
    assert.deepEqual(info.customSections.filter((name) => name.startsWith('.debug') || name === 'producers'), []);
    assert.equal(details.variants.optimized?.bytes, optimized.length);
  });

  it('serves the original with the reason when no step could be applied', async () => {
    const { optimized, details, log } = await optimize(trappingInitModule(), { strip: false, wasmOpt: 'off' });
    assert.equal(optimized, undefined);
    assert.equal(details.optimize.served, 'original');
    assert.match(details.optimize.fallbackReason ?? '', /^wizer: .*(unreachable|trap)/i);
    assert.equal(details.variants.optimized, undefined);
    assert.match(log, /serving the original/);
  });

  it('records why a memory cap below the initial memory cannot be applied', async () => {
    const { optimized, details } = await optimize(commandModule({ memory: { min: 3 } }), { strip: false, wasmOpt: 'off', wizer: false, memoryCapPages: 2 });
    assert.equal(optimized, undefined);
    assert.match(details.optimize.fallbackReason ?? '', /^memory-cap: .*more than the memory cap of 2 pages/);
  });

  it('does nothing, not even measuring, when every optimization is off', async () => {
    const { optimized, details } = await optimize(trappingInitModule(), { strip: false, wasmOpt: 'off', wizer: false, memoryCapPages: null });
    assert.equal(optimized, undefined);
    assert.deepEqual(details, { variants: { original: { bytes: trappingInitModule().length, startup: null } }, optimize: { steps: [], served: 'original' } });
  });

  it('measures start-up of both variants in the sandbox', async () => {
    const { details } = await optimize(commandModule({ custom: { '.debug_line': [1, 2, 3] } }), { wasmOpt: 'off' }, true);
    for (const variant of [details.variants.original, details.variants.optimized]) {
      const startup = variant?.startup;
      assert.ok(isStartupTimes(startup), JSON.stringify(startup));
      for (const phase of ['compileMs', 'instantiateMs', 'initMs', 'firstCallMs', 'totalMs'] as const) assert.ok(startup[phase] >= 0);
      assert.equal(startup.exitCode, 0);
    }
    assert.equal(typeof details.optimize.startupSpeedup, 'number');
  });

  it('reuses a clean result for the same module and options of the same owner, and runs again otherwise', async () => {
    let runs = 0;
    const counting = wrappedSandbox((options, run) => (runs++, run(options)));
    const store = new OptimizeResultCache<OptimizeDetails>();
    const module = commandModule({ custom: { '.debug_line': [1, 2, 3] } });
    const once = (namespace: string, wasmOpt: 'O1' | 'O2' = 'O1') => optimizeIn(counting, module, { options: { wasmOpt }, cache: { store, namespace } });
    const first = await once('a'.repeat(32));
    const runsFirst = runs;
    assert.ok(runsFirst >= 3, 'wasm-opt and two start-up measurements ran');
    assert.equal(first.details.optimize.reused, undefined);
    const second = await once('a'.repeat(32));
    assert.equal(runs, runsFirst, 'nothing ran for the reused result');
    assert.equal(second.details.optimize.reused, true);
    assert.deepEqual(second.optimized, first.optimized);
    assert.deepEqual({ ...second.details.optimize, reused: undefined }, { ...first.details.optimize, reused: undefined });
    await once('b'.repeat(32));
    assert.ok(runs > runsFirst, 'another owner gets its own run');
    const before = runs;
    await once('a'.repeat(32), 'O2');
    assert.ok(runs > before, 'other options run again');
  });

  it('starts a small original\'s measurement while wasm-opt runs: its own volume, half the memory each (decision 0035)', async () => {
    const runs: Array<{ file: string; workDir: string; memoryBytes: number }> = [];
    let measurementStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (measurementStarted = resolve));
    const watching = wrappedSandbox(async (options, run) => {
      const file = runFile(options);
      runs.push({ file, workDir: options.workDir, memoryBytes: options.limits.memoryBytes });
      if (file.includes('measure-original')) measurementStarted();
      const result = await run(options);
      // Run one after the other, wasm-opt would wait here for a measurement that comes after it.
      if (file.includes('wasm-opt-in')) await Promise.race([started, new Promise((_, reject) => setTimeout(() => reject(new Error('the original was not measured alongside wasm-opt')), 30_000))]);
      return result;
    });
    const { details } = await optimizeIn(watching, commandModule({ custom: { '.debug_line': [1, 2, 3] } }));
    assert.equal(details.optimize.steps.find((step) => step.name === 'wasm-opt')?.status, 'applied');
    assert.ok(isStartupTimes(details.variants.original.startup), JSON.stringify(details.variants.original.startup));
    assert.ok(isStartupTimes(details.variants.optimized?.startup), JSON.stringify(details.variants.optimized?.startup));
    const byFile = (part: string) => runs.find((run) => run.file.includes(part));
    assert.notEqual(byFile('measure-original')?.workDir, byFile('wasm-opt-in')?.workDir);
    for (const run of runs) assert.equal(run.memoryBytes, LIMITS.memoryBytes / 2, run.file);
  });

  it('starts both measuring processes while wasm-opt runs and measures them after it, one after the other, each in its own volume (decision 0039)', async () => {
    const runs: Array<{ file: string; workDir: string; memoryBytes: number }> = [];
    const handedDuring: string[] = [];
    let bothStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (bothStarted = resolve));
    /** Whether the stage has already handed `file` (e.g. measure-original.wasm) to its waiting process. */
    const handed = (file: string) => runs.some((run) => run.file.endsWith(file) && existsSync(join(run.workDir, file)));
    const watching = wrappedSandbox(async (options, run) => {
      const file = runFile(options);
      runs.push({ file, workDir: options.workDir, memoryBytes: options.limits.memoryBytes });
      if (runs.filter((entry) => entry.file.includes('measure-')).length === 2) bothStarted();
      const result = await run(options);
      if (file.includes('wasm-opt-in')) {
        // Started only after the steps, the processes would never come while wasm-opt waits here.
        await Promise.race([started, new Promise((_, reject) => setTimeout(() => reject(new Error('the measuring processes were not started while wasm-opt ran')), 30_000))]);
        for (const name of ['measure-original.wasm', 'measure-optimized.wasm']) if (handed(name)) handedDuring.push(`${name} during wasm-opt`);
      }
      if (file.includes('measure-original') && handed('measure-optimized.wasm')) handedDuring.push('measure-optimized.wasm during the original');
      return result;
    });
    const { details } = await optimizeIn(watching, commandModule({ custom: { '.debug_line': [1, 2, 3] } }));
    assert.ok(isStartupTimes(details.variants.original.startup), JSON.stringify(details.variants.original.startup));
    assert.ok(isStartupTimes(details.variants.optimized?.startup), JSON.stringify(details.variants.optimized?.startup));
    assert.deepEqual(handedDuring, [], 'each variant is measured alone');
    const byFile = (part: string) => runs.filter((run) => run.file.includes(part));
    assert.equal(byFile('measure-optimized').length, 1, 'the waiting process measured it; no second one');
    assert.equal(byFile('measure-original').length, 1);
    assert.equal(new Set(runs.map((run) => run.workDir)).size, 3, 'three runs at once, three volumes');
    for (const run of runs) assert.equal(run.memoryBytes, LIMITS.memoryBytes / 2, run.file);
  });

  it('lets the prepared measuring process go when no optimized variant is offered', async () => {
    const outputs = new Map<string, string>();
    const failingWasmOpt = wrappedSandbox(async (options, run) => {
      const file = runFile(options);
      if (file.includes('wasm-opt-in')) return { exitCode: 1, signal: null, cancelled: false, durationMs: 0, notes: [] };
      let output = '';
      const result = await run({ ...options, onOutput: (chunk) => ((output += chunk.toString('utf8')), options.onOutput?.(chunk)) });
      outputs.set(file, output);
      return result;
    });
    const { optimized, details } = await optimizeIn(failingWasmOpt, commandModule(), { options: { strip: false } });
    assert.equal(optimized, undefined);
    assert.equal(details.optimize.served, 'original');
    assert.ok(isStartupTimes(details.variants.original.startup), JSON.stringify(details.variants.original.startup));
    assert.match(outputs.get('/build/measure-optimized.wasm') ?? '', /"skipped":true,"error":"released"/);
  });

  it('stops a waiting prepared measurement on cancel and removes the volumes only after every run ended', async () => {
    const cancel = new AbortController();
    const ended: string[] = [];
    let preparedStarted: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (preparedStarted = resolve));
    const root = await mkdtemp(join(workRoot, 'cancel-'));
    await chmod(root, 0o755);
    const cancelling = wrappedSandbox(async (options, run) => {
      const file = runFile(options);
      if (file.includes('measure-optimized')) preparedStarted();
      if (file.includes('wasm-opt-in')) void started.then(() => cancel.abort());
      try {
        return await run(options);
      } finally {
        ended.push(file);
      }
    });
    await assert.rejects(optimizeIn(cancelling, commandModule({ custom: { '.debug_line': [1, 2, 3] } }), { workRoot: root, signal: cancel.signal }), OptimizeCancelled);
    assert.ok(ended.some((file) => file.includes('measure-optimized')), 'the prepared run ended');
    assert.deepEqual(await readdir(root), [], 'both volumes are gone');
  });

  it('measures a module above the overlap size after the steps, with the whole memory limit', async () => {
    const runs: Array<{ file: string; memoryBytes: number }> = [];
    const recording = wrappedSandbox((options, run) => (runs.push({ file: runFile(options), memoryBytes: options.limits.memoryBytes }), run(options)));
    await optimizeIn(recording, withCustomSection(commandModule(), '.debug_line', OVERLAP_MAX_BYTES + 1));
    assert.deepEqual(runs.map((run) => run.file.replace(/^.*\//, '')), ['wasm-opt-in.wasm', 'measure-original.wasm', 'measure-optimized.wasm']);
    for (const run of runs) assert.equal(run.memoryBytes, LIMITS.memoryBytes, run.file);
  });

  it('reports a module that traps on start as not started, without failing', async () => {
    const { details } = await optimize(trappingInitModule(), { wizer: false, wasmOpt: 'off' }, true);
    const startup = details.variants.original.startup;
    assert.ok(startup && 'error' in startup);
    assert.match(startup.error, /unreachable/);
    // Both variants behave the same, so the optimized one is still offered.
    assert.equal(details.optimize.served, 'optimized');
  });
});
