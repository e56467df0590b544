/**
 * Runs one optimization tool (wasm-opt, Wizer, node for start-up numbers)
 * inside the build sandbox, on files in a private work volume.
 *
 * Every tool here reads an untrusted module and Wizer even executes it, so
 * they get the same treatment as a compiler: no network, read-only /usr and
 * tool mounts, the job's memory/CPU limits, a wall limit of their own, and a
 * capped output. The volume holds only what we put there (the module, a
 * script), so a hostile module can at worst spoil its own optimization.
 */
import { constants } from 'node:fs';
import { lstat, open, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';
import type { Mount, Sandbox, SandboxLimits, SandboxResult } from '../sandbox/sandbox.ts';

export interface ToolContext {
  sandbox: Sandbox;
  /** Host path of the capped volume mounted at /build (from createWorkDir). */
  volume: string;
  limits: SandboxLimits;
  /** Tool output, already capped by the sandbox; goes to the build log. */
  onOutput: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export interface ToolCommand {
  command: string[];
  mounts?: Mount[];
  wallMs: number;
  /** Default: the tool's output goes to the build log. */
  quiet?: boolean;
}

export type ToolOutcome = { ok: true; output: string; durationMs: number } | { ok: false; reason: string; output: string; durationMs: number };

/** The build was cancelled (or the worker is stopping) while optimizing. */
export class OptimizeCancelled extends Error {
  constructor() {
    super('the build was cancelled during optimization');
    this.name = 'OptimizeCancelled';
  }
}

/** Output kept in memory per run, for reasons and for the measuring script's answer. */
const KEPT_OUTPUT_BYTES = 64 * 1024;

export async function runTool(context: ToolContext, tool: ToolCommand): Promise<ToolOutcome> {
  if (aborted(context.signal)) throw new OptimizeCancelled();
  let output = '';
  let result: SandboxResult;
  try {
    result = await context.sandbox.run({
      command: tool.command,
      env: { PATH: '/usr/bin:/bin', HOME: '/build', TMPDIR: '/build', LANG: 'C.UTF-8' },
      cwd: '/build',
      workDir: context.volume,
      mounts: tool.mounts,
      limits: { ...context.limits, wallMs: Math.min(tool.wallMs, context.limits.wallMs) },
      onOutput: (chunk) => {
        if (output.length < KEPT_OUTPUT_BYTES) output += chunk.toString('utf8');
        if (tool.quiet !== true) context.onOutput(chunk);
      },
      signal: context.signal,
    });
  } catch (error) {
    if (aborted(context.signal)) throw new OptimizeCancelled();
    // A sandbox failure here must not cost the build its original module.
    return { ok: false, reason: `the sandbox failed: ${errorMessage(error)}`, output, durationMs: 0 };
  }
  if (result.cancelled || aborted(context.signal)) throw new OptimizeCancelled();
  if (result.exitCode === 0 && result.limitHit === undefined) return { ok: true, output, durationMs: result.durationMs };
  return { ok: false, reason: failureReason(result, output), output, durationMs: result.durationMs };
}

/** A function, so TypeScript does not keep an earlier check's narrowing across awaits. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function failureReason(result: SandboxResult, output: string): string {
  if (result.limitHit !== undefined) return `${result.limitHit} limit reached${result.notes.length > 0 ? ` (${result.notes.join('; ')})` : ''}`;
  const status = result.exitCode === null ? `killed by ${result.signal ?? 'a signal'}` : `exit code ${result.exitCode}`;
  const lastLine = lastMeaningfulLine(output);
  return lastLine === undefined ? status : `${status}: ${lastLine}`;
}

/** The tool's own words are the best reason; the last error-looking line, else the last line. */
function lastMeaningfulLine(output: string): string | undefined {
  const lines = output
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const error = lines.find((line) => /error|trap|fatal|invalid/i.test(line));
  const chosen = error ?? lines[lines.length - 1];
  return chosen === undefined ? undefined : chosen.length > 300 ? `${chosen.slice(0, 299)}…` : chosen;
}

/** Puts a file into the volume (the volume is ours until a tool ran in it). */
export async function putFile(volume: string, name: string, bytes: Uint8Array | string): Promise<void> {
  await rm(join(volume, name), { force: true });
  await writeFile(join(volume, name), bytes, { flag: 'wx', mode: 0o644 });
}

/**
 * Reads `volume/name` back after a tool ran, without trusting what the tool
 * (and the module it ran) may have left there: no symlink is followed, it
 * must be a regular file of at most maxBytes. Answers undefined when the
 * file is missing or unfit, so the step fails with a reason instead.
 */
export async function takeFile(volume: string, name: string, maxBytes: number): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const path = join(volume, name);
  const stats = await lstat(path).catch(() => undefined);
  if (!stats?.isFile() || stats.size > maxBytes) return undefined;
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const opened = await handle.stat();
    if (!opened.isFile() || opened.size > maxBytes) return undefined;
    const buffer = new Uint8Array(new ArrayBuffer(opened.size));
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return length === buffer.length ? buffer : buffer.slice(0, length);
  } finally {
    await handle.close();
  }
}
