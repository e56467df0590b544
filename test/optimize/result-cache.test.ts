import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OptimizeResultCache } from '../../src/optimize/result-cache.ts';

const options = { strip: true, wasmOpt: 'O2' as const, wizer: false, memoryCapPages: null };
const base = { original: Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0]), kind: 'wasi-command' as const, options, measure: true, wizerDirectory: null, namespace: 'a'.repeat(32) };

describe('optimize result cache', () => {
  it('keys on the bytes, the kind, the options, measuring and the owner namespace', () => {
    const key = OptimizeResultCache.key(base);
    assert.equal(OptimizeResultCache.key({ ...base, options: { memoryCapPages: null, wizer: false, wasmOpt: 'O2', strip: true } }), key, 'option order does not matter');
    const others = [
      { ...base, original: Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 1]) },
      { ...base, kind: 'proxy-wasm' as const },
      { ...base, options: { ...options, wasmOpt: 'O3' as const } },
      { ...base, measure: false },
      { ...base, namespace: 'b'.repeat(32) },
    ];
    for (const other of others) assert.notEqual(OptimizeResultCache.key(other), key);
  });

  it('hands out copies: a caller changing its result does not change the cache', () => {
    const cache = new OptimizeResultCache<{ note: string }>();
    cache.set('k', { optimized: Uint8Array.from([1, 2, 3]), details: { note: 'kept' } });
    const first = cache.get('k');
    assert.ok(first?.optimized);
    first.optimized[0] = 9;
    first.details.note = 'changed';
    assert.deepEqual(cache.get('k'), { optimized: Uint8Array.from([1, 2, 3]), details: { note: 'kept' } });
  });

  it('stays within its byte bound, dropping the least recently used first', () => {
    const entry = (size: number) => ({ optimized: new Uint8Array(size), details: {} });
    const cache = new OptimizeResultCache<object>(3 * (1000 + 1024));
    cache.set('a', entry(1000));
    cache.set('b', entry(1000));
    cache.set('c', entry(1000));
    assert.ok(cache.get('a'), 'a is now the most recently used');
    cache.set('d', entry(1000));
    assert.equal(cache.get('b'), undefined, 'b was the least recently used');
    assert.ok(cache.get('a'));
    assert.ok(cache.get('c'));
    assert.ok(cache.get('d'));
    cache.set('huge', entry(10_000));
    assert.equal(cache.get('huge'), undefined, 'an entry larger than the bound is not kept');
    assert.equal(cache.size, 3);
  });
});
