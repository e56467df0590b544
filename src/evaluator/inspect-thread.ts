/**
 * Inspects (parses and validates, never instantiates) a built module on a
 * worker thread. WebAssembly.validate is synchronous and costs about a
 * second for a 60 MB module: on the API's event loop that second would stall
 * every other request. Compiling is not running: the thread executes no
 * guest code, so untrusted bytes never run in the API process.
 *
 * One reused thread with a bounded heap; each inspection has a deadline.
 */
import { Worker } from 'node:worker_threads';
import { PlatformError } from '../errors.ts';
import type { ModuleInfo } from '../wasm/inspect.ts';
import { threadEntrySource } from '../threads/entry-source.ts';

export type Inspection = { ok: true; info: ModuleInfo; threadId: number } | { ok: false; reason: string };

export interface InspectLimits {
  /** Modules larger than this are refused without being parsed. */
  maxBytes: number;
  /** A validation still running after this is abandoned (the thread is terminated). */
  deadlineMs: number;
}

/** V8 heap of the inspection thread; the module bytes live outside it. */
const THREAD_HEAP_MB = 128;

export interface InspectRequest {
  id: number;
  bytes: ArrayBuffer;
}

export type InspectReply = { id: number } & ({ ok: true; info: ModuleInfo; threadId: number } | { ok: false; invalid: true; reason: string } | { ok: false; invalid: false; reason: string });

type Outcome = InspectReply extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/**
 * One long-lived thread, started on first use (or by warmInspectThread) and
 * reused: starting one costs far more than validating a small module, and
 * on a loaded host that start-up alone could outlast a worker's lease.
 * Inspections run one at a time, in order. A thread past its deadline or
 * dead is terminated; the next inspection starts a fresh one.
 */
class InspectThread {
  private worker?: Worker;
  private nextId = 1;
  private queue: Promise<unknown> = Promise.resolve();

  warm(): void {
    this.worker ??= this.spawn();
  }

  inspect(module: Uint8Array, deadlineMs: number): Promise<Outcome> {
    const run = this.queue.then(() => this.runOne(module, deadlineMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private spawn(): Worker {
    const worker = new Worker(threadEntrySource(import.meta.url, './inspect-worker'), { eval: true, resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB } });
    worker.unref();
    worker.on('error', () => undefined);
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = undefined;
    });
    return worker;
  }

  private runOne(module: Uint8Array, deadlineMs: number): Promise<Outcome> {
    const worker = (this.worker ??= this.spawn());
    const id = this.nextId++;
    // A private copy is transferred (moved, not cloned) to the thread.
    const bytes = new Uint8Array(module).buffer;
    return new Promise<Outcome>((resolve) => {
      const settle = (outcome: Outcome): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(outcome);
      };
      const onMessage = (reply: InspectReply): void => {
        if (reply.id !== id) return;
        const { id: _id, ...outcome } = reply;
        settle(outcome as Outcome);
      };
      const onExit = (code: number): void => settle({ ok: false, invalid: false, reason: `the inspection thread exited (${code}) without an answer` });
      const timer = setTimeout(() => {
        void this.close();
        settle({ ok: false, invalid: true, reason: `validating the module took longer than ${deadlineMs} ms` });
      }, deadlineMs);
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      const request: InspectRequest = { id, bytes };
      worker.postMessage(request, [bytes]);
    });
  }
}

const thread = new InspectThread();

let users = 0;

/** Starts the inspection thread ahead of the first build result; pair with closeInspectThread. */
export function warmInspectThread(): void {
  users++;
  thread.warm();
}

/** The thread is shared by every API in the process (tests run several): the last one out ends it. */
export async function closeInspectThread(): Promise<void> {
  users = Math.max(0, users - 1);
  if (users === 0) await thread.close();
}

export async function inspectOffThread(module: Uint8Array, limits: InspectLimits): Promise<Inspection> {
  if (module.byteLength > limits.maxBytes) return { ok: false, reason: `the module is ${module.byteLength} bytes, above the ${limits.maxBytes}-byte limit for artifacts` };
  const outcome = await thread.inspect(module, limits.deadlineMs);
  if (outcome.ok) return outcome;
  if (outcome.invalid) return { ok: false, reason: outcome.reason };
  throw new PlatformError('evaluator_failed', `inspecting the module failed: ${outcome.reason}`);
}
