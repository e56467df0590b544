/**
 * Runs a built WASI command for a test and answers what it printed.
 *
 * Node's WASI is native code (uvwasi) reading and writing the module's
 * memory, and it is marked experimental: a test process that hosted it
 * crashed with a corrupted heap, inside node:wasi, once in some runs of the
 * optimize suite. The module now runs in a Node process of its own, so the
 * worst a module or WASI can do is fail that one run, with its signal named.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A run longer than this is a hung module: the child is killed and the test fails. */
const WASI_RUN_TIMEOUT_MS = 60_000;
const CHILD = join(import.meta.dirname, 'wasi-child.mjs');

/** Runs a wasi-command with `input` on stdin, no preopened directories, no environment; a trap rejects. */
export async function runWasiCommand(module: Uint8Array, input = ''): Promise<CommandResult> {
  const dir = await mkdtemp(join(tmpdir(), 'kiln-wasi-'));
  const file = (name: string) => join(dir, name);
  try {
    await Promise.all([writeFile(file('module.wasm'), module), writeFile(file('stdin'), input)]);
    const answer = await runChild([file('module.wasm'), file('stdin'), file('stdout'), file('stderr')]);
    if ('trap' in answer) throw new Error(`the module trapped: ${answer.trap}`);
    const [stdout, stderr] = await Promise.all([readFile(file('stdout'), 'utf8'), readFile(file('stderr'), 'utf8')]);
    return { exitCode: answer.exitCode, stdout, stderr };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function runChild(args: string[]): Promise<{ exitCode: number } | { trap: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--no-warnings', CHILD, ...args], { timeout: WASI_RUN_TIMEOUT_MS, env: {} }, (error, stdout, stderr) => {
      if (error) {
        const how = error.signal ? `was killed by ${error.signal}` : `exited with ${String(error.code)}`;
        reject(new Error(`the WASI host process ${how}: ${stderr.trim() || stdout.trim()}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as { exitCode: number } | { trap: string });
      } catch {
        reject(new Error(`the WASI host process answered no result: ${stdout.trim()} ${stderr.trim()}`));
      }
    });
  });
}
