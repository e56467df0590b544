/**
 * Memories recycled between instances on one worker thread (decision 0049).
 *
 * A test bed instance whose module had its memory turned into an import
 * (wasm/memory-import.ts) is handed a memory from here: one an earlier
 * instance used, whose pages are already resident, instead of a new one whose
 * every first touch is a page fault. That is what makes a fresh VM per
 * request and a function call cheap to instantiate.
 *
 * What a guest could see must not differ from a new memory, and nothing of
 * one instance may reach another:
 * - a memory is zeroed when it is taken, not when it is given back, so
 *   nothing written after it was given back (an instance that was still on
 *   the stack) survives into the next instance;
 * - only a memory still at its declared initial size comes back (a grown
 *   memory cannot shrink: a guest would see it bigger than declared);
 * - it is given back only by the one that took it, once that instance can no
 *   longer run (the VM or the call is over and holds no export of it).
 */
import type { MemoryType } from '../wasm/memory-import.ts';
import { PAGE_SIZE } from '../wasm/binary.ts';

/** Memories kept per worker thread, over all sizes. */
export const MAX_POOLED_MEMORIES = 16;
/** Bytes kept per worker thread: wasm memories are outside the thread's heap limit, so they get their own. */
export const MAX_POOLED_TOTAL_BYTES = 32 * 1024 * 1024;
/**
 * Larger memories are never pooled: zeroing all of one on every take would
 * cost more than the page faults the guest actually causes.
 */
export const MAX_POOLED_MEMORY_BYTES = 4 * 1024 * 1024;

/** Where the rewritten modules import their memory from (the import plan refuses any guest import from a module but env and WASI's, so only the rewrite names it). */
export const POOLED_MEMORY_IMPORT = { module: 'kiln:memory', name: 'memory' } as const;

export class MemoryPool {
  /** Oldest first; when full, the oldest are dropped, so no one size can keep the others out. */
  private readonly free: Array<{ key: string; memory: WebAssembly.Memory; bytes: number }> = [];
  private totalBytes = 0;

  constructor(
    private readonly maxMemories = MAX_POOLED_MEMORIES,
    private readonly maxTotalBytes = MAX_POOLED_TOTAL_BYTES,
  ) {}

  /** A memory of exactly this type, all zeros: a recycled one when there is one. */
  take(type: MemoryType): WebAssembly.Memory {
    const wanted = key(type);
    let at = this.free.length - 1;
    while (at >= 0 && this.free[at]?.key !== wanted) at--;
    if (at === -1) return new WebAssembly.Memory(descriptor(type));
    const [entry] = this.free.splice(at, 1);
    const { memory, bytes } = entry as { memory: WebAssembly.Memory; bytes: number };
    this.totalBytes -= bytes;
    new Uint8Array(memory.buffer).fill(0);
    return memory;
  }

  /** Keeps a memory taken for `type` for a later instance, when it may be reused. */
  give(memory: WebAssembly.Memory, type: MemoryType): void {
    const bytes = type.initial * PAGE_SIZE;
    if (memory.buffer.byteLength !== bytes || bytes > MAX_POOLED_MEMORY_BYTES || this.maxMemories === 0 || bytes > this.maxTotalBytes) return;
    if (this.free.some((entry) => entry.memory === memory)) return;
    while (this.free.length >= this.maxMemories || this.totalBytes + bytes > this.maxTotalBytes) this.totalBytes -= this.free.shift()?.bytes ?? 0;
    this.free.push({ key: key(type), memory, bytes });
    this.totalBytes += bytes;
  }

  get size(): number {
    return this.free.length;
  }

  /** Bytes of the memories kept. */
  get bytes(): number {
    return this.totalBytes;
  }
}

/** One pool per worker thread (module state is per thread). */
export const threadMemoryPool = new MemoryPool();

function key(type: MemoryType): string {
  return `${type.initial}/${type.maximum ?? '-'}`;
}

function descriptor(type: MemoryType): WebAssembly.MemoryDescriptor {
  return type.maximum === undefined ? { initial: type.initial } : { initial: type.initial, maximum: type.maximum };
}

/**
 * Supplies a module that imports its memory (`type` set) with one from the
 * pool, in `imports`; the returned function gives it back and is called once
 * the instance can no longer run. Without a type it does nothing: the module
 * makes its own memory.
 */
export function leaseMemory(imports: WebAssembly.Imports, type: MemoryType | undefined, pool: MemoryPool = threadMemoryPool): () => void {
  if (!type) return () => undefined;
  const memory = pool.take(type);
  imports[POOLED_MEMORY_IMPORT.module] = { [POOLED_MEMORY_IMPORT.name]: memory };
  let given = false;
  return () => {
    if (given) return;
    given = true;
    pool.give(memory, type);
  };
}
