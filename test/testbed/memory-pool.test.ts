/**
 * Recycled memories (decision 0049): an instance may get a memory another
 * instance used, so each test here tries to read what the previous user
 * left behind. The pool's own rules first, then instances of our modules
 * (WebAssembly text, wat2wasm) sharing one pool, then function calls
 * through the test bed's worker threads.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import { leaseMemory, MAX_POOLED_MEMORY_BYTES, MemoryPool, POOLED_MEMORY_IMPORT } from '../../src/testbed/memory-pool.ts';
import { Testbed } from '../../src/testbed/testbed.ts';
import { PAGE_SIZE } from '../../src/wasm/binary.ts';
import { importOwnMemory } from '../../src/wasm/memory-import.ts';
import { wat } from './wat.ts';

const SECRET = 0x5ec7e7;
const CELL = 5000;

/** `peek_then_mark` answers what cell 5000 held, then leaves the secret there. */
const MARKER = wat(`(module
  (memory (export "memory") 1)
  (func (export "peek_then_mark") (result i32)
    (i32.load (i32.const ${CELL}))
    (i32.store (i32.const ${CELL}) (i32.const ${SECRET}))))`);

function pooledModule(bytes: Uint8Array): { module: WebAssembly.Module; type: { initial: number; maximum?: number } } {
  const imported = importOwnMemory(bytes, POOLED_MEMORY_IMPORT);
  assert.ok(imported);
  return { module: new WebAssembly.Module(imported.bytes), type: imported.memory };
}

describe('MemoryPool', () => {
  it('gives a returned memory back zeroed, even what was written after it was returned', () => {
    const pool = new MemoryPool();
    const type = { initial: 1, maximum: 4 };
    const memory = pool.take(type);
    new Uint8Array(memory.buffer).fill(0xab);
    pool.give(memory, type);
    new Uint8Array(memory.buffer)[CELL] = 0xcd;
    const again = pool.take(type);
    assert.equal(again, memory, 'the same memory came back');
    assert.ok(new Uint8Array(again.buffer).every((byte) => byte === 0), 'all zeros');
    assert.equal(pool.size, 0);
  });

  it('keeps only memories at their declared size, up to its size bound, and never mixes types', () => {
    const pool = new MemoryPool();
    const small = { initial: 1, maximum: 4 };
    const grown = pool.take(small);
    grown.grow(1);
    pool.give(grown, small);
    assert.equal(pool.size, 0, 'a grown memory cannot shrink back, so it is dropped');

    const bigPages = MAX_POOLED_MEMORY_BYTES / PAGE_SIZE + 1;
    const big = { initial: bigPages };
    pool.give(pool.take(big), big);
    assert.equal(pool.size, 0, 'too big to zero on every take');

    const kept = pool.take(small);
    pool.give(kept, small);
    const otherMaximum = pool.take({ initial: 1, maximum: 5 });
    assert.notEqual(otherMaximum, kept, 'another maximum is another type');
    assert.equal(otherMaximum.grow(4), 1, 'and it has its own maximum');
    assert.throws(() => otherMaximum.grow(1));
  });

  it('holds at most its bound, dropping the oldest', () => {
    const pool = new MemoryPool(2);
    const types = [{ initial: 1 }, { initial: 2 }, { initial: 3 }];
    const memories = types.map((type) => pool.take(type));
    memories.forEach((memory, i) => pool.give(memory, types[i] as { initial: number }));
    assert.equal(pool.size, 2);
    assert.notEqual(pool.take({ initial: 1 }), memories[0], 'the oldest was dropped');
    assert.equal(pool.take({ initial: 3 }), memories[2]);
  });

  it('holds at most its byte bound, dropping the oldest', () => {
    const pool = new MemoryPool(16, 5 * PAGE_SIZE);
    const two = { initial: 2 };
    const three = { initial: 3 };
    const first = pool.take(two);
    const second = pool.take(three);
    pool.give(first, two);
    pool.give(second, three);
    assert.equal(pool.bytes, 5 * PAGE_SIZE);
    const third = pool.take(two);
    assert.equal(third, first);
    pool.give(third, two);
    const fourth = pool.take({ initial: 2, maximum: 9 });
    pool.give(fourth, { initial: 2, maximum: 9 });
    assert.ok(pool.bytes <= 5 * PAGE_SIZE, `${pool.bytes} bytes kept`);
    assert.notEqual(pool.take(three), second, 'the oldest (3 pages) made room');
    const kept = { size: pool.size, bytes: pool.bytes };
    pool.give(pool.take({ initial: 6 }), { initial: 6 });
    assert.deepEqual({ size: pool.size, bytes: pool.bytes }, kept, 'a memory over the bound is never kept, and drops nothing');
  });

  it('leases once: a second release does not put the memory in twice', () => {
    const pool = new MemoryPool();
    const none: WebAssembly.Imports = {};
    leaseMemory(none, undefined, pool)();
    assert.deepEqual(none, {}, 'a module with its own memory gets nothing');

    const imports: WebAssembly.Imports = {};
    const release = leaseMemory(imports, { initial: 1 }, pool);
    const leased = imports[POOLED_MEMORY_IMPORT.module]?.[POOLED_MEMORY_IMPORT.name];
    assert.ok(leased instanceof WebAssembly.Memory);
    release();
    release();
    assert.equal(pool.size, 1);
    assert.equal(pool.take({ initial: 1 }), leased);
    assert.notEqual(pool.take({ initial: 1 }), leased, 'it was in the pool once');
  });
});

