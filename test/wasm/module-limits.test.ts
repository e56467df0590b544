/**
 * Table caps and module shape limits: modules written in WebAssembly text
 * (ours, assembled with wat2wasm), rewritten, then checked with the engine
 * itself — a capped table must refuse table.grow past the cap.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scanModule } from '../../src/wasm/inspect.ts';
import { setMemoryMaximum } from '../../src/wasm/memory-cap.ts';
import { DEFAULT_MODULE_SHAPE_LIMITS, limitModuleShape, ModuleLimitError } from '../../src/wasm/module-limits.ts';
import type { ModuleShapeLimits } from '../../src/wasm/module-limits.ts';
import { wat } from '../testbed/wat.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

const limits = (overrides: Partial<ModuleShapeLimits> = {}): ModuleShapeLimits => ({ ...DEFAULT_MODULE_SHAPE_LIMITS, maxTableEntries: 1000, ...overrides });

/** Grows table `index` by `delta` and answers what table.grow returned. */
function growModule(tables: string): Uint8Array<ArrayBuffer> {
  return wat(`(module
    ${tables}
    (func (export "grow_ext") (param i32) (result i32) (table.grow $ext (ref.null extern) (local.get 0)))
    (func (export "grow_fn") (param i32) (result i32) (table.grow $fn (ref.null func) (local.get 0)))
    (func (export "size_ext") (result i32) (table.size $ext)))`);
}

type Grow = (delta: number) => number;

function instantiate(bytes: Uint8Array<ArrayBuffer>): { growExt: Grow; growFn: Grow; sizeExt: () => number } {
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  return { growExt: exports.grow_ext as Grow, growFn: exports.grow_fn as Grow, sizeExt: exports.size_ext as () => number };
}

function rejects(fn: () => unknown, limit: keyof ModuleShapeLimits): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ModuleLimitError, String(error));
    assert.equal(error.limit, limit);
    assert.equal(httpStatusOf(error), 422);
    assert.equal(error.code, 'module_limit');
    assert.match(error.message, new RegExp(`limit ${limit}`));
    return true;
  });
}

describe('table caps', () => {
  it('gives tables without a maximum the cap, so table.grow by millions fails inside the engine', () => {
    const original = growModule('(table $ext 0 externref) (table $fn 1 funcref)');
    // Uncapped, the engine would grow (the attack); only the rewritten module is instantiated.
    assert.equal(scanModule(original).tables.every((t) => t.limits.max === undefined), true);
    const capped = limitModuleShape(original, limits());
    assert.deepEqual(
      scanModule(capped).tables.map((t) => [t.limits.min, t.limits.max]),
      [
        [0, 1000],
        [1, 1000],
      ],
    );
    const instance = instantiate(capped);
    assert.equal(instance.growExt(5_000_000), -1, 'externref growth past the cap fails');
    assert.equal(instance.growFn(5_000_000), -1, 'funcref growth past the cap fails');
    assert.equal(instance.growExt(1000), 0, 'growth up to the cap works');
    assert.equal(instance.growExt(1), -1);
    assert.equal(instance.sizeExt(), 1000);
  });

  it('lowers a maximum above the cap and keeps a smaller one', () => {
    const capped = limitModuleShape(growModule('(table $ext 2 4000000 externref) (table $fn 1 10 funcref)'), limits());
    assert.deepEqual(
      scanModule(capped).tables.map((t) => t.limits.max),
      [1000, 10],
    );
    assert.equal(instantiate(capped).growExt(998), 2);
  });

  it('returns an equal copy when nothing needs capping', () => {
    const original = growModule('(table $ext 0 5 externref) (table $fn 0 5 funcref)');
    const result = limitModuleShape(original, limits());
    assert.notEqual(result, original);
    assert.deepEqual([...result], [...original]);
  });

  it('refuses a table that starts above the cap', () => {
    rejects(() => limitModuleShape(growModule('(table $ext 1001 externref) (table $fn 0 funcref)'), limits()), 'maxTableEntries');
  });

  it('works after the memory cap, on a module with memory, data and elements', () => {
    const bytes = wat(`(module
      (memory 1) (data (i32.const 0) "hi")
      (table 2 funcref) (elem (i32.const 0) $f $f)
      (func $f) (func (export "grow") (param i32) (result i32) (table.grow 0 (ref.null func) (local.get 0))))`);
    const capped = limitModuleShape(setMemoryMaximum(bytes, 4), limits({ maxTableEntries: 50 }));
    const scan = scanModule(capped);
    assert.equal(scan.info.memories[0]?.max, 4);
    assert.equal(scan.tables[0]?.limits.max, 50);
    const grow = new WebAssembly.Instance(new WebAssembly.Module(capped)).exports.grow as Grow;
    assert.equal(grow(48), 2);
    assert.equal(grow(1), -1);
  });
});

describe('module shape limits', () => {
  const many = (count: number, item: string) => Array.from({ length: count }, () => item).join(' ');

  it('refuses too many tables', () => {
    rejects(() => limitModuleShape(wat(`(module ${many(3, '(table 0 funcref)')})`), limits({ maxTables: 2 })), 'maxTables');
  });

  it('counts imported tables too', () => {
    rejects(() => limitModuleShape(wat('(module (import "env" "t" (table 0 funcref)) (table 0 funcref))'), limits({ maxTables: 1 })), 'maxTables');
  });

  it('refuses too many functions, globals, types, element and data segments', () => {
    rejects(() => limitModuleShape(wat(`(module ${many(11, '(func)')})`), limits({ maxFunctions: 10 })), 'maxFunctions');
    rejects(() => limitModuleShape(wat(`(module ${many(6, '(global i32 (i32.const 0))')})`), limits({ maxGlobals: 5 })), 'maxGlobals');
    rejects(() => limitModuleShape(wat('(module (func (param i32)) (func (param i64)) (func (param f32)))'), limits({ maxTypes: 2 })), 'maxTypes');
    rejects(() => limitModuleShape(wat(`(module (table 1 funcref) (func $f) ${many(4, '(elem (i32.const 0) $f)')})`), limits({ maxElementSegments: 3 })), 'maxElementSegments');
    rejects(() => limitModuleShape(wat(`(module (memory 1) ${many(4, '(data (i32.const 0) "x")')})`), limits({ maxDataSegments: 3 })), 'maxDataSegments');
  });

  it('accepts counts at the limits', () => {
    assert.doesNotThrow(() => limitModuleShape(wat(`(module ${many(10, '(func)')} ${many(5, '(global i32 (i32.const 0))')})`), limits({ maxFunctions: 10, maxGlobals: 5 })));
  });
});
