/**
 * Turns a module's own memory into an imported one with the same limits, so
 * the host can hand each instance a memory it already has (the test bed's
 * memory pool, decision 0049).
 *
 * Why: on the machines Kiln runs on, a fresh WebAssembly memory is cheap to
 * reserve but each page's first touch is a page fault the hypervisor must
 * back (~10–100 µs here), so instantiating a small filter cost ~25 µs
 * without data segments and ~110 µs with one. A memory that was used before
 * and zeroed again has its pages resident.
 *
 * The rewrite changes nothing the guest can observe: memory index 0 is still
 * memory 0 (imports come first in the index space and the module had no
 * imported memory), its export, data segments and instructions refer to it
 * by that index, and the host supplies exactly the limits the module
 * declared. Function, table and global index spaces are untouched (a memory
 * import adds no function).
 */
import { Reader, concat, encodeSection, encodeULEB, readSections } from './binary.ts';
import type { SectionSpan } from './binary.ts';
import { scanModule } from './inspect.ts';

/** What the host must supply: a memory of exactly `initial` pages, with this maximum. */
export interface MemoryType {
  initial: number;
  maximum?: number;
}

export interface ImportedMemory {
  /** The rewritten module (a new array). */
  bytes: Uint8Array<ArrayBuffer>;
  memory: MemoryType;
}

export interface ImportName {
  module: string;
  name: string;
}

const IMPORT_SECTION = 2;
const TYPE_SECTION = 1;
const MEMORY_SECTION = 5;
const MEMORY_KIND = 0x02;
const utf8 = new TextEncoder();

/**
 * The module with its one defined memory imported as `from`, or undefined
 * when there is nothing to rewrite or the memory is not a plain one: no
 * memory, an imported memory already, several memories, a shared or a
 * 64-bit memory. Those stay as they are (an instance then makes its own).
 * Malformed modules throw InvalidModuleError (from the section scan).
 */
export function importOwnMemory(bytes: Uint8Array, from: ImportName): ImportedMemory | undefined {
  const scan = scanModule(bytes);
  const [only, ...others] = scan.info.memories;
  const location = scan.firstMemory;
  if (!only || others.length > 0 || only.imported || only.shared || only.memory64 || !location) return undefined;
  const sections = readSections(bytes);
  const memorySection = sections.find((section) => section.id === MEMORY_SECTION);
  if (!memorySection || new Reader(bytes, memorySection.contentStart, memorySection.end, 'memory section').u32() !== 1) return undefined;
  const entry = concat([encodeName(from.module), encodeName(from.name), Uint8Array.of(MEMORY_KIND), bytes.subarray(location.start, location.end)]);
  const memory: MemoryType = { initial: only.min, ...(only.max === undefined ? {} : { maximum: only.max }) };
  return { bytes: concat(rewriteSections(bytes, sections, entry)), memory };
}

/** Every section in order, the import section given the new entry (or made, after the types), the memory section left out. */
function rewriteSections(bytes: Uint8Array, sections: readonly SectionSpan[], entry: Uint8Array): Uint8Array[] {
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  const hasImports = sections.some((section) => section.id === IMPORT_SECTION);
  const lastType = sections.reduce((last, span, index) => (span.id === TYPE_SECTION ? index : last), -1);
  // Without an import section, the new one goes right after the type section, or first when there is none.
  if (!hasImports && lastType === -1) parts.push(encodeSection(IMPORT_SECTION, concat([encodeULEB(1), entry])));
  sections.forEach((span, index) => {
    if (span.id === MEMORY_SECTION) return;
    if (span.id === IMPORT_SECTION) {
      parts.push(withEntry(bytes, span, entry));
      return;
    }
    parts.push(bytes.subarray(span.start, span.end));
    if (!hasImports && index === lastType) parts.push(encodeSection(IMPORT_SECTION, concat([encodeULEB(1), entry])));
  });
  return parts;
}

function withEntry(bytes: Uint8Array, span: SectionSpan, entry: Uint8Array): Uint8Array {
  const reader = new Reader(bytes, span.contentStart, span.end, 'import section');
  const count = reader.u32();
  return encodeSection(IMPORT_SECTION, concat([encodeULEB(count + 1), bytes.subarray(reader.pos, span.end), entry]));
}

function encodeName(name: string): Uint8Array {
  const encoded = utf8.encode(name);
  return concat([encodeULEB(encoded.length), encoded]);
}
