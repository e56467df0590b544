/**
 * Low-level pieces of the WebAssembly binary format shared by the inspector and
 * the memory-cap rewriter: a bounds-checked reader, LEB128 encoding and the
 * section walk.
 *
 * Every module Kiln looks at was produced from untrusted source, so the reader
 * trusts no length or count it decodes: each is checked against the bytes that
 * are actually left before anything is allocated or sliced.
 */
import { UserError } from '../errors.ts';

/** A module that does not follow the binary format (or fails validation). */
export class InvalidModuleError extends UserError {
  constructor(
    what: string,
    /** Byte offset in the module where the problem was found, when known. */
    readonly offset: number | undefined,
  ) {
    super('unprocessable', 'invalid_wasm', `invalid WebAssembly module: ${what}${offset === undefined ? '' : ` at byte offset ${offset}`}`);
    this.name = 'InvalidModuleError';
  }
}

export const PAGE_SIZE = 65_536;
/** Validation limits on memory sizes, in 64 KiB pages. */
export const MAX_PAGES_32 = 65_536;
export const MAX_PAGES_64 = 2 ** 48;

/** The value types Node 20 can run, by their binary code (the evaluator's check and the test bed's signatures read the same table). */
export type ValueType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';
export const VALUE_TYPE_NAMES: Readonly<Record<number, ValueType>> = {
  0x7f: 'i32',
  0x7e: 'i64',
  0x7d: 'f32',
  0x7c: 'f64',
  0x7b: 'v128',
  0x70: 'funcref',
  0x6f: 'externref',
};

/** Kinds of import and export, indexed by their binary code. */
export type ExternKind = 'function' | 'table' | 'memory' | 'global' | 'tag';
export const EXTERN_KINDS: readonly ExternKind[] = ['function', 'table', 'memory', 'global', 'tag'];

export const SECTION_NAMES: Readonly<Record<number, string>> = {
  0: 'custom',
  1: 'type',
  2: 'import',
  3: 'function',
  4: 'table',
  5: 'memory',
  6: 'global',
  7: 'export',
  8: 'start',
  9: 'element',
  10: 'code',
  11: 'data',
  12: 'data count',
  13: 'tag',
};

/**
 * Position of each non-custom section in the required order. The ids are not
 * in order themselves: tag (13) sits between memory and global, and data
 * count (12) before code.
 */
const SECTION_ORDER: Readonly<Record<number, number>> = {
  1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13,
};

// fatal: a name that is not valid UTF-8 makes the module malformed.
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Cursor over `bytes[pos, end)` that throws InvalidModuleError instead of reading past `end`. */
export class Reader {
  constructor(
    readonly bytes: Uint8Array,
    public pos: number,
    readonly end: number,
    /** Names what is being read, for error messages ("import section"). */
    readonly context: string,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  fail(what: string, offset: number = this.pos): never {
    throw new InvalidModuleError(`${what} in the ${this.context}`, offset);
  }

  u8(): number {
    if (this.pos >= this.end) this.fail('unexpected end');
    return this.bytes[this.pos++] as number;
  }

  /** Unsigned LEB128 of at most `bits` bits: at most ceil(bits/7) bytes, unused high bits zero (as the spec requires). */
  uleb(bits: 32 | 64): number {
    const start = this.pos;
    const maxBytes = Math.ceil(bits / 7);
    let result = 0;
    let scale = 1;
    for (let i = 0; i < maxBytes; i++) {
      const byte = this.u8();
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (i === maxBytes - 1 && byte >> (bits - 7 * i) !== 0) this.fail(`integer too large for u${bits}`, start);
        // Above 2^53 the arithmetic stops being exact; no limit the format allows is that big.
        if (result > Number.MAX_SAFE_INTEGER) this.fail('integer too large', start);
        return result;
      }
      scale *= 128;
    }
    return this.fail(`integer representation longer than ${maxBytes} bytes`, start);
  }

  u32(): number {
    return this.uleb(32);
  }

  /**
   * A vector length, rejected early when even the smallest possible elements
   * could not fit in what is left — so a hostile count cannot make us loop or
   * allocate for long before noticing.
   */
  count(what: string, minElementSize: number): number {
    const start = this.pos;
    const n = this.u32();
    if (n * minElementSize > this.remaining) {
      this.fail(`${what} count ${n} is larger than the ${this.remaining} bytes left could hold`, start);
    }
    return n;
  }

