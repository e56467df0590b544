/**
 * Function signatures of a module's imports and exports.
 *
 * The JS API tells us import and export names but not their types, and the
 * test bed needs the types twice: a stub for an import we do not implement
 * must return a value of the declared result type (a JS number where the
 * module expects an i64 throws a TypeError at call time), and a known host
 * function or callback declared with the wrong type must be reported as
 * such instead of silently receiving garbage arguments.
 *
 * Runs on modules the evaluator already inspected, but trusts nothing: the
 * shared Reader bounds every length and count.
 */
import { EXTERN_KINDS, Reader, VALUE_TYPE_NAMES, readLimits, readSections, sectionName, type ValueType } from '../wasm/binary.ts';

export type { ValueType };

export interface FunctionType {
  params: ValueType[];
  results: ValueType[];
}

export interface FunctionImport {
  module: string;
  name: string;
  type: FunctionType;
}

export interface ModuleSignatures {
  /** Function imports, in import order. */
  imports: FunctionImport[];
  /** Non-function imports (memories, tables, globals, tags): the test bed provides none. */
  otherImports: Array<{ module: string; name: string; kind: string }>;
  /** Exported functions by export name. */
  exports: Map<string, FunctionType>;
}

const FUNC_TYPE_FORM = 0x60;
const EXTERN_FUNCTION = 0;
const EXTERN_TABLE = 1;
const EXTERN_MEMORY = 2;
const EXTERN_GLOBAL = 3;
const EXTERN_TAG = 4;

interface ParseState {
  types: FunctionType[];
  /** Type index of every function in the function index space (imports first). */
  functionTypes: number[];
  result: ModuleSignatures;
  exportedFunctions: Array<{ name: string; index: number }>;
}

export function readSignatures(bytes: Uint8Array): ModuleSignatures {
  const state: ParseState = {
    types: [],
    functionTypes: [],
    result: { imports: [], otherImports: [], exports: new Map() },
    exportedFunctions: [],
  };
  for (const section of readSections(bytes)) {
    const r = new Reader(bytes, section.contentStart, section.end, sectionName(section.id));
    if (section.id === 1) readTypes(r, state);
    else if (section.id === 2) readImports(r, state);
    else if (section.id === 3) readFunctions(r, state);
    else if (section.id === 7) readExports(r, state);
  }
  for (const { name, index } of state.exportedFunctions) {
    const type = typeOf(state, index);
    if (type !== undefined) state.result.exports.set(name, type);
  }
  return state.result;
}

function typeOf(state: ParseState, functionIndex: number): FunctionType | undefined {
  const typeIndex = state.functionTypes[functionIndex];
  return typeIndex === undefined ? undefined : state.types[typeIndex];
}

function readValueType(r: Reader): ValueType {
  const at = r.pos;
  const code = r.u8();
  return VALUE_TYPE_NAMES[code] ?? r.fail(`unknown value type 0x${code.toString(16)}`, at);
}

function readTypes(r: Reader, state: ParseState): void {
  const n = r.count('type', 3);
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    if (r.u8() !== FUNC_TYPE_FORM) r.fail('type is not a function type (GC proposal types are not supported)', at);
    const params = Array.from({ length: r.count('parameter', 1) }, () => readValueType(r));
    const results = Array.from({ length: r.count('result', 1) }, () => readValueType(r));
    state.types.push({ params, results });
  }
}

function readImports(r: Reader, state: ParseState): void {
  const n = r.count('import', 4);
  for (let i = 0; i < n; i++) {
    const module = r.name();
    const name = r.name();
    const kind = r.u8();
    if (kind === EXTERN_FUNCTION) {
      const typeIndex = r.u32();
      const type = state.types[typeIndex] ?? r.fail(`import ${module}.${name} refers to missing type ${typeIndex}`);
      state.functionTypes.push(typeIndex);
      state.result.imports.push({ module, name, type });
      continue;
    }
    skipImportDescriptor(r, kind);
    state.result.otherImports.push({ module, name, kind: EXTERN_KINDS[kind] ?? 'unknown' });
  }
}

function skipImportDescriptor(r: Reader, kind: number): void {
  switch (kind) {
    case EXTERN_TABLE:
      r.u8();
      readLimits(r, 'table');
      return;
    case EXTERN_MEMORY:
      readLimits(r, 'memory');
      return;
    case EXTERN_GLOBAL:
      readValueType(r);
      r.u8();
      return;
    case EXTERN_TAG:
      r.u8();
      r.u32();
      return;
    default:
      r.fail(`unknown import kind ${kind}`);
  }
}

function readFunctions(r: Reader, state: ParseState): void {
  const n = r.count('function', 1);
  for (let i = 0; i < n; i++) state.functionTypes.push(r.u32());
}

function readExports(r: Reader, state: ParseState): void {
  const n = r.count('export', 3);
  for (let i = 0; i < n; i++) {
    const name = r.name();
    const kind = r.u8();
    const index = r.u32();
    if (kind === EXTERN_FUNCTION) state.exportedFunctions.push({ name, index });
  }
}

export function formatType(type: FunctionType): string {
  return `(${type.params.join(', ')}) -> ${type.results.length === 0 ? '()' : type.results.join(', ')}`;
}

export function sameType(a: FunctionType, b: FunctionType): boolean {
  return a.params.length === b.params.length && a.results.length === b.results.length && a.params.every((p, i) => p === b.params[i]) && a.results.every((p, i) => p === b.results[i]);
}

/** Shorthand for signature tables: `sig(3)` is (i32, i32, i32) -> i32. */
export function sig(params: number | ValueType[], results: ValueType[] = ['i32']): FunctionType {
  return { params: typeof params === 'number' ? Array<ValueType>(params).fill('i32') : params, results };
}
