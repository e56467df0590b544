/**
 * The wasm-opt step (Debian's binaryen, 2–5× faster than the npm build).
 * wasm-opt only parses and rewrites the module, but a parser bug fed a
 * hostile module is still a way in, so it runs in the sandbox like Wizer.
 */
import type { OptimizeOptions } from './options.ts';
import { runTool, type ToolContext, type ToolOutcome } from './tool-run.ts';

export const WASM_OPT = '/usr/bin/wasm-opt';
const WASM_OPT_WALL_MS = 5 * 60_000;

export type WasmOptLevel = Exclude<OptimizeOptions['wasmOpt'], 'off'>;

export interface WasmOptRun {
  level: WasmOptLevel;
  /** Keep names and DWARF (wasm-opt drops them unless told otherwise). */
  keepDebugInfo: boolean;
  /**
   * Wizer writes its snapshot with bulk-memory encodings; without the
   * feature wasm-opt refuses such a module. Enabled only then, so wasm-opt
   * never introduces bulk-memory instructions into a module that had none.
   */
  bulkMemory: boolean;
}

export function wasmOptArguments(input: string, output: string, run: WasmOptRun): string[] {
  const args = [WASM_OPT, `/build/${input}`, `-${run.level}`, '-o', `/build/${output}`];
  if (run.keepDebugInfo) args.push('--debuginfo');
  else args.push('--strip-debug', '--strip-producers');
  if (run.bulkMemory) args.push('--enable-bulk-memory');
  return args;
}

export function runWasmOpt(context: ToolContext, input: string, output: string, run: WasmOptRun): Promise<ToolOutcome> {
  return runTool(context, { command: wasmOptArguments(input, output, run), wallMs: WASM_OPT_WALL_MS });
}
