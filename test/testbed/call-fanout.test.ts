/**
 * maxHttpCalls bounds the calls a filter has in flight, not only those of one
 * step: a filter that makes maxHttpCalls calls from every call response would
 * otherwise multiply its calls by maxHttpCalls each round (16, 256, 4,096…)
 * before maxHttpCallRounds ends it. Run on an in-process Testbed with the
 * built-in echo upstream (the hostile corpus does the same over gRPC through
 * the real pipeline).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import { serializePairs } from '../../src/testbed/proxy-wasm/header-map.ts';
import { Testbed } from '../../src/testbed/testbed.ts';
import { filterWat, wat } from './wat.ts';

const MAX_CALLS = 4;
const MAX_ROUNDS = 5;

const headers = serializePairs([
  [':method', 'GET'],
  [':path', '/'],
  [':authority', 'echo'],
]);
const hex = [...headers].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');

/** Tries 10 echo calls from the request headers and from every call response. */
const FAN_OUT = wat(
  filterWat(
    `(func $flood (local $i i32)
      (loop $more
        (drop (call $call (i32.const 200) (i32.const 4) (i32.const 300) (i32.const ${headers.length}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 96)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 10)))))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (call $flood) (i32.const 1))
    (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32) (call $flood))
    (data (i32.const 200) "echo") (data (i32.const 300) "${hex}")`,
    '(import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))',
  ),
);

describe('HTTP call fan-out', () => {
  let testbed: Testbed;
  before(() => {
    testbed = new Testbed({ ...loadTestbedConfig({}), workers: 1, spares: 0, timeoutMs: 10_000, maxHttpCalls: MAX_CALLS, maxHttpCallRounds: MAX_ROUNDS });
  });
  after(() => testbed.close());

  it('calls made from call responses share maxHttpCalls with the calls still in flight', async () => {
    const plugin = { info: { ownerId: 'mallory', name: 'fan-out', rootId: '', vmId: 'v', versionId: 'v', version: '1', applicationId: 'a' }, config: '' };
    const artifact = { sha256: createHash('sha256').update(FAN_OUT).digest('hex'), load: async () => FAN_OUT };
    const result = await testbed.invokeFilter(artifact, plugin, { request: { method: 'GET', path: '/', authority: 'x', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] } });
    assert.equal(result.outcome, 'limit_exceeded', result.message);
    assert.equal(result.limit, 'maxHttpCallRounds');
    assert.ok(result.recording.limits.includes('maxHttpCalls'), JSON.stringify(result.recording.limits));
    // Each round carries at most MAX_CALLS calls; with the per-step count it was 4 + 16 + 64 + 256 + 1,024.
    assert.ok(result.httpCalls.length <= MAX_CALLS * MAX_ROUNDS, `${result.httpCalls.length} calls were made`);
    assert.ok(result.httpCalls.length >= MAX_CALLS, `${result.httpCalls.length} calls were made`);
  });
});
