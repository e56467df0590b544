/**
 * The main-thread side of component execution: one worker thread hosting
 * a ComponentEngine (worker.ts), messages answered in order, a deadline on
 * each, the thread replaced when a deadline passes or it dies. The same
 * messages (protocol.ts) can be carried to a runner process instead.
 *
 * The worker gets an empty environment and a bounded JS heap; the engine
 * builds the only capabilities its guests get (see wasi-http-host.ts).
 */
import { Worker } from 'node:worker_threads';
import { Lru } from '../lru.ts';
import { isBridgeCall, serveBridgeCall, type BridgeCallMessage, type BridgeOutcome } from './bridge.ts';
import type { EngineMessage, EngineReply, HandleMessage, HandleReply, TranspiledFiles } from './protocol.ts';
import { threadEntrySource } from '../../threads/entry-source.ts';

/**
 * Transpiled components kept in this thread (about the component's size
 * each), so a worker replaced after a deadline prepares without jco.
 */
export const TRANSPILED_CACHE_ENTRIES = 4;

export interface ComponentRunnerOptions {
  /** V8 heap of the worker (old generation), MB. Wasm memories are not part of it. */
  heapMb: number;
  /** Deadline for preparing (transpile + compile + first instance), ms. */
  prepareTimeoutMs: number;
  /** The JS toolchain prefix (jco-transpile); passed in because the worker's environment is empty. */
  toolchainDir: string;
}

export class ComponentTimeoutError extends Error {
  constructor(readonly deadlineMs: number) {
    super(`the component did not answer within ${deadlineMs} ms`);
    this.name = 'ComponentTimeoutError';
  }
}

export class ComponentRunnerLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ComponentRunnerLostError';
  }
}

/** Performs a request's allow-listed outgoing call; `abort` fires when the request is over. */
export type OutgoingPerformer = (message: BridgeCallMessage, abort: AbortSignal) => Promise<BridgeOutcome>;

interface Pending {
  message: EngineMessage;
  deadlineMs: number;
  resolve: (reply: EngineReply) => void;
  reject: (error: Error) => void;
  timer?: NodeJS.Timeout;
  /** The request's outgoing calls (handle messages only). */
  perform?: OutgoingPerformer;
  /** Ends the request's outgoing calls still running when it is answered or its worker goes. */
  calls: AbortController;
}

export class ComponentRunner {
  private worker: Worker | undefined;
  private readonly queue: Pending[] = [];
  /** sha256s prepared in the current worker (a replaced worker starts empty). */
  private prepared = new Map<string, Promise<EngineReply>>();
  private closed = false;
  private readonly transpiled = new Lru<string, TranspiledFiles>(TRANSPILED_CACHE_ENTRIES);

  constructor(private readonly options: ComponentRunnerOptions) {}

  /** Transpiles and pre-warms once per sha256 per worker; concurrent callers share it. */
  prepare(sha256: string, memoryCapPages: number, load: () => Promise<Uint8Array>): Promise<EngineReply> {
    const existing = this.prepared.get(sha256);
    if (existing) return existing;
    const transpiled = this.transpiled.get(sha256);
    const work = load().then((component) => this.send({ type: 'prepare', sha256, component, memoryCapPages, ...(transpiled ? { transpiled } : {}) }, this.options.prepareTimeoutMs));
    this.prepared.set(sha256, work);
    const forget = () => {
      if (this.prepared.get(sha256) === work) this.prepared.delete(sha256);
    };
    work.then((reply) => {
      if (reply.type === 'prepared') this.transpiled.set(sha256, reply.transpiled);
      else forget();
    }, forget);
    return work;
  }

  async handle(message: Omit<HandleMessage, 'type'>, deadlineMs: number, perform?: OutgoingPerformer): Promise<HandleReply | Extract<EngineReply, { type: 'failed' }>> {
    const reply = await this.send({ type: 'handle', ...message }, deadlineMs, perform);
    if (reply.type === 'prepared') throw new Error('the component engine answered a request with a preparation');
    return reply;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.queue.splice(0)) {
      pending.calls.abort();
      pending.reject(new ComponentRunnerLostError('the test bed is shutting down'));
    }
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private send(message: EngineMessage, deadlineMs: number, perform?: OutgoingPerformer): Promise<EngineReply> {
    if (this.closed) return Promise.reject(new ComponentRunnerLostError('the test bed is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ message, deadlineMs, resolve, reject, calls: new AbortController(), ...(perform ? { perform } : {}) });
      const worker = this.ensureWorker();
      worker.postMessage(message);
      if (this.queue.length === 1) this.startClock();
    });
  }

  /** Only the head message is running: its clock starts when it reaches the head. */
  private startClock(): void {
    const head = this.queue[0];
    if (!head || head.timer) return;
    head.timer = setTimeout(() => this.replaceWorker(new ComponentTimeoutError(head.deadlineMs), head), head.deadlineMs);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(threadEntrySource(import.meta.url, './worker'), { eval: true, env: {}, workerData: { toolchainDir: this.options.toolchainDir }, resourceLimits: { maxOldGenerationSizeMb: this.options.heapMb }, stdout: true, stderr: true });
    worker.on('message', (reply: EngineReply | BridgeCallMessage) => {
      if (isBridgeCall(reply)) {
        this.serveOutgoing(reply);
        return;
      }
      const head = this.queue.shift();
      if (!head) return;
      clearTimeout(head.timer);
      head.calls.abort();
      head.resolve(reply);
      this.startClock();
    });
    worker.on('error', (error) => this.replaceWorker(new ComponentRunnerLostError(`the component worker failed: ${error.message}`)));
    worker.on('exit', () => {
      if (this.worker === worker) this.replaceWorker(new ComponentRunnerLostError('the component worker exited'));
    });
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /**
   * An outgoing call from the request running now (the head: the worker
   * handles one message at a time). Its clock keeps running meanwhile.
   */
  private serveOutgoing(call: BridgeCallMessage): void {
    const head = this.queue[0];
    const perform: OutgoingPerformer =
      head?.perform ?? (() => Promise.resolve({ ok: false, error: { tag: 'internal-error', val: 'no request is running to make this call' }, reason: 'an outgoing call arrived outside a request' }));
    void serveBridgeCall(call, perform, head?.calls.signal ?? new AbortController().signal);
  }

  /**
   * The running message fails with `error`; messages queued behind it are
   * re-sent to a fresh worker (they never started), after their components
   * are prepared again there.
   */
  private replaceWorker(error: Error, expected?: Pending): void {
    const head = this.queue[0];
    if (expected !== undefined && head !== expected) return;
    const old = this.worker;
    this.worker = undefined;
    this.prepared = new Map();
    void old?.terminate();
    const failed = this.queue.splice(0);
    for (const pending of failed) {
      clearTimeout(pending.timer);
      pending.calls.abort();
      pending.reject(pending === head ? error : new ComponentRunnerLostError('the component worker was replaced while this request waited; try again'));
    }
  }
}
