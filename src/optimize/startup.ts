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
import type { AppKind } from '../wasm/kind.ts';
import { errorMessage } from '../errors.ts';
import { setMemoryMaximum } from '../wasm/memory-cap.ts';
import { STARTUP_SCRIPT } from './startup-script.ts';
import { putFile, runTool, type ToolContext } from './tool-run.ts';

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
const SCRIPT_NAME = 'kiln-startup.mjs';
const ANSWER = /^KILN_STARTUP (\{.*\})$/m;

export async function measureStartup(context: ToolContext, module: Uint8Array, kind: AppKind, options: MeasureOptions): Promise<StartupMeasurement> {
  let capped: Uint8Array;
  try {
    capped = setMemoryMaximum(module, MEASURE_MEMORY_CAP_PAGES);
  } catch (error) {
    return { error: `not measured: ${errorMessage(error)}` };
  }
  await putFile(context.volume, SCRIPT_NAME, STARTUP_SCRIPT);
  await putFile(context.volume, options.name, capped);
  const command = ['/usr/bin/node', '--no-warnings', `/build/${SCRIPT_NAME}`, kind, `/build/${options.name}`, options.callInit === false ? 'host' : 'init'];
  if (options.input !== undefined) {
    await putFile(context.volume, `${options.name}.stdin`, options.input);
    command.push(`/build/${options.name}.stdin`);
  }
  const run = await runTool(context, { command, wallMs: MEASURE_WALL_MS, quiet: true });
  if (!run.ok && run.reason.startsWith('wall')) return { error: `start-up did not finish within ${MEASURE_WALL_MS / 1000} s` };
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
