/**
 * Reads the outer import and export names of a WebAssembly component
 * (component model binary format, layer 1, version 0x0d) without
 * instantiating it. Like inspect.ts for core modules, the reader trusts no
 * length or count and reports anything malformed as an InvalidModuleError.
 *
 * Only what the kind rules need is decoded: the preamble, the section walk,
 * and the top-level import (10) and export (11) sections. Nested components
 * and core modules (sections 1 and 4) are skipped whole: their imports are
 * satisfied inside the component and never reach the host. The engine that
 * runs the component (jco at build time) validates the rest; this reader is
 * deliberately a pure function so it can run wherever the evaluator runs
 * (API process or a worker thread).
 */
import { InvalidModuleError, Reader } from './binary.ts';

/** What an import or export is, from its extern descriptor / sort. */
export type ComponentExternKind = 'core-module' | 'func' | 'value' | 'type' | 'component' | 'instance';

export interface ComponentExtern {
  /** The full name as written, e.g. `wasi:http/incoming-handler@0.2.10`. */
  name: string;
  kind: ComponentExternKind;
}

export interface ComponentInfo {
  imports: ComponentExtern[];
  exports: ComponentExtern[];
  /** Size in bytes. */
  size: number;
}

/** Binary preamble: magic, version 0x0d, layer 1 (a core module has version 1, layer 0). */
const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const COMPONENT_VERSION = 0x0d;
const COMPONENT_LAYER = 0x01;
const SECTION_IMPORT = 10;
const SECTION_EXPORT = 11;
/** Highest section id the component format defines (12: value). */
const MAX_SECTION_ID = 12;

/** Descriptor byte of an externdesc → kind. */
const EXTERN_DESC: Readonly<Record<number, ComponentExternKind>> = {
  0x00: 'core-module',
  0x01: 'func',
  0x02: 'value',
  0x03: 'type',
  0x04: 'component',
  0x05: 'instance',
};
/** Sort byte of a sortidx → kind (0x00 introduces a core sort). */
const SORTS: Readonly<Record<number, ComponentExternKind>> = {
  0x01: 'func',
  0x02: 'value',
  0x03: 'type',
  0x04: 'component',
  0x05: 'instance',
};
const CORE_MODULE_SORT = 0x11;

/** Smallest import: name tag + empty name + descriptor + index. */
const MIN_IMPORT_SIZE = 4;
/** Smallest export: name tag + empty name + sort + index + no-descriptor flag. */
const MIN_EXPORT_SIZE = 5;

export function isComponentBinary(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && MAGIC.every((b, i) => bytes[i] === b) && bytes[4] === COMPONENT_VERSION && bytes[5] === 0 && bytes[6] === COMPONENT_LAYER && bytes[7] === 0;
}

export function isCoreModuleBinary(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && MAGIC.every((b, i) => bytes[i] === b) && bytes[4] === 1 && bytes[5] === 0 && bytes[6] === 0 && bytes[7] === 0;
}

export function inspectComponent(bytes: Uint8Array): ComponentInfo {
  checkPreamble(bytes);
  const imports: ComponentExtern[] = [];
  const exports: ComponentExtern[] = [];
  const top: Reader = new Reader(bytes, 8, bytes.length, 'component');
  while (top.remaining > 0) {
    const start = top.pos;
    const id = top.u8();
    if (id > MAX_SECTION_ID) top.fail(`unknown component section id ${id}`, start);
    const size = top.u32();
    if (size > top.remaining) top.fail(`section ${id} declares ${size} bytes but only ${top.remaining} remain`, start);
    const content = new Reader(bytes, top.pos, top.pos + size, id === SECTION_IMPORT ? 'component import section' : 'component export section');
    if (id === SECTION_IMPORT) imports.push(...readImports(content));
    if (id === SECTION_EXPORT) exports.push(...readExports(content));
    top.pos += size;
  }
  return { imports, exports, size: bytes.length };
}

