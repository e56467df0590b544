/**
 * API read path (BRIEF §9: ≥ 5,000 req/s, p99 < 20 ms on loopback):
 * `GET /v1/builds/:id` against startKiln with the embedded defaults (PGlite,
 * filesystem objects) and request logging off.
 *
 * The load generator is in-process but on its own thread (worker_threads),
 * so it does not share the API's event loop: closed-loop virtual users over
 * keep-alive connections (http.Agent), each sending the next request when
 * the previous answer arrived. It still shares the machine's 2 cores with
 * the API — and with whatever else runs there — so the figures are a lower
 * bound of what the API does with the cores to itself.
 *
 * Usage: node --import tsx bench/api.ts [seconds] [connections...]   (default 5 s at 16 and 64 connections)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { packDirectory } from '../src/archive/pack.ts';
import { loadConfig } from '../src/config.ts';
import { startKiln } from '../src/server/serve.ts';
import { percentile } from './stats.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- bench-side JSON access

const TARGET_RPS = 5_000;
const TARGET_P99_MS = 20;
const WARMUP_MS = 1_500;
const seconds = Math.max(1, Number(process.argv[2] ?? 5));
const levels = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [16, 64];

interface LoadResult {
  requests: number;
  errors: number;
  durationMs: number;
  /** Latencies in ms, sorted. */
  latencies: number[];
}

/**
 * Plain JavaScript run with `eval: true`: the worker needs no TypeScript
 * loader, and nothing of the bench's own modules.
 */
