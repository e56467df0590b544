/**
 * Inspects (parses and validates, never instantiates) a built module on a
 * worker thread. WebAssembly.validate is synchronous and costs about a
 * second for a 60 MB module: on the API's event loop that second would stall
 * every other request. Compiling is not running: the thread executes no
 * guest code, so untrusted bytes never run in the API process.
 *
 * One thread per inspection (builds finish a few times a minute; the ~30 ms
 * start-up is noise beside validation), at most INSPECT_CONCURRENCY at once,
 * each with a bounded heap and a deadline.
 */
import { Worker } from 'node:worker_threads';
import { PlatformError } from '../errors.ts';
import type { ModuleInfo } from '../wasm/inspect.ts';

export type Inspection = { ok: true; info: ModuleInfo; threadId: number } | { ok: false; reason: string };

export interface InspectLimits {
  /** Modules larger than this are refused without being parsed. */
  maxBytes: number;
  /** A validation still running after this is abandoned (the thread is terminated). */
  deadlineMs: number;
}

/** Inspections running at once: each may hold a core for a second. */
const INSPECT_CONCURRENCY = 2;
/** V8 heap of an inspection thread; the module bytes live outside it. */
const THREAD_HEAP_MB = 128;

export interface InspectRequest {
  bytes: ArrayBuffer;
}

export type InspectReply = { ok: true; info: ModuleInfo; threadId: number } | { ok: false; invalid: true; reason: string } | { ok: false; invalid: false; reason: string };

let running = 0;
const waiting: Array<() => void> = [];

async function slot(): Promise<() => void> {
  if (running >= INSPECT_CONCURRENCY) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  return () => {
    running--;
    waiting.shift()?.();
  };
}

export async function inspectOffThread(module: Uint8Array, limits: InspectLimits): Promise<Inspection> {
  if (module.byteLength > limits.maxBytes) return { ok: false, reason: `the module is ${module.byteLength} bytes, above the ${limits.maxBytes}-byte limit for artifacts` };
  const release = await slot();
  try {
    const reply = await runThread(module, limits.deadlineMs);
    if (reply.ok) return reply;
    if (reply.invalid) return { ok: false, reason: reply.reason };
    throw new PlatformError('evaluator_failed', `inspecting the module failed: ${reply.reason}`);
  } finally {
    release();
  }
}

function runThread(module: Uint8Array, deadlineMs: number): Promise<InspectReply> {
  // A private copy is transferred (moved, not cloned) to the thread.
  const bytes = new Uint8Array(module).buffer;
  const worker = new Worker(bootstrapSource(), { eval: true, resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB } });
  return new Promise<InspectReply>((resolve) => {
    let settled = false;
    const settle = (reply: InspectReply): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(reply);
    };
    const timer = setTimeout(() => settle({ ok: false, invalid: true, reason: `validating the module took longer than ${deadlineMs} ms` }), deadlineMs);
    worker.once('message', (reply: InspectReply) => settle(reply));
    worker.once('error', (error) => settle({ ok: false, invalid: false, reason: error.message }));
    worker.once('exit', (code) => settle({ ok: false, invalid: false, reason: `the inspection thread exited (${code}) without an answer` }));
    const request: InspectRequest = { bytes };
    worker.postMessage(request, [bytes]);
  });
}

function bootstrapSource(): string {
  const typescript = import.meta.url.endsWith('.ts');
  const target = JSON.stringify(new URL(typescript ? './inspect-worker.ts' : './inspect-worker.js', import.meta.url).href);
  if (!typescript) return `import(${target});`;
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return `import(${tsx}).then((api) => { api.register(); return import(${target}); });`;
}
