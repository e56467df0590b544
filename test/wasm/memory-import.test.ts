/**
 * A module's own memory turned into an import (decision 0049): modules in
 * WebAssembly text (ours, assembled with wat2wasm), rewritten, then run by
 * the engine with a memory the test supplies. What the guest sees must not
 * change: its data, its exports, its calls to imported functions, its limits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PAGE_SIZE } from '../../src/wasm/binary.ts';
import { inspectModule } from '../../src/wasm/inspect.ts';
import { importOwnMemory } from '../../src/wasm/memory-import.ts';
import type { ImportedMemory } from '../../src/wasm/memory-import.ts';
import { wat } from '../testbed/wat.ts';

const FROM = { module: 'kiln:memory', name: 'memory' };

function rewritten(source: string): ImportedMemory {
  const result = importOwnMemory(wat(source), FROM);
  assert.ok(result, 'the module was rewritten');
  assert.ok(WebAssembly.validate(result.bytes), 'the rewritten module is valid');
  return result;
}

function instantiate(result: ImportedMemory, imports: WebAssembly.Imports = {}): { instance: WebAssembly.Instance; memory: WebAssembly.Memory } {
  const { initial, maximum } = result.memory;
  const memory = new WebAssembly.Memory(maximum === undefined ? { initial } : { initial, maximum });
  const instance = new WebAssembly.Instance(new WebAssembly.Module(result.bytes), { ...imports, [FROM.module]: { [FROM.name]: memory } });
  return { instance, memory };
}

describe('importOwnMemory', () => {
  it('imports the memory with its limits, keeps data, exports and function imports working', () => {
    const result = rewritten(`(module
      (import "env" "twice" (func $twice (param i32) (result i32)))
      (memory (export "memory") 3 40)
      (data (i32.const 1000) "hello")
      (func (export "call_import") (param i32) (result i32) (call $twice (local.get 0)))
      (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);
    assert.deepEqual(result.memory, { initial: 3, maximum: 40 });
    const info = inspectModule(result.bytes);
    assert.deepEqual(info.memories, [{ min: 3, max: 40, memory64: false, shared: false, imported: true }]);
    assert.deepEqual(info.imports.map((entry) => `${entry.module}.${entry.name}:${entry.kind}`), ['env.twice:function', 'kiln:memory.memory:memory']);

    const { instance, memory } = instantiate(result, { env: { twice: (n: number) => 2 * n } });
    assert.equal(instance.exports.memory, memory, 'the export is the memory the host supplied');
    assert.equal(Buffer.from(memory.buffer, 1000, 5).toString(), 'hello', 'data segments land in the supplied memory');
    assert.equal((instance.exports.call_import as (n: number) => number)(21), 42, 'function indices are unchanged');
    assert.equal((instance.exports.load as (at: number) => number)(1001), 'e'.charCodeAt(0));
    const grow = instance.exports.grow as (pages: number) => number;
    assert.equal(grow(37), 3, 'grows up to the declared maximum');
    assert.equal(grow(1), -1, 'and not past it');
    assert.equal(memory.buffer.byteLength, 40 * PAGE_SIZE);
  });

  it('makes an import section where there was none, after the types, or first without types', () => {
    const withTypes = rewritten('(module (memory (export "memory") 1) (func (export "size") (result i32) (memory.size)))');
    assert.deepEqual(withTypes.memory, { initial: 1 });
    assert.equal((instantiate(withTypes).instance.exports.size as () => number)(), 1);

    const memoryOnly = rewritten('(module (memory (export "memory") 2) (data (i32.const 8) "x"))');
    const { memory } = instantiate(memoryOnly);
    assert.equal(new Uint8Array(memory.buffer)[8], 'x'.charCodeAt(0));
    assert.deepEqual(inspectModule(memoryOnly.bytes).imports.map((entry) => entry.kind), ['memory']);
  });

  it('keeps custom sections', () => {
    const source = wat('(module (memory 1) (func $named_function))');
    const named = new Uint8Array([...source, 0x00, 0x06, 0x04, ...Buffer.from('kiln'), 0x2a]);
    const result = importOwnMemory(named, FROM);
    assert.ok(result);
    const module = new WebAssembly.Module(result.bytes);
    assert.deepEqual(
      WebAssembly.Module.customSections(module, 'kiln').map((section) => [...new Uint8Array(section)]),
      [[0x2a]],
    );
  });

  it('leaves alone what it cannot import plainly', () => {
    assert.equal(importOwnMemory(wat('(module (func (export "f")))'), FROM), undefined, 'no memory');
    assert.equal(importOwnMemory(wat('(module (import "env" "memory" (memory 1)))'), FROM), undefined, 'already imported');
    // Written as bytes: wat2wasm wants feature flags for these. Header, then a memory section.
    const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    assert.equal(importOwnMemory(new Uint8Array([...header, 0x05, 0x04, 0x01, 0x03, 0x01, 0x02]), FROM), undefined, 'shared');
    assert.equal(importOwnMemory(new Uint8Array([...header, 0x05, 0x03, 0x01, 0x04, 0x01]), FROM), undefined, '64-bit');
    assert.equal(importOwnMemory(new Uint8Array([...header, 0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01]), FROM), undefined, 'two memories');
  });

  it('refuses a malformed module with the parser error', () => {
    assert.throws(() => importOwnMemory(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 9, 1]), FROM), /memory section|declares/);
  });
});
