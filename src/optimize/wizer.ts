/**
 * The Wizer step: pre-initialization. Wizer instantiates the module, calls
 * its init export once and writes the resulting state (memory, globals) back
 * as a new module, so every instance starts where the init left off.
 *
 * Wizer executes the module, so it runs only inside the sandbox (tool-run.ts)
 * with its binary mounted read-only. `--allow-wasi` lets the init use WASI
 * (Rust's std needs it for its own set-up) without any preopened directory
 * or inherited environment: the init sees an empty world. What it observes
 * there (clock, random seeds) is frozen into the snapshot — see
 * docs/decisions/0005.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type { ModuleInfo } from '../wasm/inspect.ts';
import type { Mount } from '../sandbox/sandbox.ts';
import { runTool, type ToolContext, type ToolOutcome } from './tool-run.ts';

/** Wizer 11's default init function name, the one Kiln looks for. */
export const WIZER_INIT_EXPORT = 'wizer-initialize';

const SANDBOX_WIZER_DIR = '/opt/kiln/wizer';
const WIZER_WALL_MS = 2 * 60_000;

/** The host directory holding the `wizer` binary of the npm package, if installed for this platform. */
export function findWizerDirectory(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    return dirname(require.resolve(`@bytecodealliance/wizer-${process.platform}-${process.arch}/package.json`));
  } catch {
    return undefined;
  }
}

export function exportsWizerInit(info: ModuleInfo): boolean {
  return info.exports.some((entry) => entry.kind === 'function' && entry.name === WIZER_INIT_EXPORT);
}

/** Runs Wizer on `/build/<input>`, writing `/build/<output>`. */
export function runWizer(context: ToolContext, wizerDirectory: string, input: string, output: string): Promise<ToolOutcome> {
  const mounts: Mount[] = [{ host: wizerDirectory, sandbox: SANDBOX_WIZER_DIR }];
  return runTool(context, {
    command: [
      `${SANDBOX_WIZER_DIR}/wizer`,
      `/build/${input}`,
      '-o',
      `/build/${output}`,
      '--init-func',
      WIZER_INIT_EXPORT,
      '--allow-wasi',
      '--inherit-env=false',
    ],
    mounts,
    wallMs: WIZER_WALL_MS,
  });
}