describe('instances sharing a pool', () => {
  it('an instance on a recycled memory does not see what the one before it left', () => {
    const pool = new MemoryPool();
    const { module, type } = pooledModule(MARKER);
    const run = (): { seen: number; memory: WebAssembly.Memory } => {
      const imports: WebAssembly.Imports = {};
      const release = leaseMemory(imports, type, pool);
      const instance = new WebAssembly.Instance(module, imports);
      const seen = (instance.exports.peek_then_mark as () => number)();
      release();
      return { seen, memory: instance.exports.memory as WebAssembly.Memory };
    };
    const first = run();
    const second = run();
    assert.equal(first.seen, 0);
    assert.equal(second.memory, first.memory, 'the second instance got the first one\'s memory');
    assert.equal(second.seen, 0, 'and none of its contents');

    // The control: the same memory handed over without the pool shows the mark, so the check above can fail.
    const reused = new WebAssembly.Instance(module, { [POOLED_MEMORY_IMPORT.module]: { [POOLED_MEMORY_IMPORT.name]: second.memory } });
    assert.equal((reused.exports.peek_then_mark as () => number)(), SECRET);
  });
});

describe('function calls on the test bed reuse memories without leaking them', { timeout: 60_000 }, () => {
  let testbed: Testbed;
  before(() => {
    testbed = new Testbed({ ...loadTestbedConfig({}), workers: 1, spares: 0, timeoutMs: 10_000 });
  });
  after(() => testbed.close());

  const artifact = (bytes: Uint8Array) => ({ sha256: createHash('sha256').update(bytes).digest('hex'), load: async () => bytes });
  const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();

  /** Writes "clean" when cell 5000 is zero, else "dirty"; with `mark`, then marks it (a module of its own either way). */
  const peeker = (mark: boolean) =>
    wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 64) "clean")
    (data (i32.const 80) "dirty")
    (func (export "_start")
      (i32.store (i32.const 0) (select (i32.const 80) (i32.const 64) (i32.load (i32.const ${CELL}))))
      (i32.store (i32.const 4) (i32.const 5))
      ${mark ? `(i32.store (i32.const ${CELL}) (i32.const ${SECRET}))` : ''}
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))`);
  const PEEKER = peeker(true);

  /** Writes its memory size in pages as a digit, then grows by a page. */
  const GROWER = wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1 8)
    (func (export "_start")
      (i32.store8 (i32.const 64) (i32.add (i32.const 48) (memory.size)))
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 1))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (drop (memory.grow (i32.const 1)))))`);

  it('every call of a function starts on zeroed memory', async () => {
    for (let call = 1; call <= 4; call++) {
      const result = await testbed.invokeFunction(artifact(PEEKER), { ownerId: 'owner-memory', stdin: new Uint8Array(0), args: [], env: {} });
      assert.equal(result.outcome, 'ok', result.message);
      assert.equal(text(result.stdout), 'clean', `call ${call}`);
    }
  });

  it("a second owner's function never sees what the first owner's left in a memory of the same type", async () => {
    // Another module (its own sha256), the same memory type: the pool may hand it the attacker's memory.
    const VICTIM = peeker(false);
    for (let round = 1; round <= 3; round++) {
      const attacker = await testbed.invokeFunction(artifact(PEEKER), { ownerId: 'owner-attacker', stdin: new Uint8Array(0), args: [], env: {} });
      assert.equal(attacker.outcome, 'ok', attacker.message);
      const victim = await testbed.invokeFunction(artifact(VICTIM), { ownerId: 'owner-victim', stdin: new Uint8Array(0), args: [], env: {} });
      assert.equal(victim.outcome, 'ok', victim.message);
      assert.equal(text(victim.stdout), 'clean', `round ${round}`);
    }
  });

  it('every call starts at the declared size, even after a call grew its memory', async () => {
    for (let call = 1; call <= 3; call++) {
      const result = await testbed.invokeFunction(artifact(GROWER), { ownerId: 'owner-memory', stdin: new Uint8Array(0), args: [], env: {} });
      assert.equal(result.outcome, 'ok', result.message);
      assert.equal(text(result.stdout), '1', `call ${call}`);
    }
  });
});
