/**
 * The test bed without HTTP: the ABI serialization, linking (stubs, type
 * checks, export checks), the WASI runner, and the pool's isolation — an
 * infinite loop times out and the pool recovers, a memory hog stops at the
 * cap. Modules are small WAT fixtures assembled at test time.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { UserError } from '../../src/errors.ts';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { deserializePairs, HeaderMap, serializePairs } from '../../src/testbed/proxy-wasm/header-map.ts';
import { splice } from '../../src/testbed/proxy-wasm/host/buffers.ts';
import { parsePath } from '../../src/testbed/proxy-wasm/properties.ts';
import { headerChanges } from '../../src/testbed/render.ts';
import { Testbed } from '../../src/testbed/testbed.ts';
import type { PluginSettings } from '../../src/testbed/testbed.ts';
import { parseUpstreamList } from '../../src/testbed/upstream.ts';
import { busyFunction, filterWat, wat } from './wat.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

const artifact = (bytes: Uint8Array) => ({ sha256: createHash('sha256').update(bytes).digest('hex'), load: async () => bytes });
const plugin: PluginSettings = { info: { ownerId: 'owner-1', name: 'host-test', rootId: '', vmId: 'vm', versionId: 'version-1', version: '1.0.0', applicationId: 'app' }, config: '' };
const request = (path = '/'): HttpRequestData => ({ method: 'GET', path, authority: 'example.test', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] });
const text = (bytes: Uint8Array | undefined) => new TextDecoder().decode(bytes);

const ENV = `(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))`;

describe('ABI serialization', () => {
  it('serializes header maps as the spec example shows', () => {
    const bytes = serializePairs([
      ['a', '1'],
      ['b', '22'],
    ]);
    assert.deepEqual([...bytes], [2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x61, 0, 0x31, 0, 0x62, 0, 0x32, 0x32, 0]);
    assert.deepEqual(deserializePairs(bytes), [
      ['a', '1'],
      ['b', '22'],
    ]);
    assert.deepEqual(deserializePairs(new Uint8Array(0)), []);
    assert.deepEqual(deserializePairs(Uint8Array.of(0)), []);
    assert.equal(deserializePairs(bytes.subarray(0, bytes.length - 1)), undefined, 'a missing terminator is malformed');
    assert.equal(deserializePairs(Uint8Array.of(255, 255, 255, 255)), undefined, 'a huge count is malformed, not a huge allocation');
  });

  it('keeps header order, joins repeated values and replaces in place', () => {
    const map = new HeaderMap([
      ['A', '1'],
      ['b', '2'],
      ['a', '3'],
    ]);
    assert.equal(map.get('a'), '1,3');
    map.replace('a', 'x');
    assert.deepEqual(map.pairs(), [
      ['a', 'x'],
      ['b', '2'],
    ]);
    map.remove('B');
    map.add('c', '4');
    assert.deepEqual(map.pairs(), [
      ['a', 'x'],
      ['c', '4'],
    ]);
  });

  it('splices buffers for prepend, append and replace', () => {
    const data = new TextEncoder().encode('hello');
    assert.equal(text(splice(data, 0, 0, new TextEncoder().encode('>'))), '>hello');
    assert.equal(text(splice(data, 0xffffffff, 0, new TextEncoder().encode('!'))), 'hello!');
    assert.equal(text(splice(data, 1, 3, new TextEncoder().encode('ipp'))), 'hippo');
  });

  it('parses property paths with NUL or dot separators', () => {
    assert.deepEqual(parsePath(new TextEncoder().encode('request\0path')), ['request', 'path']);
    assert.deepEqual(parsePath(new TextEncoder().encode('request.path')), ['request', 'path']);
  });

  it('computes header changes as a multiset difference', () => {
    assert.deepEqual(
      headerChanges(
        [
          ['a', '1'],
          ['a', '1'],
          ['b', '2'],
        ],
        [
          ['a', '1'],
          ['c', '3'],
        ],
      ),
      {
        added: [['c', '3']],
        removed: [
          ['a', '1'],
          ['b', '2'],
        ],
      },
    );
  });

  it('accepts only named origins as upstreams', () => {
    assert.equal(parseUpstreamList('api=http://127.0.0.1:9000, other=https://example.com').get('api')?.host, '127.0.0.1:9000');
    assert.throws(() => parseUpstreamList('echo=http://x'), /echo/);
    assert.throws(() => parseUpstreamList('api=http://x/path'), /origin/);
    assert.throws(() => parseUpstreamList('api=file:///etc/passwd'), /origin/);
    assert.throws(() => parseUpstreamList('Bad Name=http://x'), /name/);
  });
});

describe('test bed host', () => {
  let testbed: Testbed;

  before(() => {
    // Port 1 on loopback refuses connections: an upstream that is down.
    testbed = new Testbed({ ...loadTestbedConfig({ KILN_TESTBED_UPSTREAMS: 'down=http://127.0.0.1:1' }), workers: 1, spares: 1, timeoutMs: 2_000 });
  });
  after(() => testbed.close());

  it('links every unknown import to a stub of the right type and reports it', async () => {
    const module = wat(
      filterWat(
        `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (if (i64.eq (call $future (i32.const 1)) (i64.const 12))
            (then (drop (call $add (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 2)))))
          (if (i32.eq (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)) (i32.const 52))
            (then (drop (call $add (i32.const 0) (i32.const 120) (i32.const 6) (i32.const 110) (i32.const 2)))))
          (i32.const 0))
        (data (i32.const 100) "x-stub")
        (data (i32.const 110) "ok")
        (data (i32.const 120) "x-wasi")`,
        `${ENV}
        (import "env" "proxy_from_the_future" (func $future (param i32) (result i64)))
        (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))`,
      ),
    );
    const result = await testbed.invokeFilter(artifact(module), plugin, { request: request() });
    assert.equal(result.outcome, 'ok', result.message);
    assert.deepEqual(result.forwarded?.headers, [
      ['x-stub', 'ok'],
      ['x-wasi', 'ok'],
    ]);
    assert.deepEqual(result.recording.unimplemented.sort(), ['env.proxy_from_the_future', 'wasi_snapshot_preview1.path_open']);
  });

  it('refuses modules it cannot run with a 422 that names the problem', async () => {
    const importedMemory = filterWat('', '(import "env" "proxy_memory" (memory 1))').replace('(memory (export "memory") 2)', '(export "memory" (memory 0))');
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['missing context callback', wat(filterWat('').replace('(func (export "proxy_on_context_create") (param i32 i32))', '')), /proxy_on_context_create/],
      ['callback of the wrong type', wat(filterWat('(func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0))')), /proxy_on_request_headers with type \(i32\) -> i32/],
      ['host function of the wrong type', wat(filterWat('', '(import "env" "proxy_log" (func (param i64 i32 i32) (result i32)))')), /env\.proxy_log with type \(i64, i32, i32\) -> i32/],
      ['imported memory', wat(importedMemory), /memory/],
    ];
    for (const [name, bytes, message] of cases) {
      await assert.rejects(
        testbed.invokeFilter(artifact(bytes), plugin, { request: request() }),
        (error: unknown) => error instanceof UserError && httpStatusOf(error) === 422 && message.test(error.message),
        name,
      );
    }
  });

  it('answers a failed upstream with a 502 that still goes through the filter', async () => {
    const module = wat(filterWat(`(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (drop (call $add (i32.const 2) (i32.const 100) (i32.const 1) (i32.const 100) (i32.const 1))) (i32.const 0)) (data (i32.const 100) "f")`, ENV));
    const result = await testbed.invokeFilter(artifact(module), plugin, { request: request(), upstream: 'down' });
    assert.equal(result.outcome, 'ok', result.message);
    assert.equal(result.response?.status, 502);
    assert.match(result.upstreamError ?? '', /upstream down failed/);
    assert.deepEqual(result.response?.headers.slice(-2), [
      ['x-kiln-upstream-error', 'down'],
      ['f', 'f'],
    ]);
  });

  it('reports a filter that rejects its configuration', async () => {
    const module = wat(filterWat('(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0))'));
    const result = await testbed.invokeFilter(artifact(module), plugin, { request: request() });
    assert.equal(result.outcome, 'configure_failed');
    assert.match(result.message ?? '', /proxy_on_configure returned false/);
  });

  it('stops an infinite loop at the deadline, replaces the worker and keeps serving', async () => {
    const looping = wat(filterWat('(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (loop $forever (br $forever)) (i32.const 0))'));
    const stuck = await testbed.invokeFilter(artifact(looping), plugin, { request: request(), timeoutMs: 200 });
    assert.equal(stuck.outcome, 'timeout');
    assert.match(stuck.message ?? '', /200 ms deadline and was stopped/);
    // The mechanism, not the latency: the looping worker was terminated and a fresh one serves the next call.
    assert.match(stuck.message ?? '', /the test bed worker was replaced/);
    const fine = wat(filterWat(`(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (drop (call $add (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 100) (i32.const 1))) (i32.const 0)) (data (i32.const 100) "k")`, ENV));
    const next = await testbed.invokeFilter(artifact(fine), plugin, { request: request() });
    assert.equal(next.outcome, 'ok', next.message);
    assert.deepEqual(next.forwarded?.headers, [['k', 'k']]);
  });

  it('stops a memory hog at the memory cap', async () => {
    const hog = wat(
      filterWat(
        `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          unreachable)`,
        '',
        1,
      ),
    );
    const result = await testbed.invokeFilter(artifact(hog), plugin, { request: request(), memoryMb: 8 });
    assert.equal(result.outcome, 'memory_limit', result.message);
    assert.match(result.message ?? '', /8 MiB cap/);
    assert.equal(result.module.memoryCapBytes, 8 * 1024 * 1024);
  });

  describe('WASI runner', () => {
    const cat = wat(`(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $envsizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $argsizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (local $n i32)
        (loop $copy
          (i32.store (i32.const 0) (i32.const 1024))
          (i32.store (i32.const 4) (i32.const 1024))
          (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
          (local.set $n (i32.load (i32.const 16)))
          (if (i32.gt_u (local.get $n) (i32.const 0))
            (then
              (i32.store (i32.const 4) (local.get $n))
              (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
              (br $copy))))
        (drop (call $argsizes (i32.const 32) (i32.const 36)))
        (drop (call $envsizes (i32.const 40) (i32.const 44)))
        (call $exit (i32.add (i32.mul (i32.load (i32.const 32)) (i32.const 10)) (i32.load (i32.const 40))))))`);

    it('copies stdin to stdout and sees args and environment', async () => {
      const input = 'x'.repeat(3000);
      const result = await testbed.invokeFunction(artifact(cat), { ownerId: 'owner-1', stdin: new TextEncoder().encode(input), args: ['cat', 'a', 'b'], env: { GREETING: 'hi' } });
      assert.equal(result.outcome, 'ok', result.message);
      assert.equal(text(result.stdout), input);
      assert.equal(result.exitCode, 31, 'argc 3, one environment variable');
    });

    it('joins several writes into one output and cuts it at maxOutputBytes, marked truncated', async () => {
      // Writes 700 bytes of "a" and then 700 of "b" to stdout: 1,400 bytes against a cap of 1,024.
      const twice = wat(`(module
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (memory.fill (i32.const 1000) (i32.const 97) (i32.const 700))
          (memory.fill (i32.const 2000) (i32.const 98) (i32.const 700))
          (i32.store (i32.const 0) (i32.const 1000))
          (i32.store (i32.const 4) (i32.const 700))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
          (i32.store (i32.const 0) (i32.const 2000))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))`);
      const small = new Testbed({ ...loadTestbedConfig({}), workers: 1, spares: 0, maxOutputBytes: 1024 });
      try {
        const result = await small.invokeFunction(artifact(twice), { ownerId: 'owner-1', stdin: new Uint8Array(0), args: ['twice'], env: {} });
        assert.equal(result.outcome, 'ok', result.message);
        assert.equal(text(result.stdout), 'a'.repeat(700) + 'b'.repeat(324));
        assert.equal(result.stdoutTruncated, true);
        assert.equal(result.stdout.byteLength, result.stdout.buffer.byteLength, 'the output is its own buffer, not a slice of a larger one');
        assert.equal(result.stderrTruncated, false);
        assert.equal(result.stderr.length, 0);
      } finally {
        await small.close();
      }
    });

    it('keeps output written before a trap, and reports a loop as a timeout', async () => {
      const trapping = wat(`(module
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 100) "before the trap\\n")
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 16))
          (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
          unreachable))`);
      const trapped = await testbed.invokeFunction(artifact(trapping), { ownerId: 'owner-1', stdin: new Uint8Array(0), args: ['t'], env: {} });
      assert.equal(trapped.outcome, 'trap');
      assert.equal(trapped.exitCode, null);
      assert.equal(text(trapped.stderr), 'before the trap\n');
      assert.ok(trapped.stack?.some((frame) => frame.includes('wasm')), JSON.stringify(trapped.stack));

      const looping = busyFunction();
      const timedOut = await testbed.invokeFunction(artifact(looping), { ownerId: 'owner-1', stdin: new Uint8Array(0), args: ['l'], env: {}, timeoutMs: 150 });
      assert.equal(timedOut.outcome, 'timeout');
      const again = await testbed.invokeFunction(artifact(cat), { ownerId: 'owner-1', stdin: new TextEncoder().encode('still here'), args: ['cat'], env: {} });
      assert.equal(text(again.stdout), 'still here');
    });
  });
});
