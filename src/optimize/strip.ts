/**
 * The strip step: drops the custom sections a module does not need to run.
 *
 * It is a copy of the module's bytes minus whole sections, done by our own
 * parser (src/wasm/binary.ts, bounded and strict) — nothing is executed, so
 * unlike wasm-opt and Wizer it needs no sandbox, and it costs microseconds
 * instead of a sandbox start. Code and data sections are copied untouched.
 */
import { Reader, concat, readSections } from '../wasm/binary.ts';

/**
 * Debug info (DWARF `.debug_*`, `name`, source maps) and toolchain metadata
 * (`producers`). Rust's release builds carry the standard library's DWARF,
 * often 90 % of the file. `target_features` stays: wasm-opt reads it to know
 * which features the module may use.
 */
export function isStrippable(name: string): boolean {
  return name.startsWith('.debug_') || STRIPPED_NAMES.has(name);
}

const STRIPPED_NAMES: ReadonlySet<string> = new Set(['name', 'producers', 'sourceMappingURL', 'external_debug_info', 'reloc..debug_info']);

export interface StripResult {
  bytes: Uint8Array<ArrayBuffer>;
  /** Names of the sections removed, in module order (may repeat). */
  removed: string[];
}

/** Throws InvalidModuleError (a UserError) when the module is malformed. */
export function stripCustomSections(bytes: Uint8Array): StripResult {
  const kept: Uint8Array[] = [bytes.subarray(0, 8)];
  const removed: string[] = [];
  for (const section of readSections(bytes)) {
    if (section.id === 0) {
      const name = new Reader(bytes, section.contentStart, section.end, 'custom section').name();
      if (isStrippable(name)) {
        removed.push(name);
        continue;
      }
    }
    kept.push(bytes.subarray(section.start, section.end));
  }
  return { bytes: concat(kept), removed };
}
