/**
 * Reads what Kiln needs to know about a produced module — its imports,
 * exports, memories and custom sections — without instantiating or running
 * it. The evaluator uses this to decide whether a build may succeed, so the
 * parser is strict: anything malformed is an InvalidModuleError (the user's
 * fault, 422), never a crash.
 *
 * Only the sections that carry that information are decoded; the rest are
 * bounded and skipped, and WebAssembly.validate (on by default) checks them.
 */
import { errorMessage } from '../errors.ts';
import { EXTERN_KINDS, InvalidModuleError, Reader, VALUE_TYPE_NAMES, readLimits, readSections, sectionName } from './binary.ts';
import type { ExternKind, Limits, SectionSpan } from './binary.ts';

export { InvalidModuleError } from './binary.ts';

export type { ExternKind };

export interface ImportInfo {
  module: string;
  name: string;
  kind: ExternKind;
}

export interface ExportInfo {
  name: string;
  kind: ExternKind;
  /** Index in the index space of `kind` (imports first, then definitions). */
  index: number;
}

/** Sizes are in 64 KiB pages. */
export interface MemoryInfo {
  min: number;
  max?: number;
  memory64: boolean;
  shared: boolean;
  imported: boolean;
}

export interface ModuleInfo {
  imports: ImportInfo[];
  exports: ExportInfo[];
  /** In memory index order: imported memories first, then defined ones. */
  memories: MemoryInfo[];
  /** Names of custom sections in the order they appear (may repeat). */
  customSections: string[];
  /** Module size in bytes. */
  size: number;
}

export interface InspectOptions {
  /** Also run the engine's full validation (function bodies, indices, types). Default true. */
  validate?: boolean;
}

/** Where the limits of memory 0 are encoded, for rewriting them in place. */
export interface MemoryLocation {
  section: SectionSpan;
  /** Byte range of the limits (flags, min, max) inside the module. */
  start: number;
  end: number;
  limits: Limits;
}

/** Where a table's type (element type, then limits) is encoded, for capping it. */
export interface TableLocation {
  section: SectionSpan;
  /** Byte range of the table type (element type byte, flags, min, max). */
  start: number;
  end: number;
  refType: number;
  limits: Limits;
  imported: boolean;
}

/**
 * Entry counts of the sections whose size drives the cost of compiling and
 * instantiating a module (what V8 allocates before any guest code runs).
 */
export interface SectionCounts {
  types: number;
  functions: number;
  globals: number;
  elementSegments: number;
  dataSegments: number;
}

export interface ModuleScan {
  info: ModuleInfo;
  firstMemory?: MemoryLocation;
  tables: TableLocation[];
  counts: SectionCounts;
}

const FUNCREF = 0x70;
const EXTERNREF = 0x6f;

// Smallest encodings, used to bound counts: import = 2 empty names + kind + 1-byte
// descriptor; export = empty name + kind + index; memory = flags + min.
const MIN_IMPORT_SIZE = 4;
const MIN_EXPORT_SIZE = 3;
const MIN_MEMORY_SIZE = 2;

export function inspectModule(bytes: Uint8Array, options: InspectOptions = {}): ModuleInfo {
  const { info } = scanModule(bytes);
  if (options.validate ?? true) validateWithEngine(bytes);
  return info;
}

/** The structural parse behind inspectModule, also reporting where memory 0's limits are. */
export function scanModule(bytes: Uint8Array): ModuleScan {
  const scan: ModuleScan = {
    info: { imports: [], exports: [], memories: [], customSections: [], size: bytes.length },
    tables: [],
    counts: { types: 0, functions: 0, globals: 0, elementSegments: 0, dataSegments: 0 },
  };
  for (const section of readSections(bytes)) {
    const r = new Reader(bytes, section.contentStart, section.end, sectionName(section.id));
    if (section.id === 0) {
      // Only the name is structured; the payload after it is opaque.
      scan.info.customSections.push(r.name());
      continue;
    }
    const counted = COUNTED_SECTIONS[section.id];
    if (counted !== undefined) {
      // Only the leading count is read; the engine validates the entries.
      scan.counts[counted] = new Reader(bytes, section.contentStart, section.end, sectionName(section.id)).u32();
      continue;
    }
    const read = SECTION_READERS[section.id];
    if (read === undefined) continue;
    read(r, section, scan);
    r.expectEnd();
  }
  return scan;
}

type SectionReader = (r: Reader, section: SectionSpan, scan: ModuleScan) => void;

const COUNTED_SECTIONS: Readonly<Record<number, keyof SectionCounts>> = {
  1: 'types',
  3: 'functions',
  6: 'globals',
  9: 'elementSegments',
  11: 'dataSegments',
};

const SECTION_READERS: Readonly<Record<number, SectionReader>> = {
  2: readImports,
  4: readTables,
  5: readMemories,
  7: (r, _section, scan) => readExports(r, scan.info),
};

