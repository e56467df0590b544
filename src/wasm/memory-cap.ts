/**
 * The memory cap optimization: give a module's memory a declared maximum so
 * the engine itself refuses to grow it past the cap — on the test bed and on
 * the edge alike — instead of relying on every host to police it.
 *
 * Only memory index 0 is patched (the imported one if the module imports a
 * memory, else the first defined one): it is the memory every toolchain
 * allocates from and the one exported as "memory".
 */
import { UserError, badRequest } from '../errors.ts';
import { MAX_PAGES_32, MAX_PAGES_64, PAGE_SIZE, concat, encodeLimits, encodeSection } from './binary.ts';
import type { Limits } from './binary.ts';
import { scanModule } from './inspect.ts';
import type { MemoryLocation } from './inspect.ts';

/**
 * Returns a new array (never the input, and backed by a plain ArrayBuffer so
 * it can go straight to the WebAssembly API) whose memory 0 has a maximum of
 * at most `maxPages` 64 KiB pages: one is added when missing, a bigger one is
 * lowered, a smaller one is kept. A module without memory comes back
 * unchanged. Malformed modules throw InvalidModuleError; a module
 * whose initial memory already exceeds the cap throws a UserError.
 *
 * Only the structure is checked here, not function bodies: callers inspect
 * (and validate) the module before and after optimizing it.
 */
export function setMemoryMaximum(bytes: Uint8Array, maxPages: number): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(maxPages) || maxPages < 0) {
    throw badRequest('invalid_memory_cap', `memory cap must be a whole number of 64 KiB pages, got ${maxPages}`);
  }
  const { firstMemory } = scanModule(bytes);
  // new Uint8Array(view) copies; Buffer#slice would not (it aliases like subarray).
  if (firstMemory === undefined) return new Uint8Array(bytes);
  const capped = capLimits(firstMemory.limits, maxPages);
  if (capped.max === firstMemory.limits.max) return new Uint8Array(bytes);
  return replaceLimits(bytes, firstMemory, encodeLimits(capped));
}

function capLimits(limits: Limits, maxPages: number): Limits {
  // A cap above what the memory type can address is no cap at all; clamp it so the result stays valid.
  const ceiling = Math.min(maxPages, limits.is64 ? MAX_PAGES_64 : MAX_PAGES_32);
  if (limits.min > ceiling) {
    throw new UserError(
      'unprocessable',
      'memory_cap_too_small',
      `the module needs ${describePages(limits.min)} of memory at start, more than the memory cap of ${describePages(maxPages)}`,
    );
  }
  return { ...limits, max: Math.min(limits.max ?? ceiling, ceiling) };
}

/**
 * Splices new limits into their section. Their encoded length may differ from
 * the old one (a max added, LEB128 widths changing), so the section's size
 * prefix is re-encoded too, and may itself change length.
 */
function replaceLimits(bytes: Uint8Array, location: MemoryLocation, limits: Uint8Array): Uint8Array<ArrayBuffer> {
  const { section } = location;
  const content = concat([
    bytes.subarray(section.contentStart, location.start),
    limits,
    bytes.subarray(location.end, section.end),
  ]);
  return concat([bytes.subarray(0, section.start), encodeSection(section.id, content), bytes.subarray(section.end)]);
}

function describePages(pages: number): string {
  const mib = (pages * PAGE_SIZE) / 2 ** 20;
  return `${pages} page${pages === 1 ? '' : 's'} (${Number.isInteger(mib) ? mib : mib.toFixed(2)} MiB)`;
}
