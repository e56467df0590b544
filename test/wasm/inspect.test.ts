import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UserError } from '../../src/errors.ts';
import { InvalidModuleError, inspectModule } from '../../src/wasm/inspect.ts';
import type { ExternKind, ModuleInfo } from '../../src/wasm/inspect.ts';
import { checkKind, detectKind } from '../../src/wasm/kind.ts';
import { setMemoryMaximum } from '../../src/wasm/memory-cap.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

// ---------------------------------------------------------------------------
// A tiny module builder, so tests need no toolchain: every defined function is
// `() -> ()` with an empty body, which is all the inspector and the kind
// checks care about.
// ---------------------------------------------------------------------------

interface LimitsSpec {
  min: number;
  max?: number;
  shared?: boolean;
  memory64?: boolean;
}

type ImportSpec =
  | { module: string; name: string; kind: 'function' | 'table' | 'global' | 'tag' }
  | { module: string; name: string; kind: 'memory'; limits: LimitsSpec };

interface ExportSpec {
  name: string;
  kind: ExternKind;
  index: number;
}

interface ModuleSpec {
  imports?: ImportSpec[];
  /** Number of defined functions; their indices follow the imported functions'. */
  functions?: number;
  memories?: LimitsSpec[];
  exports?: ExportSpec[];
  customs?: string[];
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const EXTERN_CODES: Record<ExternKind, number> = { function: 0, table: 1, memory: 2, global: 3, tag: 4 };

function uleb(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    const low = rest % 128;
    rest = Math.floor(rest / 128);
    out.push(rest === 0 ? low : low | 0x80);
  } while (rest !== 0);
  return out;
}

