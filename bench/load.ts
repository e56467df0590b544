/**
 * The closed-loop load generator behind the API figures (bench/api.ts) and
 * the invoke figure (bench/testbed.ts): virtual users on a thread of their
 * own (worker_threads), over keep-alive connections (http.Agent), each
 * sending the next request when the previous answer arrived. It does not
 * share the API's event loop; it still shares the machine's cores.
 */
import { Worker } from 'node:worker_threads';

export interface LoadResult {
  requests: number;
  errors: number;
  durationMs: number;
  /** Latencies in ms, sorted. */
  latencies: number[];
  /** The first answer refused by `requireOk` (the run stopped there). */
  failure?: string;
  /** Every answer received, warm-up and the run's last in-flight requests included: what CPU measured around the whole load was spent on. */
  answered: number;
}

/** A multipart version upload per request, each with a version number never used before. */
export interface UploadLoad {
  archiveBase64: string;
  versionPrefix: string;
}

export interface LoadOptions {
  /** The whole URL, path included. */
  url: string;
  token: string;
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** POST this JSON body with every request (else GET, or the upload). */
  json?: string;
  upload?: UploadLoad;
  /** Every answer must be 200 with `outcome: "ok"`; the first other one stops the run and is reported. */
  requireOk?: boolean;
}

/**
 * Plain JavaScript run with `eval: true`: the worker needs no TypeScript
 * loader, and nothing of the bench's own modules.
 */
const LOAD_GENERATOR = `
const http = require('node:http');
const { parentPort, workerData } = require('node:worker_threads');
const { url, token, connections, warmupMs, durationMs, json, upload, requireOk } = workerData;
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const options = { host: target.hostname, port: target.port, path: target.pathname + target.search, agent, headers: { authorization: 'Bearer ' + token } };
const boundary = 'kilnbench' + Math.random().toString(16).slice(2);
let uploads = 0;
function uploadBody() {
  const version = upload.versionPrefix + (++uploads);
  return Buffer.concat([
    Buffer.from('--' + boundary + '\\r\\ncontent-disposition: form-data; name="metadata"\\r\\n\\r\\n' + JSON.stringify({ version }) + '\\r\\n'),
    Buffer.from('--' + boundary + '\\r\\ncontent-disposition: form-data; name="source"; filename="source.tar.gz"\\r\\ncontent-type: application/gzip\\r\\n\\r\\n'),
    Buffer.from(upload.archiveBase64, 'base64'),
    Buffer.from('\\r\\n--' + boundary + '--\\r\\n'),
  ]);
}
function request() {
  if (upload) {
    const body = uploadBody();
    return { method: 'POST', body, headers: { ...options.headers, 'content-type': 'multipart/form-data; boundary=' + boundary, 'content-length': body.length } };
  }
  if (json !== undefined) return { method: 'POST', body: json, headers: { ...options.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) } };
  return { method: 'GET', body: undefined, headers: options.headers };
}
const latencies = [];
let errors = 0;
let answered = 0;
let failure;
let measuring = false;
let running = true;
function refuse(message) {
  failure ??= message;
  running = false;
}
function once() {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const { method, body, headers } = request();
    const sent = http.request({ ...options, method, headers }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => { if (requireOk) chunks.push(chunk); });
      response.on('end', () => {
        answered++;
        const ok = response.statusCode === 200 || response.statusCode === 202;
        if (requireOk) {
          const text = Buffer.concat(chunks).toString('utf8');
          let outcome;
          try { outcome = JSON.parse(text).outcome; } catch {}
          if (response.statusCode !== 200 || outcome !== 'ok') refuse(response.statusCode + ' ' + text.slice(0, 300));
        }
        if (measuring) {
          if (ok && failure === undefined) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
          else errors++;
        }
        resolve();
      });
    });
    sent.on('error', (error) => {
      if (requireOk) refuse(String(error));
      if (measuring) errors++;
      resolve();
    });
    sent.end(body);
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
      parentPort.postMessage({ requests: latencies.length, errors, durationMs: measuredMs, latencies, failure, answered });
    });
  }, durationMs);
}, warmupMs);
`;

export function closedLoopLoad(options: LoadOptions): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(LOAD_GENERATOR, { eval: true, workerData: options });
    worker.once('message', (result: LoadResult) => {
      void worker.terminate();
      resolve(result);
    });
    worker.once('error', reject);
  });
}
