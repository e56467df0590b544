/**
 * Turns what guest code threw into an outcome the user can act on. Anything
 * that is not the guest's doing (a bug in a host function) is rethrown: it
 * is Kiln's fault and must not be reported as the user's trap.
 */
import type { GuestFailure } from './protocol.ts';
import { VmStartFailure } from './proxy-wasm/vm.ts';
import { WasiExit } from './wasi/wasi.ts';

export interface MemoryState {
  memoryBytes: number;
  capBytes: number;
  /** The guest's allocator already returned 0 for host data. */
  allocationFailed?: boolean;
}

const MIB = 1024 * 1024;

export function classifyFailure(error: unknown, memory: MemoryState): GuestFailure {
  if (error instanceof VmStartFailure) return { outcome: error.outcome, message: error.message };
  if (error instanceof WasiExit) return { outcome: 'exited', message: `${error.message} while the host expected it to return` };
  if (isStackOverflow(error)) return { outcome: 'trap', message: 'call stack exhausted (infinite recursion?)', stack: wasmFrames(error) };
  if (!(error instanceof WebAssembly.RuntimeError)) throw error;
  const trap = error.message;
  if (nearCap(memory)) {
    return {
      outcome: 'memory_limit',
      message: `the module trapped (${trap}) with its memory at ${mib(memory.memoryBytes)} of the ${mib(memory.capBytes)} cap: it most likely failed to allocate past the memory limit`,
      stack: wasmFrames(error),
    };
  }
  return { outcome: 'trap', message: `the module trapped: ${trap}`, stack: wasmFrames(error) };
}

/**
 * Allocators fail when memory.grow does, which happens at the cap; they then
 * abort (a trap). A trap with memory close to the cap is therefore reported
 * as the memory limit — allocators grow in steps, hence the margin.
 */
function nearCap({ memoryBytes, capBytes, allocationFailed }: MemoryState): boolean {
  return allocationFailed === true || memoryBytes >= capBytes - Math.max(2 * MIB, capBytes / 16);
}

function isStackOverflow(error: unknown): error is RangeError {
  return error instanceof RangeError && /call stack/i.test(error.message);
}

function mib(bytes: number): string {
  const value = bytes / MIB;
  return `${Number.isInteger(value) ? value : value.toFixed(1)} MiB`;
}

/** The Wasm frames of a trap's stack, innermost first (at most 10). */
function wasmFrames(error: Error): string[] {
  return (error.stack ?? '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.includes('wasm://') || line.includes('wasm-function'))
    .slice(0, 10)
    .map((line) => line.replace(/^at\s+/, ''));
}
