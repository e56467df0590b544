import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import type { OptimizeOptions } from './options.ts';
import type { AppKind } from '../wasm/kind.ts';
import { WASM_OPT } from './wasm-opt.ts';
import { findWizerDirectory } from './wizer.ts';

/**
 * Optimize results reused by input hash (decision 0019). The stage is a
 * function of its inputs: the module's bytes, the kind, the options and the
 * tools (wasm-opt, Wizer, the node that measures start-up). A rebuild of
 * unchanged code yields the same module, so its optimization is looked up
 * here instead of run again: a warm build's optimize stage costs a hash.
 *
 * Held in the worker's memory (lost on restart, which only costs one run),
 * bounded by OPTIMIZE_CACHE_MAX_BYTES, least recently used out first. Keys
 * carry the owner's cache namespace, as the dependency cache does, so one
 * owner can never tell from a fast build that another built the same module.
 * Only clean results are kept: a step that failed, or a start-up that could
 * not be measured, may have been the platform's fault and is retried next time.
 */
export interface CachedOptimize<T> {
  optimized?: Uint8Array;
  details: T;
}

/** Default bound of the bytes (optimized modules) the cache holds. */
export const OPTIMIZE_CACHE_MAX_BYTES = 64 * 1024 ** 2;
/** Bumped whenever the stage's logic changes what it produces. */
const FORMAT = 'kiln-optimize-1';

export interface OptimizeCacheKeyInput {
  original: Uint8Array;
  kind: AppKind;
  options: OptimizeOptions;
  measure: boolean;
  wizerDirectory?: string | null;
  /** The owner's opaque cache namespace. */
  namespace: string;
}

export class OptimizeResultCache<T> {
  private readonly entries = new Map<string, { value: CachedOptimize<T>; bytes: number }>();
  private bytes = 0;

  constructor(readonly maxBytes = OPTIMIZE_CACHE_MAX_BYTES) {}

  static key(input: OptimizeCacheKeyInput): string {
    const options = Object.entries(input.options).sort(([a], [b]) => a.localeCompare(b));
    return createHash('sha256')
      .update(`${FORMAT}\0${input.namespace}\0${input.kind}\0${JSON.stringify(options)}\0${input.measure}\0${toolFingerprint(input.wizerDirectory)}\0`)
      .update(input.original)
      .digest('hex');
  }

  get(key: string): CachedOptimize<T> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    // Re-inserting moves it to the end: Map order is the recency order.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return { optimized: entry.value.optimized && Uint8Array.from(entry.value.optimized), details: structuredClone(entry.value.details) };
  }

  set(key: string, value: CachedOptimize<T>): void {
    const bytes = (value.optimized?.length ?? 0) + 1024;
    if (bytes > this.maxBytes) return;
    const previous = this.entries.get(key);
    if (previous) {
      this.entries.delete(key);
      this.bytes -= previous.bytes;
    }
    this.entries.set(key, { value: { optimized: value.optimized && Uint8Array.from(value.optimized), details: structuredClone(value.details) }, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.bytes;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}

/** Which tools would run: an upgraded wasm-opt or Wizer (new size or mtime) or node makes a new key. */
function toolFingerprint(wizerDirectory: string | null | undefined): string {
  const stamp = (path: string): string => {
    try {
      const stats = statSync(path);
      return `${path}:${stats.size}:${stats.mtimeMs}`;
    } catch {
      return `${path}:absent`;
    }
  };
  const wizer = wizerDirectory === undefined ? findWizerDirectory() : wizerDirectory;
  return [stamp(WASM_OPT), wizer == null ? 'wizer:none' : stamp(wizer), process.version].join('|');
}
