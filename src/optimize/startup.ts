/**
 * Measures a module's start-up: compile, instantiate, initialization and
 * first call, in ms, each variant in a fresh process.
 *
 * Where it runs, and why: inside the build sandbox, with /usr/bin/node.
 * V8's WebAssembly is a sandbox of its own, and a worker_thread with
 * resourceLimits and terminate() would be cheaper (~40 ms less per variant),
 * but resourceLimits bound only the JS heap: a module's linear memories,
 * tables and the compiler's own memory would still be the worker's, and a
 * V8 bug hit by a hostile module would be a bug in the process that holds
 * the worker token. In the sandbox the module gets the cgroup's memory and
 * CPU limits, a wall deadline that kills the whole process tree, no network
 * and no view of the host — the same walls as the compiler it came from.
 * One process per variant also keeps the numbers honest: V8 caches compiled
 * modules per process, and a second measurement in the same process would be
 * a warm one.
 *
 * On top of that the copy we measure gets a memory maximum (setMemoryMaximum),
 * so `memory.grow` fails inside V8 long before the cgroup limit is reached.
 */
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppKind } from '../wasm/kind.ts';
import { errorMessage } from '../errors.ts';
import { setMemoryMaximum } from '../wasm/memory-cap.ts';
import { STARTUP_SCRIPT } from './startup-script.ts';
import { putFile, runTool, type ToolContext, type ToolOutcome } from './tool-run.ts';

export interface StartupTimes {
  compileMs: number;
  instantiateMs: number;
  initMs: number;
  firstCallMs: number;
  /** The sum: time to first response in a fresh process. */
  totalMs: number;
  /** wasi-command: what `_start` returned (proc_exit code). */
  exitCode?: number;
}

export type StartupMeasurement = StartupTimes | { error: string };

export interface MeasureOptions {
  /** A file name for the copy in the volume (one per variant). */
  name: string;
  /** stdin for a wasi-command's first call (default: empty). */
  input?: Uint8Array;
  /** Call `wizer-initialize` as part of initialization when exported (default true; see startup-script.ts). */
  callInit?: boolean;
}

