/**
 * Limits inside the test bed host, tried with our own hostile filters in
 * WebAssembly text (assembled with wat2wasm) on real worker threads: each
 * must end at its named limit, with the limit reported to the caller.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { serializePairs } from '../../src/testbed/proxy-wasm/header-map.ts';
import { filterResultJson } from '../../src/testbed/render.ts';
import { Testbed } from '../../src/testbed/testbed.ts';
import type { PluginSettings } from '../../src/testbed/testbed.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { publish, type Json } from './support.ts';
import { filterWat, wat } from './wat.ts';

const artifact = (bytes: Uint8Array) => ({ sha256: createHash('sha256').update(bytes).digest('hex'), load: async () => bytes });
const pluginOf = (ownerId: string, versionId: string): PluginSettings => ({ info: { ownerId, name: 'limits', rootId: '', vmId: versionId, versionId, version: '1.0.0', applicationId: 'app' }, config: '' });
const request = (): HttpRequestData => ({ method: 'GET', path: '/', authority: 'example.test', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] });

/** Bytes as a WAT string literal. */
const watBytes = (bytes: Uint8Array): string => [...bytes].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');

const IMPORTS = `
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))`;

/** A filter whose proxy_on_request_headers runs `body` and continues; data at 100+ is free for strings. */
function filter(body: string, data = '', pages = 4, extra = ''): Uint8Array<ArrayBuffer> {
  return wat(filterWat(`(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $i i32) ${body} (i32.const 0)) ${data} ${extra}`, IMPORTS, pages));
}

/** Adds header "x-status: <digit>" with the status of the last call (in $s), so tests see what the filter was told. */
const REPORT_STATUS = `
  (i32.store8 (i32.const 90) (i32.add (i32.const 48) (local.get $s)))
  (drop (call $add (i32.const 0) (i32.const 80) (i32.const 8) (i32.const 90) (i32.const 1)))`;
const STATUS_DATA = `(data (i32.const 80) "x-status")`;
const header = (pairs: Array<[string, string]>, key: string) => pairs.find(([k]) => k === key)?.[1];