  /** `at` is where the length was read, so the error points at the bad length. */
  take(length: number, at: number = this.pos): Uint8Array {
    if (length > this.remaining) this.fail(`length ${length} runs past the end (${this.remaining} bytes left)`, at);
    const out = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  name(): string {
    const start = this.pos;
    const raw = this.take(this.u32(), start);
    try {
      return utf8.decode(raw);
    } catch {
      return this.fail('name is not valid UTF-8', start);
    }
  }

  expectEnd(): void {
    if (this.pos !== this.end) this.fail(`${this.end - this.pos} unexpected trailing bytes`);
  }
}

/** Where one section lies in the module. */
export interface SectionSpan {
  id: number;
  /** Offset of the id byte. */
  start: number;
  /** Offset of the first content byte (after the size). */
  contentStart: number;
  /** Offset just past the content. */
  end: number;
}

export function sectionName(id: number): string {
  return `${SECTION_NAMES[id] ?? `unknown (${id})`} section`;
}

/** Checks the preamble and splits the module into sections, enforcing order and uniqueness. */
export function readSections(bytes: Uint8Array): SectionSpan[] {
  checkPreamble(bytes);
  const sections: SectionSpan[] = [];
  // Annotated so TypeScript treats top.fail() as never returning.
  const top: Reader = new Reader(bytes, 8, bytes.length, 'module');
  let lastRank = 0;
  while (top.remaining > 0) {
    const start = top.pos;
    const id = top.u8();
    const rank = id === 0 ? 0 : SECTION_ORDER[id];
    if (rank === undefined) top.fail(`unknown section id ${id}`, start);
    if (rank !== 0 && rank <= lastRank) top.fail(`${sectionName(id)} is duplicated or out of order`, start);
    if (rank !== 0) lastRank = rank;
    const size = top.u32();
    const contentStart = top.pos;
    if (size > top.remaining) {
      top.fail(`${sectionName(id)} declares ${size} bytes but only ${top.remaining} remain`, start);
    }
    top.pos += size;
    sections.push({ id, start, contentStart, end: top.pos });
  }
  return sections;
}

function checkPreamble(bytes: Uint8Array): void {
  if (bytes.length < 8) throw new InvalidModuleError(`only ${bytes.length} bytes, shorter than the 8-byte header`, 0);
  if (bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new InvalidModuleError('bad magic number (expected \\0asm)', 0);
  }
  const version = (bytes[4] as number) | ((bytes[5] as number) << 8) | ((bytes[6] as number) << 16) | ((bytes[7] as number) << 24);
  // Components share the magic but carry version 0x0d with layer 1; say so, since it is a likely mix-up.
  if (version === 0x0001000d) throw new InvalidModuleError('this is a WebAssembly component, not a core module', 4);
  if (version !== 1) throw new InvalidModuleError(`unsupported binary version ${version >>> 0}`, 4);
}

/** Memory or table limits as encoded: flags byte then min and optional max. */
export interface Limits {
  min: number;
  max?: number;
  shared: boolean;
  is64: boolean;
}

const LIMIT_HAS_MAX = 0x01;
const LIMIT_SHARED = 0x02;
const LIMIT_64 = 0x04;

export function readLimits(r: Reader, what: 'memory' | 'table'): Limits {
  const flagsAt = r.pos;
  const flags = r.u8();
  // Shared tables do not exist; higher bits (e.g. custom page sizes) are proposals Node cannot run.
  const allowed = what === 'memory' ? LIMIT_HAS_MAX | LIMIT_SHARED | LIMIT_64 : LIMIT_HAS_MAX | LIMIT_64;
  if ((flags & ~allowed) !== 0) r.fail(`unsupported ${what} limits flags 0x${flags.toString(16)}`, flagsAt);
  const is64 = (flags & LIMIT_64) !== 0;
  const bits = is64 ? 64 : 32;
  const min = r.uleb(bits);
  const max = (flags & LIMIT_HAS_MAX) !== 0 ? r.uleb(bits) : undefined;
  const shared = (flags & LIMIT_SHARED) !== 0;
  if (max !== undefined && max < min) r.fail(`${what} maximum ${max} is below its minimum ${min}`, flagsAt);
  if (what === 'memory') checkMemoryLimits(r, { min, max, shared, is64 }, flagsAt);
  return { min, max, shared, is64 };
}

function checkMemoryLimits(r: Reader, limits: Limits, at: number): void {
  const cap = limits.is64 ? MAX_PAGES_64 : MAX_PAGES_32;
  if (limits.min > cap || (limits.max ?? 0) > cap) r.fail(`memory size exceeds ${cap} pages`, at);
  if (limits.shared && limits.max === undefined) r.fail('shared memory without a maximum', at);
}

export function encodeLimits(limits: Limits): Uint8Array {
  const flags = (limits.max !== undefined ? LIMIT_HAS_MAX : 0) | (limits.shared ? LIMIT_SHARED : 0) | (limits.is64 ? LIMIT_64 : 0);
  const parts = [Uint8Array.of(flags), encodeULEB(limits.min)];
  if (limits.max !== undefined) parts.push(encodeULEB(limits.max));
  return concat(parts);
}

/** Minimal unsigned LEB128; division instead of shifts so values above 2^32 (memory64) stay exact. */
export function encodeULEB(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`cannot LEB128-encode ${value}`);
  const out: number[] = [];
  let rest = value;
  do {
    const low = rest % 128;
    rest = Math.floor(rest / 128);
    out.push(rest === 0 ? low : low | 0x80);
  } while (rest !== 0);
  return Uint8Array.from(out);
}

/** A section as encoded: its id, its content's size, its content. */
export function encodeSection(id: number, content: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat([Uint8Array.of(id), encodeULEB(content.length), content]);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