function readImports(r: Reader, section: SectionSpan, scan: ModuleScan): void {
  const n = r.count('import', MIN_IMPORT_SIZE);
  for (let i = 0; i < n; i++) {
    const module = r.name();
    const name = r.name();
    const kind = readExternKind(r);
    if (kind === 'memory') addMemory(r, section, scan, true);
    else if (kind === 'table') addTable(r, section, scan, true);
    else readImportDescriptor(r, kind);
    scan.info.imports.push({ module, name, kind });
  }
}

function readImportDescriptor(r: Reader, kind: Exclude<ExternKind, 'memory' | 'table'>): void {
  switch (kind) {
    case 'function':
      r.u32(); // type index
      return;
    case 'global':
      readGlobalType(r);
      return;
    case 'tag': {
      const at = r.pos;
      if (r.u8() !== 0) r.fail('tag attribute must be 0 (exception)', at);
      r.u32(); // type index
      return;
    }
  }
}

// Element type byte + limits flags + min.
const MIN_TABLE_SIZE = 3;

function readTables(r: Reader, section: SectionSpan, scan: ModuleScan): void {
  const n = r.count('table', MIN_TABLE_SIZE);
  for (let i = 0; i < n; i++) addTable(r, section, scan, false);
}

function addTable(r: Reader, section: SectionSpan, scan: ModuleScan, imported: boolean): void {
  const start = r.pos;
  const refType = readRefType(r);
  const limits = readLimits(r, 'table');
  scan.tables.push({ section, start, end: r.pos, refType, limits, imported });
}

function readMemories(r: Reader, section: SectionSpan, scan: ModuleScan): void {
  const n = r.count('memory', MIN_MEMORY_SIZE);
  for (let i = 0; i < n; i++) addMemory(r, section, scan, false);
}

function addMemory(r: Reader, section: SectionSpan, scan: ModuleScan, imported: boolean): void {
  const start = r.pos;
  const limits = readLimits(r, 'memory');
  // Spread rather than `max: undefined`, so an absent maximum is absent (not an undefined key).
  const max = limits.max === undefined ? {} : { max: limits.max };
  scan.info.memories.push({ min: limits.min, ...max, memory64: limits.is64, shared: limits.shared, imported });
  scan.firstMemory ??= { section, start, end: r.pos, limits };
}

function readExports(r: Reader, info: ModuleInfo): void {
  const n = r.count('export', MIN_EXPORT_SIZE);
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    const name = r.name();
    // Duplicates are invalid, and would make "does it export X?" ambiguous for the kind checks.
    if (seen.has(name)) r.fail(`duplicate export name ${JSON.stringify(name)}`, at);
    seen.add(name);
    const kind = readExternKind(r);
    info.exports.push({ name, kind, index: r.u32() });
  }
}

function readExternKind(r: Reader): ExternKind {
  const at = r.pos;
  const code = r.u8();
  return EXTERN_KINDS[code] ?? r.fail(`unknown external kind 0x${code.toString(16)}`, at);
}

function readRefType(r: Reader): number {
  const at = r.pos;
  const type = r.u8();
  if (type !== FUNCREF && type !== EXTERNREF) r.fail(`unsupported table element type 0x${type.toString(16)}`, at);
  return type;
}

function readGlobalType(r: Reader): void {
  const at = r.pos;
  const type = r.u8();
  if (VALUE_TYPE_NAMES[type] === undefined) r.fail(`unsupported value type 0x${type.toString(16)}`, at);
  const mutAt = r.pos;
  if (r.u8() > 1) r.fail('global mutability must be 0 or 1', mutAt);
}

/**
 * The engine checks what the parser skips (code, types, indices). It only
 * answers yes/no, so on "no" we compile — which never runs module code — to
 * get V8's message and offset.
 */
function validateWithEngine(bytes: Uint8Array): void {
  const view = engineView(bytes);
  if (WebAssembly.validate(view)) return;
  throw engineError(view);
}

/** The engine takes views of plain ArrayBuffers only; copy in the unusual shared-buffer case. */
function engineView(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const { buffer } = bytes;
  return buffer instanceof ArrayBuffer ? new Uint8Array(buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
}

function engineError(bytes: Uint8Array<ArrayBuffer>): InvalidModuleError {
  try {
    new WebAssembly.Module(bytes);
  } catch (error) {
    const message = errorMessage(error).replace(/^WebAssembly\.Module\(\):\s*/, '');
    const at = /\s*@\+(\d+)\s*$/.exec(message);
    return at ? new InvalidModuleError(message.slice(0, at.index), Number(at[1])) : new InvalidModuleError(message, undefined);
  }
  return new InvalidModuleError('rejected by WebAssembly.validate', undefined);
}
