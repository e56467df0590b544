/**
 * Runs a wasi-command once: a fresh instance, `_start`, the exit code (from
 * proc_exit, or 0 when `_start` returns). Output beyond the cap is dropped
 * but still acknowledged to the guest, so a chatty program ends normally
 * with its output marked truncated.
 */
import { GuestMemory } from '../guest-memory.ts';
import { hostNames, linkImports } from '../link.ts';
import { leaseMemory } from '../memory-pool.ts';
import type { GuestFailure, WasiJob, WasiRunResult } from '../protocol.ts';
import { classifyFailure } from '../failure.ts';
import { createWasi, WASI_MODULE, WasiExit } from './wasi.ts';

class CappedOutput {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly max: number) {}

  write(chunk: Uint8Array): void {
    const room = this.max - this.size;
    if (chunk.length > room) this.truncated = true;
    const kept = chunk.length > room ? chunk.subarray(0, Math.max(room, 0)) : chunk;
    if (kept.length === 0) return;
    this.chunks.push(kept);
    this.size += kept.length;
  }

  /**
   * A view of exactly the output, never a slice of Node's shared 8 KiB
   * Buffer pool: the result is posted to the runner's main thread, and
   * structured clone copies a view's whole backing store.
   */
  bytes(): Uint8Array {
    const only = this.chunks.length === 1 ? this.chunks[0] : undefined;
    if (only && only.byteOffset === 0 && only.byteLength === only.buffer.byteLength) return only;
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

/** A trap is reported in `failure`, with the output written before it. */
export function runWasiCommand(job: WasiJob): WasiRunResult {
  const stdout = new CappedOutput(job.maxOutputBytes);
  const stderr = new CappedOutput(job.maxOutputBytes);
  let memory: GuestMemory | undefined;
  const unimplemented: string[] = [];
  const wasi = createWasi(
    { args: job.args, env: job.env, stdin: job.stdin, stdout: (c) => stdout.write(c), stderr: (c) => stderr.write(c) },
    () => {
      if (!memory) throw new Error('WASI call before the module was instantiated');
      return memory;
    },
    hostNames(job.plan, [WASI_MODULE]),
  );
  const imports = linkImports(job.plan, { [WASI_MODULE]: wasi }, (module, name) => {
    if (!unimplemented.includes(`${module}.${name}`)) unimplemented.push(`${module}.${name}`);
  });
  const releaseMemory = leaseMemory(imports, job.memory);
  const started = performance.now();
  let exitCode: number | null = null;
  let failure: GuestFailure | undefined;
  try {
    const instance = new WebAssembly.Instance(job.module, imports);
    const exported = instance.exports.memory;
    if (exported instanceof WebAssembly.Memory) memory = new GuestMemory(exported);
    exitCode = runStart(instance);
  } catch (error) {
    failure = classifyFailure(error, { memoryBytes: memory?.size ?? 0, capBytes: job.capBytes });
  } finally {
    // The instance is unreachable from here on; its output was copied out of its memory as it was written.
    releaseMemory();
  }
  return {
    exitCode,
    stdout: stdout.bytes(),
    stderr: stderr.bytes(),
    stdoutTruncated: stdout.truncated,
    stderrTruncated: stderr.truncated,
    durationMs: performance.now() - started,
    unimplemented,
    ...(failure ? { failure } : {}),
  };
}

function runStart(instance: WebAssembly.Instance): number {
  const start = instance.exports._start;
  if (typeof start !== 'function') throw new Error('the module has no _start function');
  try {
    (start as () => void)();
    return 0;
  } catch (error) {
    if (error instanceof WasiExit) return error.code;
    throw error;
  }
}
