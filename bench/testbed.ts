/**
 * Test bed (BRIEF §9: a warm request through a filter adds ≤ 0.3 ms p50 over
 * the upstream alone; the first request after upload of a 1 MB module takes
 * ≤ 30 ms), plus invocations per second of a small function. One run, one
 * process: a real Kiln API (embedded defaults), a loopback upstream, and the
 * client all share the machine's cores, so every figure is printed next to
 * its baseline measured in the same run.
 *
 *   warm request: p50 of GET to the upstream directly vs GET through
 *     /preview/:id/* (client → Kiln → filter → upstream → filter → client);
 *     "added" is the difference. Also the filter alone: the exchange in the
 *     test bed (worker round trips, callbacks) with the in-process echo
 *     upstream, without any HTTP; and GET /healthz of the same API, which
 *     is what one more HTTP hop through Kiln costs before any filter runs.
 *   first request: a ~1 MB filter (real code, a unique copy each time so
 *     nothing is cached) is published (upload, build reported succeeded);
 *     the clock starts when the build has succeeded and stops when the first
 *     preview response has arrived: artifact read, memory cap, checks,
 *     compile, worker VM start, the request.
 *   invocations/s: a small WASI function (stdin → stdout), in-process and
 *     through POST /v1/versions/:id/invoke, one at a time and 4 at once.
 *
 * Usage: node --import tsx bench/testbed.ts [warm requests]   (default 2000)
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadTestbedConfig } from '../src/testbed/config.ts';
import { Testbed } from '../src/testbed/testbed.ts';
import { call, startTestKiln } from '../test/support/kiln.ts';
import type { TestKiln } from '../test/support/kiln.ts';
import { publish } from '../test/testbed/support.ts';
import { filterWat, wat } from '../test/testbed/wat.ts';
import { percentile } from './stats.ts';

const WARM_TARGET_MS = 0.3;
const FIRST_TARGET_MS = 30;
const warmRuns = Math.max(100, Number(process.argv[2] ?? 2000));

const ADD_HEADERS = `${'(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))'}`;
const SMALL_FILTER = filterWat(
  `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
     (drop (call $add (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 2))) (i32.const 0))
   (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
     (drop (call $add (i32.const 2) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 2))) (i32.const 0))
   (data (i32.const 100) "x-kiln")
   (data (i32.const 110) "on")`,
  ADD_HEADERS,
);

/** A filter of about 1 MB, nearly all of it code; a marker in a data segment makes each copy unique. */
function bigFilterWat(): string {
  const functions: string[] = [];
  for (let f = 0; f < 1500; f++) {
    const steps = Array.from({ length: 70 }, (_, i) => `(local.set 0 (i32.xor (i32.mul (local.get 0) (i32.const ${(f * 131 + i * 7919) % 100_000})) (i32.const ${i + 1})))`).join(' ');
    functions.push(`(func $f${f} (param i32) (result i32) ${steps} (local.get 0))`);
  }
  return filterWat(
    `${functions.join('\n')}
     (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
       (drop (call $f0 (local.get 0)))
       (drop (call $add (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 2))) (i32.const 0))
     (data (i32.const 100) "x-kiln")
     (data (i32.const 110) "on")
     (data (i32.const 200) "KILN-UNIQUE-00000000")`,
    ADD_HEADERS,
  );
}

function unique(module: Uint8Array, n: number): Uint8Array {
  const copy = new Uint8Array(module);
  const marker = Buffer.from('KILN-UNIQUE-00000000');
  const at = Buffer.from(copy).indexOf(marker);
  copy.set(Buffer.from(`KILN-UNIQUE-${String(n).padStart(8, '0')}`), at);
  return copy;
}

const CAT = `(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 1024))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 4) (i32.load (i32.const 16)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))`;


async function latencies(runs: number, once: () => Promise<void>): Promise<number[]> {
  for (let i = 0; i < Math.min(200, runs); i++) await once();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await once();
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}

/** Calls per second over `ms`, with `concurrency` callers each waiting for its answer. */
async function rate(ms: number, concurrency: number, once: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 50; i++) await once();
  let done = 0;
  const until = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await once();
        done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - started);
}

async function startUpstream(): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    response.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function drain(response: Response): Promise<void> {
  if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  await response.arrayBuffer();
}