describe('test bed limits inside the host', () => {
  let testbed: Testbed;

  before(() => {
    const config = loadTestbedConfig({ KILN_TESTBED_MAX_SHARED_BYTES: String(1024 * 1024), KILN_TESTBED_MAX_QUEUE_DEPTH: '50', KILN_TESTBED_MAX_LOG_LINES: '200', KILN_TESTBED_MAX_HTTP_CALL_ROUNDS: '4' });
    testbed = new Testbed({ ...config, workers: 1, spares: 1, timeoutMs: 5_000 });
  });
  after(() => testbed.close());

  it('refuses header maps past maxHeaderCount and names the limit', async () => {
    const module = filter(
      `(loop $more
        (drop (call $add (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 110) (i32.const 2)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))`,
      '(data (i32.const 100) "x-flood") (data (i32.const 110) "ab")',
    );
    const result = await testbed.invokeFilter(artifact(module), pluginOf('owner-a', 'v-count'), { request: request() });
    assert.equal(result.outcome, 'ok', result.message);
    const count = (result.forwarded?.headers.length ?? 0) + 4; // plus the four pseudo-headers in the map
    assert.equal(count, 100, 'the map stopped at 100 fields');
    assert.ok(result.recording.limits.includes('maxHeaderCount'), JSON.stringify(result.recording));
  });

  it('refuses header maps past maxHeaderBytes (1,000 × 8 KiB values become at most 60 KiB)', async () => {
    const module = filter(
      `(loop $more
        (drop (call $add (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 4096) (i32.const 8192)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))`,
      '(data (i32.const 100) "x-flood")',
    );
    const result = await testbed.invokeFilter(artifact(module), pluginOf('owner-a', 'v-bytes'), { request: request() });
    assert.equal(result.outcome, 'ok', result.message);
    const bytes = (result.forwarded?.headers ?? []).reduce((n, [k, v]) => n + k.length + v.length, 0);
    assert.ok(bytes <= 60 * 1024 && bytes > 50 * 1024, `${bytes} bytes of headers`);
    assert.ok(result.recording.limits.includes('maxHeaderBytes'));
  });

  it('keeps at most maxLogLines log lines per call and says so', async () => {
    const module = filter(
      `(loop $more
        (drop (call $log (i32.const 2) (i32.const 100) (i32.const 5)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 100000))))`,
      '(data (i32.const 100) "flood")',
    );
    const result = await testbed.invokeFilter(artifact(module), pluginOf('owner-a', 'v-log'), { request: request() });
    assert.equal(result.outcome, 'ok', result.message);
    assert.equal(result.recording.logs.length, 200);
    assert.ok(result.recording.limits.includes('maxLogLines'));
  });

  it('ends a filter that chains HTTP calls past maxHttpCallRounds with limit_exceeded, and drops its warm VM', async () => {
    const headers = serializePairs([
      [':method', 'GET'],
      [':path', '/again'],
      [':authority', 'echo'],
    ]);
    const dispatch = `(drop (call $call (i32.const 200) (i32.const 4) (i32.const 300) (i32.const ${headers.length}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 96)))`;
    const module = filter(
      `${dispatch} (return (i32.const 1))`,
      `(data (i32.const 200) "echo") (data (i32.const 300) "${watBytes(headers)}")`,
      4,
      `(func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32) ${dispatch})`,
    );
    const plugin = pluginOf('owner-a', 'v-rounds');
    const invoked = await testbed.invokeFilter(artifact(module), plugin, { request: request() });
    assert.equal(invoked.outcome, 'limit_exceeded', invoked.message);
    assert.equal(invoked.limit, 'maxHttpCallRounds');
    assert.match(invoked.message ?? '', /maxHttpCallRounds/);
    assert.equal(invoked.httpCalls.length, 4);
    const json = filterResultJson({ ...invoked }, request(), { name: 'echo', simulated: false });
    assert.equal(json.limit, 'maxHttpCallRounds');

    const first = await testbed.serveFilter(artifact(module), plugin, request(), {}, 'echo');
    assert.equal(first.outcome, 'limit_exceeded');
    const second = await testbed.serveFilter(artifact(module), plugin, request(), {}, 'echo');
    assert.equal(second.vmStarted, true, 'the warm VM that failed was dropped, not reused with a stream half done');
  });

  it('bounds shared data per owner across its VMs, not per VM', async () => {
    // 600 KiB under key "k": two VMs of one owner would hold 1.2 MiB, over the 1 MiB set above.
    const module = filter(`(local $s i32) (local.set $s (call $set (i32.const 100) (i32.const 1) (i32.const 65536) (i32.const 614400) (i32.const 0))) ${REPORT_STATUS}`, `(data (i32.const 100) "k") ${STATUS_DATA}`, 16);
    const first = await testbed.serveFilter(artifact(module), pluginOf('owner-shared', 'v-one'), request(), {}, 'echo');
    assert.equal(header(first.forwarded?.headers ?? [], 'x-status'), '0', 'the first VM stores its value');
    const second = await testbed.serveFilter(artifact(module), pluginOf('owner-shared', 'v-two'), request(), {}, 'echo');
    assert.equal(header(second.forwarded?.headers ?? [], 'x-status'), ':', 'the same owner\'s second VM is refused (INTERNAL_FAILURE, 10 → ":")');
    assert.ok(second.recording.limits.includes('maxSharedBytes'));
    const other = await testbed.serveFilter(artifact(module), pluginOf('owner-other', 'v-three'), request(), {}, 'echo');
    assert.equal(header(other.forwarded?.headers ?? [], 'x-status'), '0', 'another owner has its own budget');
  });

  it('bounds queue depth', async () => {
    const module = filter(
      `(local $s i32)
      (drop (call $register (i32.const 100) (i32.const 1) (i32.const 96)))
      (loop $more
        (local.set $s (call $enqueue (i32.load (i32.const 96)) (i32.const 100) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.and (i32.eqz (local.get $s)) (i32.lt_u (local.get $i) (i32.const 100000)))))
      ${REPORT_STATUS}`,
      `(data (i32.const 100) "q") ${STATUS_DATA}`,
    );
    const result = await testbed.invokeFilter(artifact(module), pluginOf('owner-q', 'v-queue'), { request: request() });
    assert.equal(result.outcome, 'ok', result.message);
    assert.equal(header(result.forwarded?.headers ?? [], 'x-status'), ':');
    assert.ok(result.recording.limits.includes('maxQueueDepth'));
  });

  it('shows at most maxResultBodyBytes of each body in a result, with the real size', async () => {
    const module = filter('');
    const body = new Uint8Array(2 * 1024 * 1024).fill(0x61);
    const result = await testbed.invokeFilter(artifact(module), pluginOf('owner-a', 'v-body'), { request: request(), response: { status: 200, headers: [], body, trailers: [] } });
    const json = filterResultJson(result, request(), { name: 'echo', simulated: true }, { maxBodyBytes: 1024 });
    assert.equal(json.response?.body.size, body.length);
    assert.equal(json.response?.body.text.length, 1024);
    assert.equal(json.response?.body.truncated, true);
  });

  it('bounds a flood of empty gRPC stream messages by maxBodyBytes: each message costs its 5-byte prefix', async () => {
    // 1,024 bytes: 204 empty messages (1,020 bytes on the wire) are taken, the 205th is BAD_ARGUMENT (2).
    const config = loadTestbedConfig({ KILN_TESTBED_MAX_BODY_BYTES: '1024', KILN_TESTBED_UPSTREAMS: 'grpc=http://127.0.0.1:9' });
    const small = new Testbed({ ...config, workers: 1, spares: 0, timeoutMs: 5_000 });
    try {
      const imports = `${IMPORTS}
        (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
        (import "env" "proxy_grpc_send" (func $send (param i32 i32 i32 i32) (result i32)))
        (import "env" "proxy_grpc_cancel" (func $cancel (param i32) (result i32)))`;
      const module = wat(
        filterWat(
          `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $i i32) (local $s i32) (local $taken i32)
            (drop (call $stream (i32.const 100) (i32.const 4) (i32.const 110) (i32.const 1) (i32.const 120) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 200)))
            (loop $more
              (local.set $taken (i32.or (local.get $taken) (call $send (i32.load (i32.const 200)) (i32.const 0) (i32.const 0) (i32.const 0))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $more (i32.lt_u (local.get $i) (i32.const 204))))
            (local.set $s (local.get $taken))
            (i32.store8 (i32.const 90) (i32.add (i32.const 48) (local.get $s)))
            (drop (call $add (i32.const 0) (i32.const 130) (i32.const 7) (i32.const 90) (i32.const 1)))
            (local.set $s (call $send (i32.load (i32.const 200)) (i32.const 0) (i32.const 0) (i32.const 0)))
            ${REPORT_STATUS}
            (drop (call $cancel (i32.load (i32.const 200))))
            (i32.const 0))
          (data (i32.const 100) "grpc") (data (i32.const 110) "s") (data (i32.const 120) "m") (data (i32.const 130) "x-taken") ${STATUS_DATA}`,
          imports,
          4,
        ),
      );
      const result = await small.invokeFilter(artifact(module), pluginOf('owner-a', 'v-grpc-empty'), { request: request() });
      assert.equal(result.outcome, 'ok', result.message);
      const headers = result.forwarded?.headers ?? [];
      assert.equal(header(headers, 'x-taken'), '0', 'the first 204 empty messages were taken (OK)');
      assert.equal(header(headers, 'x-status'), '2', 'the 205th is BAD_ARGUMENT: the prefixes filled maxBodyBytes');
      assert.ok(result.recording.limits.includes('maxBodyBytes'), JSON.stringify(result.recording.limits));
    } finally {
      await small.close();
    }
  });
});