function checkPreamble(bytes: Uint8Array): void {
  if (bytes.length < 8) throw new InvalidModuleError(`only ${bytes.length} bytes, shorter than the 8-byte header`, 0);
  if (!MAGIC.every((b, i) => bytes[i] === b)) throw new InvalidModuleError('bad magic number (expected \\0asm)', 0);
  if (isCoreModuleBinary(bytes)) throw new InvalidModuleError('this is a core WebAssembly module, not a component', 4);
  if (!isComponentBinary(bytes)) {
    throw new InvalidModuleError(`unsupported version/layer bytes ${[...bytes.subarray(4, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ')} (a component has 0d 00 01 00)`, 4);
  }
}

function readImports(r: Reader): ComponentExtern[] {
  const count = r.count('import', MIN_IMPORT_SIZE);
  const found: ComponentExtern[] = [];
  for (let i = 0; i < count; i++) {
    const name = externName(r);
    found.push({ name, kind: externDesc(r) });
  }
  r.expectEnd();
  return found;
}

function readExports(r: Reader): ComponentExtern[] {
  const count = r.count('export', MIN_EXPORT_SIZE);
  const found: ComponentExtern[] = [];
  for (let i = 0; i < count; i++) {
    const name = externName(r);
    const kind = sortIdx(r);
    const hasDescriptor = r.u8();
    if (hasDescriptor === 0x01) externDesc(r);
    else if (hasDescriptor !== 0x00) r.fail(`bad export descriptor flag 0x${hasDescriptor.toString(16)}`, r.pos - 1);
    found.push({ name, kind });
  }
  r.expectEnd();
  return found;
}

/** `0x00 name` or `0x01 name versionsuffix` (the newer encoding that carries the version apart). */
function externName(r: Reader): string {
  const tagAt = r.pos;
  const tag = r.u8();
  if (tag === 0x00) return r.name();
  if (tag === 0x01) {
    const name = r.name();
    const version = r.name();
    return `${name}@${version}`;
  }
  return r.fail(`bad name tag 0x${tag.toString(16)}`, tagAt);
}

function externDesc(r: Reader): ComponentExternKind {
  const at = r.pos;
  const tag = r.u8();
  const kind = EXTERN_DESC[tag];
  if (kind === undefined) return r.fail(`unknown extern descriptor 0x${tag.toString(16)}`, at);
  if (tag === 0x00) {
    const sub = r.u8();
    if (sub !== CORE_MODULE_SORT) r.fail(`bad core module descriptor 0x${sub.toString(16)}`, at);
    r.u32();
  } else if (tag === 0x02 || tag === 0x03) {
    boundOf(r, tag);
  } else {
    r.u32();
  }
  return kind;
}

/** value bound: 0x00 valueidx | 0x01 valtype; type bound: 0x00 typeidx (eq) | 0x01 (sub resource). */
function boundOf(r: Reader, tag: number): void {
  const at = r.pos;
  const bound = r.u8();
  if (bound === 0x00) r.u32();
  else if (bound === 0x01) {
    // A valtype is one byte (a primitive) or a non-negative s33 type index;
    // either way a LEB128 of at most 5 bytes, which u32 bounds-checks.
    if (tag === 0x02) r.u32();
  } else r.fail(`bad ${tag === 0x02 ? 'value' : 'type'} bound 0x${bound.toString(16)}`, at);
}

function sortIdx(r: Reader): ComponentExternKind {
  const at = r.pos;
  const sort = r.u8();
  if (sort === 0x00) {
    const core = r.u8();
    r.u32();
    if (core !== CORE_MODULE_SORT) r.fail(`export of core sort 0x${core.toString(16)} is not allowed at the component level`, at);
    return 'core-module';
  }
  const kind = SORTS[sort];
  if (kind === undefined) return r.fail(`unknown sort 0x${sort.toString(16)}`, at);
  r.u32();
  return kind;
}