async function warmRequests(t: TestKiln, upstream: string, testbed: Testbed): Promise<void> {
  const id = await publish(t, wat(SMALL_FILTER), { kind: 'proxy-wasm', config: JSON.stringify({ preview: { upstream: 'backend' } }) });
  const auth = { authorization: `Bearer ${t.ownerToken}` };
  const direct = await latencies(warmRuns, async () => drain(await fetch(`${upstream}/x`)));
  const through = await latencies(warmRuns, async () => drain(await fetch(`${t.url}/preview/${id}/x`, { headers: auth })));
  // One plain hop through Kiln's HTTP stack (Fastify, hooks, metrics), for scale.
  const plainHop = await latencies(warmRuns, async () => drain(await fetch(`${t.url}/healthz`)));
  const small = wat(SMALL_FILTER);
  const artifact = { sha256: createHash('sha256').update(small).digest('hex'), load: async () => small };
  const plugin = { info: { name: 'bench', rootId: '', vmId: 'bench', versionId: 'bench', version: '1.0.0', applicationId: 'bench', ownerId: 'bench' }, config: '' };
  const request = { method: 'GET', path: '/x', authority: 'bench', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] };
  const filterOnly = await latencies(warmRuns, async () => {
    const result = await testbed.serveFilter(artifact, plugin, request, {}, 'echo');
    if (result.outcome !== 'ok') throw new Error(result.message);
  });
  const added = percentile(through, 50) - percentile(direct, 50);
  console.log(`warm request (${warmRuns} sequential, keep-alive)`);
  console.log(`  upstream alone          p50 ${percentile(direct, 50).toFixed(3)} ms   p99 ${percentile(direct, 99).toFixed(3)} ms`);
  console.log(`  through /preview        p50 ${percentile(through, 50).toFixed(3)} ms   p99 ${percentile(through, 99).toFixed(3)} ms`);
  console.log(`  added by Kiln + filter  p50 ${added.toFixed(3)} ms   ${(added / WARM_TARGET_MS).toFixed(2)}x the ${WARM_TARGET_MS} ms target (ratio through/alone ${(percentile(through, 50) / percentile(direct, 50)).toFixed(2)})`);
  console.log(`  Kiln /healthz (a plain API hop, no filter)  p50 ${percentile(plainHop, 50).toFixed(3)} ms`);
  console.log(`  filter exchange alone   p50 ${percentile(filterOnly, 50).toFixed(3)} ms   ${(percentile(filterOnly, 50) / WARM_TARGET_MS).toFixed(2)}x the target (no HTTP: worker round trips + callbacks)`);
}

async function firstRequests(t: TestKiln): Promise<void> {
  const big = wat(bigFilterWat());
  const times: number[] = [];
  let compileMs: number[] = [];
  for (let i = 0; i < 7; i++) {
    const id = await publish(t, unique(big, i), { kind: 'proxy-wasm' });
    const started = performance.now();
    await drain(await fetch(`${t.url}/preview/${id}/first`, { headers: { authorization: `Bearer ${t.ownerToken}` } }));
    times.push(performance.now() - started);
  }
  for (let i = 100; i < 103; i++) {
    const id = await publish(t, unique(big, i), { kind: 'proxy-wasm' });
    const invoked = await call<Record<string, { compileMs: number }>>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json: {} });
    compileMs.push(invoked.body.module?.compileMs ?? NaN);
  }
  times.sort((a, b) => a - b);
  compileMs = compileMs.sort((a, b) => a - b);
  const median = percentile(times, 50);
  console.log(`first request after upload of a ${(big.length / 1024 / 1024).toFixed(2)} MB module (${times.length} fresh copies)`);
  console.log(`  median ${median.toFixed(1)} ms   min ${(times[0] ?? NaN).toFixed(1)} ms   max ${(times.at(-1) ?? NaN).toFixed(1)} ms   ${(median / FIRST_TARGET_MS).toFixed(2)}x the ${FIRST_TARGET_MS} ms target`);
  console.log(`  of which WebAssembly.compile: median ${percentile(compileMs, 50).toFixed(1)} ms`);
}

async function invocations(t: TestKiln, testbed: Testbed): Promise<void> {
  const module = wat(CAT);
  const id = await publish(t, module, { kind: 'wasi-command' });
  const artifact = { sha256: createHash('sha256').update(module).digest('hex'), load: async () => module };
  const stdin = new TextEncoder().encode('hello');
  const direct = () => testbed.invokeFunction(artifact, { ownerId: 'bench', stdin, args: ['cat'], env: {} }).then((r) => {
    if (r.outcome !== 'ok') throw new Error(r.message);
  });
  const overHttp = async () => {
    const answer = await call<{ outcome: string }>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json: { input: { text: 'hello' } } });
    if (answer.body.outcome !== 'ok') throw new Error(JSON.stringify(answer.body));
  };
  console.log('invocations of a small function (stdin → stdout), per second over 3 s');
  console.log(`  test bed, 1 at a time   ${(await rate(3_000, 1, direct)).toFixed(0)}/s`);
  console.log(`  test bed, 4 at once     ${(await rate(3_000, 4, direct)).toFixed(0)}/s`);
  console.log(`  HTTP invoke, 1 at a time ${(await rate(3_000, 1, overHttp)).toFixed(0)}/s`);
  console.log(`  HTTP invoke, 4 at once  ${(await rate(3_000, 4, overHttp)).toFixed(0)}/s`);
}

async function main(): Promise<void> {
  const upstream = await startUpstream();
  process.env.KILN_TESTBED_UPSTREAMS = `backend=${upstream.url}`;
  process.env.KILN_TESTBED_PREWARM = '1';
  const t = await startTestKiln();
  const testbed = new Testbed({ ...loadTestbedConfig(), prewarm: true });
  try {
    console.log(`test bed: ${loadTestbedConfig().workers} worker(s) + spare, ${(await import('node:os')).availableParallelism()} cores shared by API, workers, upstream and client`);
    await warmRequests(t, upstream.url, testbed);
    await firstRequests(t);
    await invocations(t, testbed);
  } finally {
    await testbed.close();
    await t.close();
    upstream.server.close();
  }
}

await main();