const LOAD_GENERATOR = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { url, token, connections, warmupMs, durationMs } = workerData;
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const options = { host: target.hostname, port: target.port, path: target.pathname, agent, headers: { authorization: 'Bearer ' + token } };
const latencies = [];
let errors = 0;
let measuring = false;
let running = true;
function once() {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const request = http.get(options, (response) => {
      response.on('data', () => {});
      response.on('end', () => {
        if (measuring) {
          if (response.statusCode === 200) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
          else errors++;
        }
        resolve();
      });
    });
    request.on('error', () => {
      if (measuring) errors++;
      resolve();
    });
  });
}
async function user() {
  while (running) await once();
}
const users = Array.from({ length: connections }, user);
let startedAt = 0;
setTimeout(() => {
  measuring = true;
  startedAt = performance.now();
  setTimeout(() => {
    measuring = false;
    running = false;
    const measuredMs = performance.now() - startedAt;
    Promise.all(users).then(() => {
      agent.destroy();
      latencies.sort((a, b) => a - b);
      parentPort.postMessage({ requests: latencies.length, errors, durationMs: measuredMs, latencies });
    });
  }, durationMs);
}, warmupMs);
`;

function load(url: string, token: string, connections: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(LOAD_GENERATOR, { eval: true, workerData: { url, token, connections, warmupMs: WARMUP_MS, durationMs: seconds * 1000 } });
    worker.once('message', (result: LoadResult) => {
      void worker.terminate();
      resolve(result);
    });
    worker.once('error', reject);
  });
}


/** Plays a worker through the internal protocol so one build has ended (no real compile needed to read it). */
async function finishedBuild(apiUrl: string, workerToken: string, ownerHeaders: Record<string, string>, appId: string): Promise<string> {
  const form = new FormData();
  form.append('metadata', JSON.stringify({ version: '1.0.0', kind: 'wasi-command' }));
  form.append('source', new Blob([new Uint8Array((await packDirectory(path.resolve(import.meta.dirname, '../examples/c-function'))).archive)]), 'source.tar.gz');
  const upload = (await (await fetch(new URL(`/v1/applications/${appId}/versions`, apiUrl), { method: 'POST', headers: ownerHeaders, body: form })).json()) as Json;
  const worker = { authorization: `Bearer ${workerToken}` };
  const claim = (await (await fetch(new URL('/internal/v1/jobs/claim', apiUrl), { method: 'POST', headers: { ...worker, 'content-type': 'application/json' }, body: JSON.stringify({ workerId: 'bench', waitMs: 1000 }) })).json()) as Json;
  const job = claim.job as Json;
  const lease = { ...worker, 'x-kiln-lease': String(job.leaseToken) };
  // The smallest valid WASI command: a _start function and a memory.
  const module = Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 19, 2, 6, 95, 115, 116, 97, 114, 116, 0, 0, 6, 109, 101, 109, 111, 114, 121, 2, 0, 10, 4, 1, 2, 0, 11]);
  await fetch(new URL(`/internal/v1/jobs/${job.id}/artifacts/original`, apiUrl), { method: 'PUT', headers: { ...lease, 'content-type': 'application/wasm' }, body: module });
  await fetch(new URL(`/internal/v1/jobs/${job.id}/result`, apiUrl), { method: 'POST', headers: { ...lease, 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'succeeded', stages: [] }) });
  const finished = (await (await fetch(new URL(`/v1/builds/${upload.build.id}`, apiUrl), { headers: ownerHeaders })).json()) as Json;
  if (finished.state !== 'succeeded') throw new Error(`the bench build is ${finished.state}, not succeeded`);
  return String(upload.build.id);
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-api-'));
  // Embedded defaults, but no local workers: the build stays queued, which is all a read needs.
  const config = loadConfig({ port: 0, dataDir, workers: 0 }, { KILN_LOG_LEVEL: 'warn' });
  const kiln = await startKiln(config, { logger: pino({ level: 'warn' }), logRequests: false });
  try {
    const token = (await readFile(path.join(dataDir, 'local-token'), 'utf8')).trim();
    const headers = { authorization: `Bearer ${token}` };
    const app = (await (await fetch(new URL('/v1/applications', kiln.url), { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench-api' }) })).json()) as Json;
    const finishedUrl = new URL(`/v1/builds/${await finishedBuild(kiln.url, kiln.credentials.workerToken, headers, app.id)}`, kiln.url).toString();
    // Uploaded after the others were finished: this one stays queued, so every read of it is a database query.
    const queuedForm = new FormData();
    queuedForm.append('metadata', JSON.stringify({ version: '3.0.0' }));
    queuedForm.append('source', new Blob([new Uint8Array((await packDirectory(path.resolve(import.meta.dirname, '../examples/c-function'))).archive)]), 'source.tar.gz');
    const queued = (await (await fetch(new URL(`/v1/applications/${app.id}/versions`, kiln.url), { method: 'POST', headers, body: queuedForm })).json()) as Json;
    const queuedUrl = new URL(`/v1/builds/${queued.build.id}`, kiln.url).toString();
    const check = (await (await fetch(queuedUrl, { headers })).json()) as Json;
    if (check.state !== 'queued') throw new Error(`GET ${queuedUrl}: expected a queued build, got ${JSON.stringify(check).slice(0, 200)}`);

    console.log(`API: GET /v1/builds/:id on loopback, embedded defaults (PGlite), request logging off`);
    console.log(`load generator: closed-loop keep-alive connections on a worker thread of this process, ${WARMUP_MS} ms warm-up, ${seconds} s measured`);
    console.log(`note: generator and API share this machine's ${os.cpus().length} cores (load average ${os.loadavg().map((value) => value.toFixed(2)).join(' ')}, other people's work included)`);
    const report = (label: string, result: LoadResult): number => {
      const rps = result.requests / (result.durationMs / 1000);
      const p50 = percentile(result.latencies, 50);
      const p99 = percentile(result.latencies, 99);
      console.log(
        `${label}: ${rps.toFixed(0).padStart(6)} req/s (${(rps / TARGET_RPS).toFixed(2)}× the ${TARGET_RPS}), ` +
          `p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (${(p99 / TARGET_P99_MS).toFixed(2)}× the ${TARGET_P99_MS} ms), ${result.errors} errors`,
      );
      return rps;
    };
    let best = 0;
    // A finished build (what clients poll for a result) is served from the
    // in-memory cache of ended builds; a queued one costs a database query.
    for (const connections of levels) best = Math.max(best, report(`GET /v1/builds/:id (finished), ${String(connections).padStart(3)} connections`, await load(finishedUrl, token, connections)));
    for (const connections of levels) report(`GET /v1/builds/:id (queued, database), ${String(connections).padStart(3)} connections`, await load(queuedUrl, token, connections));
    // Same server, same generator, no auth and no database: what HTTP alone costs here.
    const baseline = report(`GET /healthz (baseline), ${String(levels.at(-1)).padStart(3)} connections`, await load(new URL('/healthz', kiln.url).toString(), token, levels.at(-1) ?? 64));
    console.log(`builds read / HTTP-only baseline: ${(best / baseline).toFixed(2)}× (the rest of a build read is auth, the database query and serialisation)`);
  } finally {
    await kiln.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
