/**
 * The test bed through the real API: a C filter on the raw ABI (fixtures/
 * abi-filter, built by runBuild in the bubblewrap sandbox) exercises every
 * ABI area through POST /v1/versions/:id/invoke and through the preview URL
 * with real HTTP, to the built-in echo upstream and to an allow-listed one.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { call, startTestKiln } from '../support/kiln.ts';
import type { TestKiln } from '../support/kiln.ts';
import { EXAMPLES, FIXTURES, publish, SandboxBuilder, sandboxSkip } from './support.ts';
import type { Json } from './support.ts';
import { filterWat, wat } from './wat.ts';

interface BackendRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  trailers: NodeJS.Dict<string>;
}

/** An upstream on loopback that records what it receives and answers with a header to remove and trailers. */
async function startBackend(): Promise<{ server: http.Server; port: number; received: BackendRequest[] }> {
  const received: BackendRequest[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), trailers: request.trailers });
      response.writeHead(200, { 'content-type': 'text/plain', 'x-backend': 'yes', 'x-remove-response': '1', trailer: 'x-backend-trailer' });
      response.addTrailers({ 'x-backend-trailer': 'yes' });
      response.end(`backend saw ${request.method} ${request.url}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, received };
}

const skip = await sandboxSkip();

describe('test bed over HTTP', { skip, timeout: 180_000 }, () => {
  let t: TestKiln;
  let builder: SandboxBuilder;
  let backend: Awaited<ReturnType<typeof startBackend>>;
  let filterId: string;
  let backendFilterId: string;
  let bobToken: string;

  const api = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.ownerToken, ...options });
  const invoke = (id: string, json: unknown) => api('POST', `/v1/versions/${id}/invoke`, { json });
  const header = (pairs: Array<[string, string]>, key: string) => pairs.find(([k]) => k === key)?.[1];
  const preview = (id: string, path: string, init: RequestInit = {}) =>
    fetch(`${t.url}/preview/${id}${path}`, { ...init, headers: { authorization: `Bearer ${t.ownerToken}`, ...(init.headers as Record<string, string> | undefined) } });

  before(async () => {
    backend = await startBackend();
    // Read by the test bed routes when the API starts.
    process.env.KILN_TESTBED_UPSTREAMS = `backend=http://127.0.0.1:${backend.port}`;
    process.env.KILN_TESTBED_WORKERS = '1';
    t = await startTestKiln();
    builder = new SandboxBuilder();
    const module = await builder.build(`${FIXTURES}abi-filter`);
    filterId = await publish(t, module, { kind: 'proxy-wasm', config: 'hello-config', name: 'abi-filter' });
    backendFilterId = await publish(t, module, { kind: 'proxy-wasm', config: JSON.stringify({ preview: { upstream: 'backend' } }), name: 'abi-backend' });
    const bob = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: 'bob' } });
    bobToken = bob.body.token;
  });

  after(async () => {
    await t?.close();
    await builder?.dispose();
    backend?.server.close();
    delete process.env.KILN_TESTBED_UPSTREAMS;
    delete process.env.KILN_TESTBED_WORKERS;
  });

  describe('invoke a filter', () => {
    it('shows what the filter did to headers, body and trailers, with its logs and callback timings', async () => {
      const { status, body } = await invoke(filterId, {
        request: { method: 'POST', path: '/anything?q=1', headers: { 'user-agent': 'curl/8', 'x-remove-me': '1' }, body: { text: 'payload' }, trailers: [['x-t', '1']] },
      });
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.kind, 'proxy-wasm');
      assert.equal(body.outcome, 'ok', body.message);
      assert.equal(body.request.forwarded, true);
      assert.deepEqual(body.request.changes.headers.added, [
        ['user-agent', 'abi-filter'],
        ['x-abi-filter', 'on'],
        ['x-missing', 'absent'],
      ]);
      assert.deepEqual(body.request.changes.headers.removed, [
        ['user-agent', 'curl/8'],
        ['x-remove-me', '1'],
      ]);
      assert.equal(body.request.body.text, '[filtered] payload [end]', 'prepend and append through proxy_set_buffer_bytes');
      assert.equal(body.request.changes.body, true);
      assert.deepEqual(body.request.trailers, [
        ['x-t', '1'],
        ['x-trailer-seen', 'yes'],
      ]);
      assert.equal(body.upstream.name, 'echo');
      assert.equal(JSON.parse(body.upstream.body.text).body.text, '[filtered] payload [end]', 'the echo upstream received the filtered request');
      assert.equal(body.response.source, 'upstream');
      assert.deepEqual(body.response.changes.headers.added, [['x-abi-response', 'yes']]);
      const messages = body.logs.map((line: Json) => `${line.level} ${line.message}`);
      assert.ok(messages.includes('info abi-filter: configured with hello-config'), messages.join('\n'));
      assert.ok(messages.includes('info abi-filter: on_log /anything?q=1 status 200 seen 1'), 'proxy_on_log reads properties set earlier in the stream');
      const names = body.callbacks.map((c: Json) => c.name);
      for (const name of ['instantiate', 'proxy_on_vm_start', 'proxy_on_configure', 'proxy_on_request_headers', 'proxy_on_request_body', 'proxy_on_request_trailers', 'proxy_on_response_headers', 'proxy_on_response_body', 'proxy_on_done', 'proxy_on_log', 'proxy_on_delete']) {
        assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
      }
      assert.ok(body.callbacks.every((c: Json) => typeof c.durationMs === 'number' && c.durationMs >= 0));
      assert.equal(body.callbacks.find((c: Json) => c.name === 'proxy_on_request_headers').returned, 0);
      assert.equal(body.timings.vmStarted, true);
      assert.equal(body.module.memoryCapBytes, 64 * 1024 * 1024);
    });

    it('filters a simulated upstream response: status, headers, body rewrite and trailers', async () => {
      const { body } = await invoke(filterId, {
        request: { path: '/rewrite-body' },
        response: { status: 201, headers: { 'x-remove-response': '1', 'content-type': 'application/json' }, body: { json: { a: 1 } }, trailers: { 'x-up': '1' } },
      });
      assert.equal(body.outcome, 'ok', body.message);
      assert.equal(body.upstream.name, 'simulated');
      assert.equal(body.upstream.body.text, '{"a":1}');
      assert.equal(body.response.status, 201);
      assert.equal(body.response.body.text, 'rewritten');
      assert.equal(header(body.response.headers, 'x-remove-response'), undefined);
      assert.deepEqual(body.response.trailers, [
        ['x-up', '1'],
        ['x-abi-trailer', 'yes'],
      ]);
      assert.deepEqual(body.response.changes.headers.removed, [['x-remove-response', '1']]);
    });

    it('reports a local response, which goes through the response callbacks', async () => {
      const { body } = await invoke(filterId, { request: { path: '/local' } });
      assert.equal(body.outcome, 'ok');
      assert.equal(body.request.forwarded, false);
      assert.equal(body.upstream, null);
      assert.equal(body.response.source, 'local');
      assert.equal(body.response.status, 403);
      assert.equal(body.response.body.text, 'denied by abi-filter');
      assert.equal(header(body.response.headers, 'x-local'), 'yes');
      assert.equal(header(body.response.headers, 'x-abi-saw-local'), 'yes');
      assert.deepEqual(body.localResponse, { status: 403, details: 'abi_denied', sentFrom: 'proxy_on_request_headers', grpcStatus: -1 });
    });

    it('performs HTTP calls to allowed upstreams and resumes the request from the answer', async () => {
      const real = await invoke(filterId, { request: { path: '/call' } });
      assert.equal(real.body.outcome, 'ok', real.body.message);
      assert.equal(real.body.httpCalls.length, 1);
      assert.deepEqual({ ...real.body.httpCalls[0], durationMs: 0 }, { token: 1, upstream: 'echo', method: 'POST', path: '/from-filter', status: 200, durationMs: 0 });
      const forwarded = real.body.request.headers;
      assert.equal(header(forwarded, 'x-call-status'), '200');
      assert.equal(header(forwarded, 'x-call-get-status'), '200', 'proxy_get_status');
      assert.equal(header(forwarded, 'x-call-echoed-body'), 'yes', 'the call body reached the upstream and its answer the filter');
      const simulated = await invoke(filterId, { request: { path: '/call' }, httpCallResponses: { echo: { status: 418, body: { text: 'short' } } } });
      assert.equal(header(simulated.body.request.headers, 'x-call-status'), '418');
      assert.equal(header(simulated.body.request.headers, 'x-call-body-size'), '5');
    });

    it('serves properties, shared data with CAS, queues, metrics, log levels, ticks and header pairs', async () => {
      const headersOf = async (json: Json) => {
        const { body } = await invoke(filterId, json);
        assert.equal(body.outcome, 'ok', body.message);
        return { body, get: (key: string) => header(body.request.headers, key) };
      };
      const props = await headersOf({ request: { path: '/props', headers: { 'user-agent': 'kiln-test' }, sourceAddress: '198.51.100.7' } });
      assert.equal(props.get('x-prop-path'), '/props');
      assert.equal(props.get('x-prop-method'), 'GET');
      assert.match(props.get('x-prop-source') ?? '', /^198\.51\.100\.7:\d+$/);
      assert.equal(props.get('x-prop-plugin'), 'abi-filter', 'plugin_name is the application name');
      assert.equal(props.get('x-prop-user-agent'), 'kiln-test');
      assert.equal(props.get('x-prop-set'), '0');
      assert.equal(props.get('x-prop-set-builtin'), '2', 'built-in properties are read-only (BAD_ARGUMENT)');
      assert.equal(props.get('x-prop-note'), 'kept');
      assert.equal(props.get('x-prop-missing'), '1', 'NOT_FOUND');

      const shared = await headersOf({ request: { path: '/shared' } });
      assert.equal(shared.get('x-hits'), '1', 'a fresh VM per invocation');
      assert.equal(shared.get('x-shared-set'), '0');
      assert.equal(shared.get('x-shared-stale'), '8', 'a stale CAS is CAS_MISMATCH');
      assert.equal(shared.get('x-shared-missing'), '1');

      const queue = await headersOf({ request: { path: '/queue' }, ticks: 3 });
      assert.equal(queue.get('x-queue-resolved'), '0');
      assert.equal(queue.get('x-queue-enqueued'), '0');
      assert.equal(queue.get('x-queue-unknown'), '1');
      assert.equal(queue.get('x-ticks-seen'), '3', 'proxy_on_tick ran as many times as asked');
      assert.ok(queue.body.logs.some((line: Json) => line.message === 'abi-filter: queue item hello-queue'), 'proxy_on_queue_ready on the root context');
      assert.deepEqual(queue.body.sharedData.map((entry: Json) => entry.key), ['ticks']);

      const allLogs = await headersOf({ request: { path: '/log' } });
      assert.equal(allLogs.get('x-log-level'), '0');
      assert.equal(allLogs.get('x-log-bad-level'), '2', 'an unknown level is BAD_ARGUMENT');
      assert.equal(allLogs.get('x-time-ok'), 'yes');
      const lines = allLogs.body.logs.map((line: Json) => `${line.level} ${line.message}`);
      for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'critical']) assert.ok(lines.includes(`${level} abi-filter: ${level} line`), lines.join('\n'));
      assert.ok(lines.includes('info abi-filter: stdout line'), 'WASI stdout is logged at info');
      assert.ok(lines.includes('error abi-filter: stderr line'), 'WASI stderr is logged at error');
      const warnOnly = await headersOf({ request: { path: '/log' }, logLevel: 'warn' });
      assert.equal(warnOnly.get('x-log-level'), '3');
      assert.deepEqual(
        warnOnly.body.logs.map((line: Json) => line.level),
        ['warn', 'error', 'critical', 'error'],
      );

      const metrics = await headersOf({ request: { path: '/metrics' } });
      assert.equal(metrics.get('x-counter'), '6');
      assert.equal(metrics.get('x-gauge'), '42');
      assert.equal(metrics.get('x-counter-negative'), '2', 'a counter cannot go down');
      assert.equal(metrics.get('x-metric-unknown'), '1');
      assert.deepEqual(metrics.body.metrics, [
        { name: 'abi_requests', type: 'counter', value: '6' },
        { name: 'abi_last_body', type: 'gauge', value: '42' },
        { name: 'abi_body_sizes', type: 'histogram', value: '9', count: 2, sum: '16' },
      ]);

      const stubs = await headersOf({ request: { path: '/stubs' } });
      assert.equal(stubs.get('x-stub'), '12', 'unimplemented calls answer UNIMPLEMENTED');
      assert.equal(stubs.get('x-foreign'), '1');
      assert.deepEqual(stubs.body.unimplemented, ['env.proxy_not_in_any_abi']);

      const pairs = await headersOf({ request: { path: '/pairs', headers: { a: '1' } } });
      assert.equal(pairs.body.request.method, 'PUT');
      assert.equal(pairs.body.request.path, '/rewritten');
      assert.equal(pairs.body.request.authority, 'rewritten.example');
      assert.equal(pairs.get('x-only'), 'this');
      assert.equal(pairs.get('x-pairs-before'), '5', ':method, :path, :authority, :scheme and a');
      assert.equal(pairs.body.request.changes.path, true);
    });

    it('passes the configured root id as plugin_root_id (preview.rootId), none when the config names none', async () => {
      // Adds the plugin_root_id property to the request as x-root-id.
      const rootIdFilter = wat(
        filterWat(
          `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (drop (call $get (i32.const 100) (i32.const 14) (i32.const 200) (i32.const 204)))
            (drop (call $add (i32.const 0) (i32.const 120) (i32.const 9) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
            (i32.const 0))
          (data (i32.const 100) "plugin_root_id") (data (i32.const 120) "x-root-id")`,
          `(import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
           (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))`,
        ),
      );
      const rootIdOf = async (config: string) => {
        const { body } = await invoke(await publish(t, rootIdFilter, { kind: 'proxy-wasm', config }), {});
        assert.equal(body.outcome, 'ok', body.message);
        return header(body.request.headers, 'x-root-id');
      };
      assert.equal(await rootIdOf(JSON.stringify({ preview: { rootId: 'add_header' } })), 'add_header');
      assert.equal(await rootIdOf('hello-config'), '');
      assert.equal(await rootIdOf(JSON.stringify({ preview: { rootId: 7 } })), '', 'only a string names a root id');
    });

    it('turns traps, pauses, closed streams and rejected configurations into outcomes', async () => {
      const trap = await invoke(filterId, { request: { path: '/trap' } });
      assert.equal(trap.status, 200);
      assert.equal(trap.body.outcome, 'trap');
      assert.match(trap.body.message, /unreachable/);
      assert.ok(trap.body.logs.some((line: Json) => line.message.startsWith('abi-filter: configured')), 'logs before the trap are kept');
      assert.equal(trap.body.response, null);
      const paused = await invoke(filterId, { request: { path: '/pause' } });
      assert.equal(paused.body.outcome, 'paused');
      assert.match(paused.body.message, /proxy_on_request_headers/);
      const closed = await invoke(filterId, { request: { path: '/close' } });
      assert.equal(closed.body.outcome, 'closed');
      const module = await builder.build(`${FIXTURES}abi-filter`);
      const rejecting = await publish(t, module, { kind: 'proxy-wasm', config: 'reject' });
      const rejected = await invoke(rejecting, {});
      assert.equal(rejected.body.outcome, 'configure_failed');
    });

    it('stops an infinite loop at the deadline and keeps serving; stops a memory hog at the cap', async () => {
      const loop = await invoke(filterId, { request: { path: '/loop' }, limits: { timeoutMs: 300 } });
      assert.equal(loop.status, 200);
      assert.equal(loop.body.outcome, 'timeout');
      assert.match(loop.body.message, /300 ms/);
      // The mechanism, not the latency: the runner's looping worker was terminated and replaced.
      assert.match(loop.body.message, /worker was replaced/);
      const next = await invoke(filterId, { request: { path: '/' } });
      assert.equal(next.body.outcome, 'ok', 'the pool recovered');
      const hog = await invoke(filterId, { request: { path: '/hog' }, limits: { memoryMb: 16 } });
      assert.equal(hog.status, 200);
      assert.equal(hog.body.outcome, 'memory_limit', hog.body.message);
      assert.match(hog.body.message, /16 MiB cap/);
      assert.equal((await preview(filterId, '/')).status, 200, 'the preview works after both');
    });

    it('refuses a module whose callbacks have the wrong types with a clear 422', async () => {
      const wrong = wat(filterWat('(func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0))'));
      const id = await publish(t, wrong, { kind: 'proxy-wasm' });
      const { status, body } = await invoke(id, {});
      assert.equal(status, 422, JSON.stringify(body));
      assert.equal(body.error.code, 'module_not_runnable');
      assert.match(body.error.message, /proxy_on_request_headers with type \(i32, i32\) -> i32, but the host calls it as \(i32, i32, i32\) -> i32/);
    });

    it('answers bad input with a 4xx, never a 5xx', async () => {
      const unbuilt = await publish(t, undefined, { kind: 'proxy-wasm' });
      const cases: Array<[string, unknown, number, RegExp]> = [
        [filterId, { request: { body: { base64: 'not base64!' } } }, 400, /base64|pattern/],
        [filterId, { request: { headers: { ':path': '/x' } } }, 400, /pseudo-header/],
        [filterId, { input: { text: 'x' } }, 400, /wasi-command|other kind/],
        [filterId, { limits: { timeoutMs: 999_999 } }, 400, /timeoutMs/],
        [filterId, { limits: { memoryMb: 100_000 } }, 400, /memoryMb/],
        [filterId, { upstream: 'evil.example.com' }, 400, /no test bed upstream/],
        [filterId, { surprise: true }, 400, /additional/],
        [filterId, { request: { path: 'no-slash' } }, 400, /path/],
        [randomUUID(), {}, 404, /does not exist/],
        [unbuilt, {}, 409, /no successful build/],
      ];
      for (const [id, json, status, message] of cases) {
        const answer = await invoke(id, json);
        assert.equal(answer.status, status, `${JSON.stringify(json)} → ${answer.status} ${JSON.stringify(answer.body)}`);
        assert.match(answer.body.error.message, message, JSON.stringify(json));
      }
      const asBob = await call<Json>(t.url, 'POST', `/v1/versions/${filterId}/invoke`, { token: bobToken, json: {} });
      assert.equal(asBob.status, 404, "another owner's version does not exist for bob");
    });
  });

  describe('invoke a function', () => {
    it('runs the C example with stdin and the WAT echo with args, env and binary output', async () => {
      const module = await builder.build(`${EXAMPLES}c-function`);
      const id = await publish(t, module, { kind: 'wasi-command' });
      const { status, body } = await invoke(id, { input: { text: 'hello kiln\n' } });
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.kind, 'wasi-command');
      assert.equal(body.outcome, 'ok', body.message);
      assert.equal(body.exitCode, 0);
      assert.equal(body.stdout.text, 'HELLO KILN\n\n[11 bytes]\n');
      assert.equal(body.stderr.text, '');
      assert.equal(typeof body.durationMs, 'number');
      const json = await invoke(id, { input: { json: { a: 'b' } } });
      assert.equal(json.body.stdout.text, '{"A":"B"}\n[9 bytes]\n');
      const filterFields = await invoke(id, { request: { path: '/' } });
      assert.equal(filterFields.status, 400);

      const echoBytes = wat(`(module
        (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $argsizes (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func $envsizes (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 1024))
          (i32.store (i32.const 4) (i32.const 1024))
          (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
          (i32.store (i32.const 4) (i32.load (i32.const 16)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
          (drop (call $argsizes (i32.const 32) (i32.const 36)))
          (drop (call $envsizes (i32.const 40) (i32.const 44)))
          (call $exit (i32.add (i32.mul (i32.load (i32.const 32)) (i32.const 10)) (i32.load (i32.const 40))))))`);
      const echoId = await publish(t, echoBytes, { kind: 'wasi-command' });
      const binary = await invoke(echoId, { input: { base64: Buffer.from([0xff, 0x00, 0x41]).toString('base64') }, args: ['x', 'y'], env: { A: '1', B: '2' } });
      assert.equal(binary.body.exitCode, 32, 'argv[0] plus two args, two variables');
      assert.equal(binary.body.stdout.base64, '/wBB', 'bytes that are not UTF-8 come back as base64 too');
      assert.equal(binary.body.stdout.size, 3);
      const badEnv = await invoke(echoId, { env: { 'A=B': '1' } });
      assert.equal(badEnv.status, 400);
    });
  });

  describe('preview', () => {
    it('sends real HTTP through the filter to the echo upstream', async () => {
      const response = await preview(filterId, '/hello/world?x=1', { method: 'POST', body: 'payload', headers: { 'content-type': 'text/plain', 'x-remove-me': 'gone' } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-abi-response'), 'yes');
      assert.match(response.headers.get('server-timing') ?? '', /^filter;dur=/);
      const echoed = (await response.json()) as Json;
      assert.equal(echoed.upstream, 'echo');
      assert.equal(echoed.method, 'POST');
      assert.equal(echoed.path, '/hello/world?x=1');
      assert.equal(echoed.body.text, '[filtered] payload [end]');
      const sent = new Map<string, string>(echoed.headers);
      assert.equal(sent.get('x-abi-filter'), 'on');
      assert.equal(sent.has('x-remove-me'), false);
      assert.equal(sent.has('authorization'), false, "Kiln's credentials never reach the filter or the upstream");
      const call = await preview(filterId, '/call');
      assert.equal(new Map<string, string>(((await call.json()) as Json).headers).get('x-call-status'), '200');
    });

    it("sends real HTTP to the version's allow-listed upstream, trailers both ways", async () => {
      const answer = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
        const request = http.request(`${t.url}/preview/${backendFilterId}/api/items?page=2`, { method: 'PUT', headers: { authorization: `Bearer ${t.ownerToken}`, trailer: 'x-client-trailer' } }, (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8'), trailers: response.trailers }));
          response.on('error', reject);
        });
        request.on('error', reject);
        request.write('chunked ');
        request.addTrailers({ 'x-client-trailer': 'sent' });
        request.end('body');
      });
      assert.equal(answer.status, 200, answer.body);
      assert.equal(answer.body, 'backend saw PUT /api/items?page=2');
      assert.equal(answer.headers['x-backend'], 'yes');
      assert.equal(answer.headers['x-abi-response'], 'yes');
      assert.equal(answer.headers['x-remove-response'], undefined, 'removed by the filter');
      assert.equal(answer.trailers['x-backend-trailer'], 'yes');
      assert.equal(answer.trailers['x-abi-trailer'], 'yes', 'added by proxy_on_response_trailers');
      const seen = backend.received.at(-1);
      assert.ok(seen);
      assert.equal(seen.url, '/api/items?page=2');
      assert.equal(seen.headers.host, `127.0.0.1:${backend.port}`, 'Host is the upstream, never chosen by the client');
      assert.equal(seen.headers['x-abi-filter'], 'on');
      assert.equal(seen.headers.authorization, undefined);
      assert.equal(seen.body, '[filtered] chunked body [end]');
      assert.equal(seen.trailers['x-client-trailer'], 'sent');
      assert.equal(seen.trailers['x-trailer-seen'], 'yes');
    });

    it('keeps a warm VM: shared data and timer ticks carry over between requests', async () => {
      const hits: string[] = [];
      for (let i = 0; i < 3; i++) {
        const echoed = (await (await preview(filterId, '/shared')).json()) as Json;
        hits.push(new Map<string, string>(echoed.headers).get('x-hits') ?? '');
      }
      assert.deepEqual(hits.map(Number).slice(1), [Number(hits[0]) + 1, Number(hits[0]) + 2]);
      // proxy_on_tick fires on a timer in the warm VM: the filter asks for a tick every 100 ms.
      // Wait for the first one however long a loaded host takes; only the suite's timeout ends a VM that never ticks.
      let ticksSeen = 0;
      while (ticksSeen < 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const queue = (await (await preview(filterId, '/queue')).json()) as Json;
        ticksSeen = Number(new Map<string, string>(queue.headers).get('x-ticks-seen'));
        assert.ok(Number.isInteger(ticksSeen), JSON.stringify(queue.headers));
      }
    });

    it('answers local responses, and guest failures as 5xx that say what happened', async () => {
      const local = await preview(filterId, '/local');
      assert.equal(local.status, 403);
      assert.equal(await local.text(), 'denied by abi-filter');
      assert.equal(local.headers.get('x-abi-saw-local'), 'yes');
      const trap = await preview(filterId, '/trap');
      assert.equal(trap.status, 502);
      assert.equal(trap.headers.get('x-kiln-outcome'), 'trap');
      assert.equal(((await trap.json()) as Json).error.code, 'filter_trap');
      const paused = await preview(filterId, '/pause');
      assert.equal(paused.status, 504);
      assert.equal((await preview(filterId, '/')).status, 200, 'a new VM replaces the one that trapped');
    });

    it('needs the owner token, hides other owners and runs only filters', async () => {
      assert.equal((await fetch(`${t.url}/preview/${filterId}/`)).status, 401);
      assert.equal((await fetch(`${t.url}/preview/${filterId}/`, { headers: { authorization: `Bearer ${bobToken}` } })).status, 404);
      assert.equal((await preview(randomUUID(), '/')).status, 404);
      assert.equal((await preview('not-a-uuid', '/')).status, 400);
      const fn = await publish(t, wat('(module (memory (export "memory") 1) (func (export "_start")))'), { kind: 'wasi-command' });
      const refused = await preview(fn, '/');
      assert.equal(refused.status, 400);
      assert.match(((await refused.json()) as Json).error.message, /invoke/);
    });
  });
});