function str(text: string): number[] {
  const raw = [...new TextEncoder().encode(text)];
  return [...uleb(raw.length), ...raw];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function limits(spec: LimitsSpec): number[] {
  const flags = (spec.max !== undefined ? 1 : 0) | (spec.shared ? 2 : 0) | (spec.memory64 ? 4 : 0);
  return [flags, ...uleb(spec.min), ...(spec.max !== undefined ? uleb(spec.max) : [])];
}

function importEntry(spec: ImportSpec): number[] {
  const head = [...str(spec.module), ...str(spec.name), EXTERN_CODES[spec.kind]];
  switch (spec.kind) {
    case 'function':
      return [...head, 0];
    case 'table':
      return [...head, 0x70, 0x00, 0x01];
    case 'memory':
      return [...head, ...limits(spec.limits)];
    case 'global':
      return [...head, 0x7f, 0x00];
    case 'tag':
      return [...head, 0x00, 0];
  }
}

function buildModule(spec: ModuleSpec): Uint8Array<ArrayBuffer> {
  const functions = spec.functions ?? 0;
  const bytes = [...HEADER, ...section(1, vec([[0x60, 0x00, 0x00]]))];
  if (spec.imports) bytes.push(...section(2, vec(spec.imports.map(importEntry))));
  if (functions > 0) bytes.push(...section(3, vec(Array.from({ length: functions }, () => [0]))));
  if (spec.memories) bytes.push(...section(5, vec(spec.memories.map(limits))));
  if (spec.exports) {
    bytes.push(...section(7, vec(spec.exports.map((e) => [...str(e.name), EXTERN_CODES[e.kind], ...uleb(e.index)]))));
  }
  // Each body: size 2, no locals, `end`.
  if (functions > 0) bytes.push(...section(10, vec(Array.from({ length: functions }, () => [0x02, 0x00, 0x0b]))));
  for (const name of spec.customs ?? []) bytes.push(...section(0, [...str(name), 0xde, 0xad]));
  return Uint8Array.from(bytes);
}

/** Exports named functions, numbered from `first` (after the imported functions). */
function functionExports(names: string[], first: number): ExportSpec[] {
  return names.map((name, i) => ({ name, kind: 'function', index: first + i }));
}

function importedFunctions(imports: ImportSpec[]): number {
  return imports.filter((i) => i.kind === 'function').length;
}

const MEMORY_EXPORT: ExportSpec = { name: 'memory', kind: 'memory', index: 0 };

function filterModule(options: { exports?: string[]; imports?: ImportSpec[]; memory?: boolean } = {}): Uint8Array {
  const imports = options.imports ?? [
    { module: 'env', name: 'proxy_log', kind: 'function' },
    { module: 'wasi_snapshot_preview1', name: 'fd_write', kind: 'function' },
  ];
  const names = options.exports ?? ['proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'proxy_on_context_create', 'proxy_on_request_headers', '_initialize'];
  const memory = options.memory ?? true;
  return buildModule({
    imports,
    functions: names.length,
    memories: memory ? [{ min: 1 }] : undefined,
    exports: [...functionExports(names, importedFunctions(imports)), ...(memory ? [MEMORY_EXPORT] : [])],
  });
}

function commandModule(options: { exports?: string[]; imports?: ImportSpec[] } = {}): Uint8Array {
  const imports = options.imports ?? [
    { module: 'wasi_snapshot_preview1', name: 'fd_write', kind: 'function' },
    { module: 'wasi_snapshot_preview1', name: 'proc_exit', kind: 'function' },
  ];
  const names = options.exports ?? ['_start'];
  return buildModule({ imports, functions: names.length, memories: [{ min: 2 }], exports: [...functionExports(names, importedFunctions(imports)), MEMORY_EXPORT] });
}

function problemsOf(info: ModuleInfo, kind: 'proxy-wasm' | 'wasi-command'): string[] {
  const result = checkKind(info, kind);
  return result.ok ? [] : result.problems;
}

function assertInvalid(bytes: Uint8Array, pattern: RegExp): InvalidModuleError {
  let caught: unknown;
  try {
    inspectModule(bytes);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof InvalidModuleError, `expected InvalidModuleError, got ${String(caught)}`);
  assert.ok(caught instanceof UserError);
  assert.equal(caught.code, 'invalid_wasm');
  assert.equal(httpStatusOf(caught), 422);
  assert.match(caught.message, pattern);
  return caught;
}

/** Deterministic PRNG (mulberry32), so a failing mutation reproduces. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Parses or fails with InvalidModuleError — anything else (a crash) fails the test. */
function parsesOrRejects(bytes: Uint8Array): void {
  try {
    inspectModule(bytes);
  } catch (error) {
    if (!(error instanceof InvalidModuleError)) throw error;
  }
}

// ---------------------------------------------------------------------------

describe('inspectModule', () => {
  it('reads imports of every kind, exports, memories, custom sections and size', () => {
    const bytes = buildModule({
      imports: [
        { module: 'env', name: 'f', kind: 'function' },
        { module: 'env', name: 't', kind: 'table' },
        { module: 'env', name: 'mem', kind: 'memory', limits: { min: 1, max: 3 } },
        { module: 'env', name: 'g', kind: 'global' },
        { module: 'env', name: 'e', kind: 'tag' },
      ],
      functions: 1,
      exports: [
        { name: 'run', kind: 'function', index: 1 },
        { name: 'memory', kind: 'memory', index: 0 },
        { name: 'table', kind: 'table', index: 0 },
        { name: 'g', kind: 'global', index: 0 },
        { name: 'e', kind: 'tag', index: 0 },
      ],
      customs: ['name', 'producers', 'name'],
    });
    const info = inspectModule(bytes);
    assert.deepEqual(info.imports, [
      { module: 'env', name: 'f', kind: 'function' },
      { module: 'env', name: 't', kind: 'table' },
      { module: 'env', name: 'mem', kind: 'memory' },
      { module: 'env', name: 'g', kind: 'global' },
      { module: 'env', name: 'e', kind: 'tag' },
    ]);
    assert.deepEqual(info.exports.map((e) => [e.name, e.kind]), [
      ['run', 'function'],
      ['memory', 'memory'],
      ['table', 'table'],
      ['g', 'global'],
      ['e', 'tag'],
    ]);
    assert.deepEqual(info.memories, [{ min: 1, max: 3, memory64: false, shared: false, imported: true }]);
    assert.deepEqual(info.customSections, ['name', 'producers', 'name']);
    assert.equal(info.size, bytes.length);
  });

  it('reads shared and 64-bit memory limits, including values above 2^32', () => {
    // Two memories and memory64 are beyond what Node 20 validates: parse structurally only.
    const bytes = buildModule({ memories: [{ min: 2, max: 4, shared: true }, { min: 2 ** 40, memory64: true }] });
    assert.deepEqual(inspectModule(bytes, { validate: false }).memories, [
      { min: 2, max: 4, memory64: false, shared: true, imported: false },
      { min: 2 ** 40, memory64: true, shared: false, imported: false },
    ]);
  });

  it('accepts a module with no sections', () => {
    assert.deepEqual(inspectModule(Uint8Array.from(HEADER)), { imports: [], exports: [], memories: [], customSections: [], size: 8 });
  });

  it('reads a view into a larger buffer (as Node Buffers often are)', () => {
    const bytes = commandModule();
    const padded = new Uint8Array(bytes.length + 10);
    padded.set(bytes, 5);
    assert.equal(inspectModule(padded.subarray(5, 5 + bytes.length)).exports.length, 2);
  });
});

describe('inspectModule on malformed input', () => {
  it('rejects input shorter than the header, with the offset', () => {
    const error = assertInvalid(Uint8Array.of(0x00, 0x61), /shorter than the 8-byte header at byte offset 0/);
    assert.equal(error.offset, 0);
  });

  it('rejects a bad magic number, a bad version and a component', () => {
    assertInvalid(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 1, 0, 0, 0]), /bad magic/);
    assertInvalid(Uint8Array.from([...HEADER.slice(0, 4), 2, 0, 0, 0]), /unsupported binary version 2 at byte offset 4/);
    assertInvalid(Uint8Array.from([...HEADER.slice(0, 4), 0x0d, 0x00, 0x01, 0x00]), /component/);
  });

  it('rejects a section whose length runs past the end', () => {
    const bytes = Uint8Array.from([...HEADER, 0x07, 0x40, 0x00]);
    const error = assertInvalid(bytes, /export section declares 64 bytes but only 1 remain in the module at byte offset 8/);
    assert.equal(error.offset, 8);
  });

  it('rejects a truncated module cut inside a section', () => {
    const bytes = filterModule();
    assertInvalid(bytes.subarray(0, bytes.length - 3), /declares \d+ bytes but only \d+ remain/);
  });

  it('never crashes on any truncation of a valid module', () => {
    const bytes = filterModule();
    for (let length = 0; length < bytes.length; length++) parsesOrRejects(bytes.subarray(0, length));
  });

  it('rejects huge counts before looping or allocating', () => {
    const imports = [...HEADER, ...section(2, [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00])];
    assertInvalid(Uint8Array.from(imports), /import count 4294967295 is larger than the 1 bytes left could hold .*import section/);
    const exports = [...HEADER, ...section(7, [0x80, 0x80, 0x04])];
    assertInvalid(Uint8Array.from(exports), /export count 65536/);
  });

  it('rejects a name length that runs past its section', () => {
    assertInvalid(Uint8Array.from([...HEADER, ...section(7, [0x01, 0x7f, 0x61, 0x00])]), /length 127 runs past the end \(2 bytes left\) in the export section at byte offset 11/);
  });

  it('rejects over-long and out-of-range LEB128 integers', () => {
    assertInvalid(Uint8Array.from([...HEADER, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), /longer than 5 bytes/);
    assertInvalid(Uint8Array.from([...HEADER, 0x01, 0xff, 0xff, 0xff, 0xff, 0x7f]), /too large for u32/);
  });

  it('rejects names that are not UTF-8', () => {
    assertInvalid(Uint8Array.from([...HEADER, ...section(0, [0x02, 0xc3, 0x28])]), /not valid UTF-8/);
  });

  it('rejects unknown, duplicated and misordered sections', () => {
    assertInvalid(Uint8Array.from([...HEADER, 0x2a, 0x00]), /unknown section id 42/);
    assertInvalid(Uint8Array.from([...HEADER, ...section(5, [0]), ...section(5, [0])]), /memory section is duplicated or out of order/);
    assertInvalid(Uint8Array.from([...HEADER, ...section(7, [0]), ...section(2, [0])]), /import section is duplicated or out of order/);
  });

  it('rejects unknown import kinds, bad limits and trailing bytes', () => {
    assertInvalid(Uint8Array.from([...HEADER, ...section(2, [1, ...str('a'), ...str('b'), 0x09, 0])]), /unknown external kind 0x9/);
    assertInvalid(Uint8Array.from([...HEADER, ...section(5, [1, 0x01, 5, 2])]), /maximum 2 is below its minimum 5/);
    assertInvalid(Uint8Array.from([...HEADER, ...section(5, [1, 0x00, 0x81, 0x80, 0x04])]), /exceeds 65536 pages/);
    assertInvalid(Uint8Array.from([...HEADER, ...section(5, [1, 0x02, 1])]), /shared memory without a maximum/);
    assertInvalid(Uint8Array.from([...HEADER, ...section(5, [0, 0xaa])]), /1 unexpected trailing bytes in the memory section/);
  });

  it('rejects duplicate export names', () => {
    const bytes = buildModule({ functions: 1, exports: functionExports(['run', 'run'], 0) });
    assertInvalid(bytes, /duplicate export name "run"/);
  });

  it('reports what the engine finds in function bodies, with its offset', () => {
    // Body `i32.add; end`: adds with nothing on the stack.
    const bytes = Uint8Array.from([...HEADER, ...section(1, vec([[0x60, 0, 0]])), ...section(3, vec([[0]])), ...section(10, vec([[0x03, 0x00, 0x6a, 0x0b]]))]);
    assert.equal(inspectModule(bytes, { validate: false }).size, bytes.length);
    const error = assertInvalid(bytes, /Compiling function #0 failed/);
    assert.equal(typeof error.offset, 'number');
  });

  it('never crashes on randomly corrupted modules', () => {
    const random = prng(42);
    const original = filterModule();
    for (let i = 0; i < 400; i++) {
      const bytes = original.slice();
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) bytes[8 + Math.floor(random() * (bytes.length - 8))] = Math.floor(random() * 256);
      parsesOrRejects(bytes);
    }
  });
});

describe('checkKind: proxy-wasm', () => {
  it('accepts a well-formed filter', () => {
    assert.deepEqual(checkKind(inspectModule(filterModule()), 'proxy-wasm'), { ok: true });
  });

  it('accepts the older malloc allocator and ABI 0.2.0 marker', () => {
    const info = inspectModule(filterModule({ exports: ['proxy_abi_version_0_2_0', 'malloc', 'proxy_on_context_create'] }));
    assert.deepEqual(checkKind(info, 'proxy-wasm'), { ok: true });
  });

  it('rejects a filter that exports _start', () => {
    const info = inspectModule(filterModule({ exports: ['proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'proxy_on_context_create', '_start'] }));
    const problems = problemsOf(info, 'proxy-wasm');
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /exports _start/);
  });

  it('rejects a filter without an exported memory', () => {
    const problems = problemsOf(inspectModule(filterModule({ memory: false })), 'proxy-wasm');
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /does not export its memory as "memory"/);
  });

  it('names each required export that is missing', () => {
    const problems = problemsOf(inspectModule(filterModule({ exports: ['_initialize'] })), 'proxy-wasm');
    assert.equal(problems.length, 3);
    assert.match(problems.join('\n'), /neither the function proxy_on_memory_allocate nor malloc/);
    assert.match(problems.join('\n'), /does not export proxy_on_context_create/);
    assert.match(problems.join('\n'), /proxy_abi_version_0_2_1/);
  });

  it('rejects an unsupported ABI version by name', () => {
    const info = inspectModule(filterModule({ exports: ['proxy_abi_version_0_1_0', 'proxy_on_memory_allocate', 'proxy_on_context_create'] }));
    assert.deepEqual(problemsOf(info, 'proxy-wasm').length, 1);
    assert.match(problemsOf(info, 'proxy-wasm')[0] ?? '', /exports proxy_abi_version_0_1_0, but only Proxy-Wasm ABI 0\.2\.1/);
  });

  it('names imports the host cannot satisfy', () => {
    const info = inspectModule(
      filterModule({
        imports: [
          { module: 'env', name: 'proxy_log', kind: 'function' },
          { module: 'env', name: 'foo', kind: 'function' },
          { module: 'wasi_unstable', name: 'fd_write', kind: 'function' },
          { module: 'fastly', name: 'http_req', kind: 'function' },
          { module: 'env', name: 'table', kind: 'table' },
        ],
      }),
    );
    const problems = problemsOf(info, 'proxy-wasm');
    assert.equal(problems.length, 3);
    assert.match(problems[0] ?? '', /imports env\.foo, which no proxy-wasm host provides/);
    assert.match(problems[1] ?? '', /imports fastly\.http_req from module "fastly"/);
    assert.match(problems[2] ?? '', /imports the table env\.table/);
  });
});

describe('checkKind: wasi-command', () => {
  it('accepts a well-formed command', () => {
    assert.deepEqual(checkKind(inspectModule(commandModule()), 'wasi-command'), { ok: true });
  });

  it('rejects a command importing env.foo, naming it', () => {
    const info = inspectModule(commandModule({ imports: [{ module: 'env', name: 'foo', kind: 'function' }] }));
    const problems = problemsOf(info, 'wasi-command');
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /imports env\.foo, but a WASI command may import only from wasi_snapshot_preview1/);
  });

  it('rejects legacy wasi_unstable imports', () => {
    const info = inspectModule(commandModule({ imports: [{ module: 'wasi_unstable', name: 'fd_write', kind: 'function' }] }));
    assert.match(problemsOf(info, 'wasi-command')[0] ?? '', /wasi_unstable\.fd_write from the old wasi_unstable API/);
  });

  it('rejects a command without _start or memory', () => {
    const info = inspectModule(buildModule({ functions: 1, exports: functionExports(['main'], 0) }));
    const problems = problemsOf(info, 'wasi-command');
    assert.equal(problems.length, 2);
    assert.match(problems[0] ?? '', /does not export _start/);
    assert.match(problems[1] ?? '', /does not export its memory/);
  });

  it('rejects a module that is both command and reactor', () => {
    const problems = problemsOf(inspectModule(commandModule({ exports: ['_start', '_initialize'] })), 'wasi-command');
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /exports _initialize as well as _start/);
  });

  it('rejects a filter declared as a command', () => {
    const problems = problemsOf(inspectModule(filterModule()), 'wasi-command');
    assert.match(problems.join('\n'), /does not export _start/);
    assert.match(problems.join('\n'), /env\.proxy_log/);
  });

  it('rejects a memory export that is not a memory, and 64-bit memory', () => {
    const notMemory = buildModule({ functions: 1, exports: [...functionExports(['_start'], 0), { name: 'memory', kind: 'function', index: 0 }] });
    assert.match(problemsOf(inspectModule(notMemory), 'wasi-command')[0] ?? '', /export "memory" is a function, not a memory/);
    const wide = buildModule({ functions: 1, memories: [{ min: 1, memory64: true }], exports: [...functionExports(['_start'], 0), MEMORY_EXPORT] });
    assert.match(problemsOf(inspectModule(wide, { validate: false }), 'wasi-command')[0] ?? '', /64-bit/);
  });
});

describe('detectKind', () => {
  it('recognizes filters, commands and neither', () => {
    assert.equal(detectKind(inspectModule(filterModule())), 'proxy-wasm');
    assert.equal(detectKind(inspectModule(commandModule())), 'wasi-command');
    // A filter wrongly built as a command is still recognizably a filter.
    assert.equal(detectKind(inspectModule(filterModule({ exports: ['proxy_on_context_create', '_start'] }))), 'proxy-wasm');
    assert.equal(detectKind(inspectModule(buildModule({ functions: 1, exports: functionExports(['add'], 0) }))), undefined);
  });
});

describe('setMemoryMaximum', () => {
  const memoryModule = (memory: LimitsSpec): Uint8Array =>
    buildModule({ functions: 1, memories: [memory], exports: [...functionExports(['_start'], 0), MEMORY_EXPORT] });

  function exportedMemory(bytes: Uint8Array<ArrayBuffer>, imports: WebAssembly.Imports = {}): WebAssembly.Memory {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
    return instance.exports.memory as WebAssembly.Memory;
  }

  it('adds a maximum the engine enforces', () => {
    const capped = setMemoryMaximum(memoryModule({ min: 1 }), 2);
    assert.ok(WebAssembly.validate(capped));
    assert.deepEqual(inspectModule(capped).memories, [{ min: 1, max: 2, memory64: false, shared: false, imported: false }]);
    const memory = exportedMemory(capped);
    assert.equal(memory.grow(1), 1);
    assert.throws(() => memory.grow(1), RangeError);
  });

  it('lowers a bigger maximum and keeps a smaller one', () => {
    assert.equal(inspectModule(setMemoryMaximum(memoryModule({ min: 1, max: 100 }), 3)).memories[0]?.max, 3);
    const small = memoryModule({ min: 1, max: 2 });
    assert.deepEqual(setMemoryMaximum(small, 10), small);
  });

  it('keeps a shared memory shared', () => {
    const capped = setMemoryMaximum(memoryModule({ min: 1, max: 50, shared: true }), 4);
    assert.deepEqual(inspectModule(capped).memories[0], { min: 1, max: 4, memory64: false, shared: true, imported: false });
  });

  it('refuses when the module needs more memory than the cap', () => {
    assert.throws(
      () => setMemoryMaximum(memoryModule({ min: 17 }), 16),
      (error: unknown) =>
        error instanceof UserError &&
        error.code === 'memory_cap_too_small' &&
        /needs 17 pages \(1\.06 MiB\) of memory at start, more than the memory cap of 16 pages \(1 MiB\)/.test(error.message),
    );
  });

  it('rejects a cap that is not a page count', () => {
    for (const cap of [-1, 1.5, Number.NaN]) {
      assert.throws(() => setMemoryMaximum(memoryModule({ min: 0 }), cap), (error: unknown) => error instanceof UserError && error.code === 'invalid_memory_cap');
    }
  });

  it('clamps a cap beyond what 32-bit memory can address', () => {
    assert.equal(inspectModule(setMemoryMaximum(memoryModule({ min: 1 }), 1_000_000)).memories[0]?.max, 65_536);
  });

  it('caps 64-bit memory with 64-bit limits', () => {
    const bytes = buildModule({ memories: [{ min: 1, memory64: true }] });
    assert.deepEqual(inspectModule(setMemoryMaximum(bytes, 2 ** 33), { validate: false }).memories[0], { min: 1, max: 2 ** 33, memory64: true, shared: false, imported: false });
  });

  it('caps an imported memory, so the host must supply one within the cap', () => {
    const bytes = buildModule({ imports: [{ module: 'env', name: 'memory', kind: 'memory', limits: { min: 1 } }], exports: [MEMORY_EXPORT] });
    const capped = setMemoryMaximum(bytes, 2);
    assert.deepEqual(inspectModule(capped).memories, [{ min: 1, max: 2, memory64: false, shared: false, imported: true }]);
    const tooBig = new WebAssembly.Memory({ initial: 1, maximum: 4 });
    assert.throws(() => exportedMemory(capped, { env: { memory: tooBig } }), WebAssembly.LinkError);
    const memory = exportedMemory(capped, { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 2 }) } });
    assert.throws(() => memory.grow(2), RangeError);
  });

  it('re-encodes the section size when it crosses a LEB128 width', () => {
    // Import section content: count 1 + name (1+114) + "memory" (1+6) + kind 1 + limits 2 = 126 bytes.
    // Adding max 200 (2 LEB bytes) makes it 128 bytes, so the size prefix grows to 2 bytes: 3 more in all.
    const module = 'm'.repeat(114);
    const bytes = buildModule({
      imports: [{ module, name: 'memory', kind: 'memory', limits: { min: 1 } }],
      functions: 1,
      exports: [...functionExports(['_start'], 0), MEMORY_EXPORT],
      customs: ['name'],
    });
    const importSectionAt = bytes.indexOf(0x02, 8 + 5);
    assert.equal(bytes[importSectionAt + 1], 126);
    const capped = setMemoryMaximum(bytes, 200);
    assert.equal(capped.length, bytes.length + 3);
    assert.deepEqual([capped[importSectionAt + 1], capped[importSectionAt + 2]], [0x80, 0x01]);
    const info = inspectModule(capped);
    assert.deepEqual(info.memories[0], { min: 1, max: 200, memory64: false, shared: false, imported: true });
    assert.deepEqual(info.exports.map((e) => e.name), ['_start', 'memory']);
    assert.deepEqual(info.customSections, ['name']);
    const memory = exportedMemory(capped, { [module]: { memory: new WebAssembly.Memory({ initial: 1, maximum: 200 }) } });
    assert.equal(memory.grow(199), 1);
    assert.throws(() => memory.grow(1), RangeError);
  });

  it('returns a copy of a module without memory, and rejects malformed input', () => {
    const bytes = buildModule({ functions: 1 });
    const out = setMemoryMaximum(bytes, 1);
    assert.deepEqual(out, bytes);
    assert.notEqual(out, bytes);
    assert.throws(() => setMemoryMaximum(Uint8Array.of(1, 2, 3), 1), InvalidModuleError);
  });

  it('never aliases its input, even a Node Buffer', () => {
    const input = Buffer.from(memoryModule({ min: 1, max: 2 }));
    const out = setMemoryMaximum(input, 10);
    assert.ok(!Buffer.isBuffer(out));
    out[8] = 0xff;
    assert.equal(input[8], 0x01);
  });
});