/** 1,000 × "x-flood: ab" added to the request headers. */
function headerFlood(): Uint8Array<ArrayBuffer> {
  return filter(
    `(loop $more
      (drop (call $add (i32.const 0) (i32.const 100) (i32.const 7) (i32.const 110) (i32.const 2)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))`,
    '(data (i32.const 100) "x-flood") (data (i32.const 110) "ab")',
  );
}

describe('a test bed limit set in the configuration reaches the runners (through the API)', { timeout: 120_000 }, () => {
  let t: TestKiln;
  const LOW_HEADER_COUNT = 20;

  before(async () => {
    // Through the loader's environment, as `KILN_TESTBED_MAX_HEADERS=20 kiln serve` would give it; one local runner process.
    t = await startTestKiln({ env: { KILN_TESTBED_MAX_HEADERS: String(LOW_HEADER_COUNT), KILN_TESTBED_RUNNERS: '1', KILN_TESTBED_WORKERS: '1', KILN_TESTBED_SPARES: '0' } });
  });
  after(() => t?.close());

  it('a header flood stops at KILN_TESTBED_MAX_HEADERS, not the default, and invoke names maxHeaderCount', async () => {
    const versionId = await publish(t, headerFlood(), { kind: 'proxy-wasm', name: 'header-flood' });
    const invoked = await call<Json>(t.url, 'POST', `/v1/versions/${versionId}/invoke`, { token: t.ownerToken, json: { request: { method: 'GET', path: '/' } } });
    assert.equal(invoked.status, 200, JSON.stringify(invoked.body));
    assert.equal(invoked.body.outcome, 'ok', invoked.body.message);
    assert.ok(invoked.body.limitsHit.includes('maxHeaderCount'), JSON.stringify(invoked.body.limitsHit));
    const floods = (invoked.body.request.headers as Array<[string, string]>).filter(([name]) => name === 'x-flood');
    assert.ok(floods.length > 0, 'the filter did add headers');
    // The map also holds the pseudo-headers and whatever the request brought: the flood gets less than the limit.
    assert.ok(floods.length < LOW_HEADER_COUNT, `${floods.length} x-flood headers passed a map limited to ${LOW_HEADER_COUNT} fields`);
    const runners = await call<Json>(t.url, 'GET', '/v1/testbed/runners', { token: t.adminToken });
    assert.ok(runners.body.localPids.length >= 1, 'the call ran in a local runner process, which got the limit over its pipe');
  });
});