/** 1 GiB: far beyond what a first call needs, far below what would hurt the worker. */
export const MEASURE_MEMORY_CAP_PAGES = 16_384;
const MEASURE_WALL_MS = 30_000;
/** How often the stage looks for the prepared process's ready file. */
const READY_POLL_MS = 2;
const WALL_ERROR = `start-up did not finish within ${MEASURE_WALL_MS / 1000} s`;
const SCRIPT_NAME = 'kiln-startup.mjs';
const ANSWER = /^KILN_STARTUP (\{.*\})$/m;
/** The script's answer when it exited without a module (its wait ran out, or it was released). */
const SKIPPED = /^KILN_STARTUP \{"ok":false,"skipped":true,/m;

export async function measureStartup(context: ToolContext, module: Uint8Array, kind: AppKind, options: MeasureOptions): Promise<StartupMeasurement> {
  const capped = capForMeasuring(module);
  if ('error' in capped) return capped;
  await putFile(context.volume, options.name, capped.bytes);
  await handOver(context.volume, options.name, 'measure');
  const run = await startMeasuring(context, kind, options);
  return answerOf(run);
}

/** A measuring process started before its module exists (see prepareMeasurement). */
export interface PreparedMeasurement {
  /**
   * Measures `module` in the waiting process; when that process is gone
   * (it waited longer than PREPARED_WAIT_MS), in a fresh one, like measureStartup.
   */
  measure(module: Uint8Array): Promise<StartupMeasurement>;
  /** Lets the process go without measuring; settles once it has exited. Harmless after measure(). */
  release(): Promise<void>;
}

/**
 * How long a prepared process waits for its module. Beyond it the process
 * exits and measure() starts a fresh one: an idle node must not hold a
 * sandbox for the whole of a long wasm-opt run.
 */
export const PREPARED_WAIT_MS = 60_000;

/**
 * Starts the measuring process for a module that is not handed over yet
 * (the stage starts one per variant while the steps run), so node's own
 * start in the sandbox (most of a small module's measuring run) is off the
 * stage's critical path. The process is the same fresh process
 * measureStartup would start, with the same script: it only waits for its
 * go file before it reads the module, and the timed phases start after that.
 */
export function prepareMeasurement(context: ToolContext, kind: AppKind, options: MeasureOptions, waitMs = PREPARED_WAIT_MS): PreparedMeasurement {
  // The sandbox's wall covers the wait too; once the module is handed over, this bounds the measurement itself.
  const deadline = new AbortController();
  const signal = context.signal ? AbortSignal.any([context.signal, deadline.signal]) : deadline.signal;
  const run = startMeasuring({ ...context, signal }, kind, options, waitMs);
  // Settled here so that a cancelled or failed run is never an unhandled rejection; measure() and release() read it.
  const settled = run.then(
    (outcome) => ({ ok: true as const, outcome }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  let handed: 'no' | 'measure' | 'release' = 'no';
  let exited = false;
  void settled.then(() => (exited = true));
  const fresh = (module: Uint8Array) => measureStartup(context, module, kind, options);
  // Writing into the volume while the sandbox still hands it to the run's uid would race that walk.
  const ready = () => until(() => exited || existsSync(join(context.volume, readyFileOf(options.name))));
  return {
    async measure(module) {
      if (handed !== 'no') throw new Error('a prepared measurement measures once');
      handed = 'measure';
      await ready();
      if (exited) return settledAnswer(await settled, () => fresh(module));
      const capped = capForMeasuring(module);
      if ('error' in capped) {
        await handOver(context.volume, options.name, 'release');
        await settled;
        return capped;
      }
      await putFile(context.volume, options.name, capped.bytes);
      await handOver(context.volume, options.name, 'measure');
      const timer = setTimeout(() => deadline.abort(), MEASURE_WALL_MS);
      const outcome = await settled;
      clearTimeout(timer);
      if (!outcome.ok && deadline.signal.aborted && context.signal?.aborted !== true) return { error: WALL_ERROR };
      return settledAnswer(outcome, () => fresh(module));
    },
    async release() {
      if (handed === 'no') {
        handed = 'release';
        await ready();
        if (!exited) await handOver(context.volume, options.name, 'release').catch(() => undefined);
      }
      await settled;
    },
  };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
}

/** The waiting run's answer; a fresh measurement when it exited before it got its module. */
async function settledAnswer(settled: { ok: true; outcome: ToolOutcome } | { ok: false; error: unknown }, fresh: () => Promise<StartupMeasurement>): Promise<StartupMeasurement> {
  if (!settled.ok) throw settled.error;
  if (SKIPPED.test(settled.outcome.output)) return fresh();
  return answerOf(settled.outcome);
}

function capForMeasuring(module: Uint8Array): { bytes: Uint8Array } | { error: string } {
  try {
    return { bytes: setMemoryMaximum(module, MEASURE_MEMORY_CAP_PAGES) };
  } catch (error) {
    return { error: `not measured: ${errorMessage(error)}` };
  }
}

function startMeasuring(context: ToolContext, kind: AppKind, options: MeasureOptions, waitMs = 0): Promise<ToolOutcome> {
  return (async () => {
    await putFile(context.volume, SCRIPT_NAME, STARTUP_SCRIPT);
    await rm(join(context.volume, readyFileOf(options.name)), { force: true });
    const stdin = options.input === undefined ? '' : `/build/${options.name}.stdin`;
    if (options.input !== undefined) await putFile(context.volume, `${options.name}.stdin`, options.input);
    const mode = options.callInit === false ? 'host' : 'init';
    const command = ['/usr/bin/node', '--no-warnings', `/build/${SCRIPT_NAME}`, kind, `/build/${options.name}`, mode, stdin, `/build/${goFileOf(options.name)}`, String(waitMs)];
    return runTool(context, { command, wallMs: waitMs + MEASURE_WALL_MS, quiet: true });
  })();
}

/**
 * Tells the script to go ("measure") or to exit. Written under another
 * name and renamed, so the script never reads a half-written go file.
 */
async function handOver(volume: string, name: string, word: 'measure' | 'release'): Promise<void> {
  const go = goFileOf(name);
  await putFile(volume, `${go}.tmp`, word);
  await rename(join(volume, `${go}.tmp`), join(volume, go));
}

const goFileOf = (name: string) => `${name}.go`;
/** Written by the script once it runs (startup-script.ts). */
const readyFileOf = (name: string) => `${goFileOf(name)}.ready`;

function answerOf(run: ToolOutcome): StartupMeasurement {
  if (!run.ok && run.reason.startsWith('wall')) return { error: WALL_ERROR };
  return parseAnswer(run.output) ?? { error: `the measurement failed: ${run.ok ? 'no answer' : run.reason}` };
}

function parseAnswer(output: string): StartupMeasurement | undefined {
  const match = ANSWER.exec(output);
  if (match?.[1] === undefined) return undefined;
  let answer: unknown;
  try {
    answer = JSON.parse(match[1]);
  } catch {
    return undefined;
  }
  if (typeof answer !== 'object' || answer === null) return undefined;
  const fields = answer as Record<string, unknown>;
  if (fields.ok !== true) return { error: `the module did not start: ${String(fields.error ?? 'unknown error')}` };
  const times = [fields.compileMs, fields.instantiateMs, fields.initMs, fields.firstCallMs].map(Number);
  if (times.some((value) => !Number.isFinite(value) || value < 0)) return undefined;
  const [compileMs = 0, instantiateMs = 0, initMs = 0, firstCallMs = 0] = times;
  const result: StartupTimes = { compileMs, instantiateMs, initMs, firstCallMs, totalMs: round(compileMs + instantiateMs + initMs + firstCallMs) };
  if (typeof fields.exitCode === 'number') result.exitCode = fields.exitCode;
  return result;
}

const round = (value: number) => Math.round(value * 1000) / 1000;

export function isStartupTimes(measurement: StartupMeasurement | null | undefined): measurement is StartupTimes {
  return measurement != null && !('error' in measurement);
}
