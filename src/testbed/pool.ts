/**
 * The pool of worker threads that run untrusted Wasm for the test bed.
 *
 * - Each worker handles its messages one at a time, in order, synchronously
 *   (see worker.ts). So the oldest unanswered message of a worker is the one
 *   it is running, and only that one's deadline clock runs: when it expires
 *   the worker is stuck in guest code (an infinite loop) and is terminated —
 *   V8 interrupts Wasm loops — and its slot is refilled from a warm spare at
 *   once while a new spare starts in the background (starting a worker costs
 *   ~250 ms under tsx).
 * - Messages for one version go to the same worker (affinity), so its warm
 *   VM and shared data are found again; an exchange pins the exact worker
 *   (slot and generation) that holds its stream context.
 * - Compiled modules are posted to workers, not recompiled there: V8 shares a
 *   WebAssembly.Module between the threads of one process (it cannot between
 *   processes — BRIEF §6 — but worker_threads are one process). See modules.ts.
 * - A watchdog reads each worker's shared busy marker to catch a timer
 *   callback (proxy_on_tick of a warm VM) that hangs a worker while no
 *   message is waiting.
 */
import { Worker } from 'node:worker_threads';
import type { ResourceLimits } from 'node:worker_threads';
import { PlatformError } from '../errors.ts';
import { Activity, BUSY_BUFFER_BYTES, BusyMarker } from './busy.ts';
import type { OwnerBudgets } from './owner-budget.ts';
import { Lru } from './lru.ts';
import type { ModuleParts, WorkerEvent, WorkerMessage, WorkerReply, WorkerRequest } from './protocol.ts';
import type { TestbedWorkerData } from './worker.ts';
import { threadEntrySource } from '../threads/entry-source.ts';

export interface PoolOptions {
  size: number;
  spares: number;
  maxWarmVms: number;
  idleTickStopMs: number;
  /** How long a timer callback may run before its worker is replaced. */
  backgroundDeadlineMs: number;
  resourceLimits: ResourceLimits;
  /** Niceness each worker thread gives itself (TestbedConfig.guestNice). */
  guestNice?: number;
  /** The process's per-owner budget table: each worker gets a lane, given back (and emptied) when the thread is gone. */
  budgets?: OwnerBudgets;
  onEvent?: (ref: WorkerRef, event: WorkerEvent) => void;
}

/** The message ran past its deadline; its worker was terminated and replaced. */
export class WorkerTimeoutError extends Error {
  constructor(readonly deadlineMs: number) {
    super(`the invocation did not finish within ${deadlineMs} ms; the worker running it was stopped and replaced`);
    this.name = 'WorkerTimeoutError';
  }
}

/**
 * The worker went away before answering (another message's timeout, a crash, shutdown).
 * `notStarted`: the worker was stuck in a timer callback, so this message never ran and
 * may run on the replacement instead (send() does that once for unpinned messages).
 */
export class WorkerLostError extends Error {
  constructor(
    message: string,
    readonly outOfMemory = false,
    readonly notStarted = false,
  ) {
    super(message);
    this.name = 'WorkerLostError';
  }
}

/** A specific worker: its slot and the generation of the thread in it. */
export interface WorkerRef {
  slot: number;
  generation: number;
}

export interface SendOptions {
  affinity: string;
  deadlineMs: number;
  /** Only this worker will do (it holds the exchange's state). */
  pin?: WorkerRef;
}

export interface PoolAnswer {
  ref: WorkerRef;
  reply: WorkerReply;
  /** From posting to the answer: the worker's time, without waiting for it to start. */
  elapsedMs: number;
}

interface Inflight {
  id: number;
  deadlineMs: number;
  timer?: ReturnType<typeof setTimeout>;
  resolve(reply: WorkerReply): void;
  reject(error: Error): void;
}

interface PooledWorker {
  worker: Worker;
  generation: number;
  busy: BusyMarker;
  ready: Promise<void>;
  isReady: boolean;
  inflight: Inflight[];
  dead: boolean;
  slot: number;
  /** Its lane in the owner budget table, -1 without one. */
  lane: number;
  /** Module keys this worker has been posted (it keeps them until told to forget). */
  modules: Lru<string, true>;
  /** Keys dropped from `modules`, sent with the next message. */
  forget: string[];
}

/** Compiled modules a worker keeps between messages (the pool decides which: see moduleParts). */
const WORKER_MODULES = 32;

const WATCHDOG_INTERVAL_MS = 100;
let generations = 0;

export class WorkerPool {
  private readonly slots: Array<PooledWorker | undefined>;
  private readonly spares: PooledWorker[] = [];
  private nextId = 1;
  private closed = false;
  private readonly watchdog: ReturnType<typeof setInterval>;

  constructor(private readonly options: PoolOptions) {
    this.slots = Array.from({ length: Math.max(1, options.size) }, () => undefined);
    this.watchdog = setInterval(() => this.checkBackground(), WATCHDOG_INTERVAL_MS);
    this.watchdog.unref();
  }

  /** Starts every worker and the spares now instead of on first use. */
  async warm(): Promise<void> {
    await Promise.all(this.slots.map((_, slot) => this.workerFor(slot)));
    this.topUpSpares();
  }

  async send(message: WorkerRequest, options: SendOptions): Promise<PoolAnswer> {
    if (this.closed) throw new WorkerLostError('the test bed is shutting down');
    const slot = options.pin?.slot ?? slotFor(options.affinity, this.slots.length);
    for (let attempt = 0; ; attempt++) {
      const pooled = await this.workerFor(slot);
      if (options.pin && options.pin.generation !== pooled.generation) {
        throw new WorkerLostError('the worker running this exchange was replaced (another invocation on it exceeded its deadline or it crashed)');
      }
      const posted = performance.now();
      try {
        const reply = await this.post(pooled, message, options.deadlineMs);
        return { ref: { slot, generation: pooled.generation }, reply, elapsedMs: performance.now() - posted };
      } catch (error) {
        // Queued behind another VM's hung timer callback: this call never ran, so it runs on the replacement.
        if (error instanceof WorkerLostError && error.notStarted && !options.pin && attempt === 0) continue;
        throw error;
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    const all = [...this.slots, ...this.spares].filter((w): w is PooledWorker => w !== undefined);
    this.spares.length = 0;
    await Promise.all(all.map((w) => this.kill(w, () => new WorkerLostError('the test bed is shutting down'), false)));
  }

  private post(pooled: PooledWorker, message: WorkerRequest, deadlineMs: number): Promise<WorkerReply> {
    return new Promise<WorkerReply>((resolve, reject) => {
      const inflight: Inflight = { id: this.nextId++, deadlineMs, resolve, reject };
      try {
        pooled.worker.postMessage(this.wireMessage(pooled, message, inflight.id));
      } catch (error) {
        reject(new PlatformError('testbed_post_failed', `could not hand the invocation to a test bed worker: ${String(error)}`));
        return;
      }
      pooled.inflight.push(inflight);
      if (pooled.inflight.length === 1) this.armHead(pooled);
    });
  }

  /**
   * The message as posted to this worker: a compiled module it was already
   * posted is left out (posting a WebAssembly.Module and its import plan
   * costs each side tens of microseconds per message, a warm preview request
   * or a function call included); the worker fills it in from its cache.
   * Messages reach a worker in order, so a key it was sent is there.
   */
  private wireMessage(pooled: PooledWorker, message: WorkerRequest, id: number): WorkerMessage {
    const parts = moduleParts(message);
    const forget = pooled.forget.splice(0);
    const extra = forget.length > 0 ? { forget } : {};
    if (!parts) return { ...message, id, ...extra };
    if (pooled.modules.get(parts.moduleKey)) return { ...withoutModule(message), id, cachedModule: true, ...extra };
    pooled.modules.set(parts.moduleKey, true);
    // set() may have evicted a key: the worker forgets it after taking this message's module.
    const evicted = pooled.forget.splice(0);
    return { ...message, id, ...(forget.length + evicted.length > 0 ? { forget: [...forget, ...evicted] } : {}) };
  }

  /** Only the message being run has its clock running (see the header comment). */
  private armHead(pooled: PooledWorker): void {
    const head = pooled.inflight[0];
    if (!head || head.timer) return;
    head.timer = setTimeout(() => this.headTimedOut(pooled, head), head.deadlineMs);
  }

  private headTimedOut(pooled: PooledWorker, head: Inflight): void {
    if (pooled.dead || pooled.inflight[0] !== head) return;
    // A hung timer callback is not the waiting request's fault.
    const background = pooled.busy.read().state === Activity.BACKGROUND;
    if (background) {
      void this.kill(pooled, hungInBackground);
      return;
    }
    void this.kill(pooled, (inflight) => (inflight === head ? new WorkerTimeoutError(head.deadlineMs) : new WorkerLostError('the test bed worker was restarted because another invocation on it exceeded its deadline')));
  }

  private onMessage(pooled: PooledWorker, message: WorkerReply | WorkerEvent): void {
    if ('event' in message) {
      if (message.event !== 'ready') this.options.onEvent?.({ slot: pooled.slot, generation: pooled.generation }, message);
      return;
    }
    const index = pooled.inflight.findIndex((inflight) => inflight.id === message.id);
    const inflight = pooled.inflight[index];
    if (!inflight) return;
    clearTimeout(inflight.timer);
    pooled.inflight.splice(index, 1);
    inflight.resolve(message);
    this.armHead(pooled);
  }

  private async workerFor(slot: number): Promise<PooledWorker> {
    let pooled = this.slots[slot];
    if (!pooled || pooled.dead) {
      pooled = this.takeSpare() ?? this.spawn();
      pooled.slot = slot;
      this.slots[slot] = pooled;
      this.topUpSpares();
    }
    await pooled.ready;
    return pooled;
  }

  private takeSpare(): PooledWorker | undefined {
    const readyIndex = this.spares.findIndex((w) => w.isReady && !w.dead);
    const index = readyIndex !== -1 ? readyIndex : this.spares.findIndex((w) => !w.dead);
    return index === -1 ? undefined : this.spares.splice(index, 1)[0];
  }

  private topUpSpares(): void {
    while (!this.closed && this.spares.filter((w) => !w.dead).length < this.options.spares) this.spares.push(this.spawn());
  }

  private spawn(): PooledWorker {
    const buffer = new SharedArrayBuffer(BUSY_BUFFER_BYTES);
    const { budgets } = this.options;
    const lane = budgets ? budgets.takeLane() : -1;
    const workerData: TestbedWorkerData = { busy: buffer, maxWarmVms: this.options.maxWarmVms, idleTickStopMs: this.options.idleTickStopMs, guestNice: this.options.guestNice ?? 0, ...(budgets ? { budget: { layout: budgets.layout, lane } } : {}) };
    const worker = new Worker(threadEntrySource(import.meta.url, './worker'), { eval: true, workerData, resourceLimits: this.options.resourceLimits });
    worker.unref();
    const forget: string[] = [];
    const modules = new Lru<string, true>(WORKER_MODULES, (_, key) => forget.push(key));
    const pooled: PooledWorker = { worker, generation: ++generations, busy: new BusyMarker(buffer), ready: Promise.resolve(), isReady: false, inflight: [], dead: false, slot: -1, lane, modules, forget };
    pooled.ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (message: WorkerReply | WorkerEvent) => {
        if ('event' in message && message.event === 'ready') {
          pooled.isReady = true;
          resolve();
        }
        this.onMessage(pooled, message);
      });
      worker.once('error', (error) => {
        if (!pooled.isReady) reject(new PlatformError('testbed_worker_start', `a test bed worker failed to start: ${error.message}`));
        this.crashed(pooled, error);
      });
      worker.once('exit', (code) => this.crashed(pooled, new Error(`exited with code ${code}`)));
    });
    // Callers await `ready`; a start failure must not also surface as an unhandled rejection.
    pooled.ready.catch(() => undefined);
    return pooled;
  }

  private crashed(pooled: PooledWorker, error: Error & { code?: string }): void {
    if (pooled.dead) return;
    const outOfMemory = error.code === 'ERR_WORKER_OUT_OF_MEMORY';
    const message = outOfMemory ? 'the test bed worker ran out of memory and was replaced' : `the test bed worker stopped unexpectedly (${error.message}) and was replaced`;
    void this.kill(pooled, () => new WorkerLostError(message, outOfMemory));
  }

  private async kill(pooled: PooledWorker, reason: (inflight: Inflight) => Error, replace = true): Promise<void> {
    if (pooled.dead) return;
    pooled.dead = true;
    for (const inflight of pooled.inflight.splice(0)) {
      clearTimeout(inflight.timer);
      inflight.reject(reason(inflight));
    }
    const spareIndex = this.spares.indexOf(pooled);
    if (spareIndex !== -1) this.spares.splice(spareIndex, 1);
    if (replace && !this.closed) this.refill(pooled);
    await pooled.worker.terminate().catch(() => undefined);
    // Only now is the thread surely stopped: what its VMs held goes back to their owners.
    if (pooled.lane !== -1) this.options.budgets?.releaseLane(pooled.lane);
  }

  /** The dead worker's slot gets a spare right away; a new spare starts behind it. */
  private refill(dead: PooledWorker): void {
    if (this.slots[dead.slot] !== dead) {
      this.topUpSpares();
      return;
    }
    const replacement = this.takeSpare() ?? this.spawn();
    replacement.slot = dead.slot;
    this.slots[dead.slot] = replacement;
    this.topUpSpares();
  }

  private checkBackground(): void {
    const now = Date.now();
    for (const pooled of this.slots) {
      if (!pooled || pooled.dead) continue;
      const { state, since } = pooled.busy.read();
      if (state === Activity.BACKGROUND && now - since > this.options.backgroundDeadlineMs) void this.kill(pooled, hungInBackground);
    }
  }
}

/** While a timer callback runs, no message has started (the worker runs one thing at a time). */
function hungInBackground(): WorkerLostError {
  return new WorkerLostError('a timer callback of a filter hung the test bed worker; it was replaced', false, true);
}

/** The module a message carries, if any. */
export function moduleParts(message: WorkerRequest): ModuleParts | undefined {
  if (message.op === 'wasi.run') return message.job;
  if (message.op === 'filter.start' || message.op === 'filter.warm') return message.vm;
  return undefined;
}

/** The message without its module and plan (the worker restores them by moduleKey). */
function withoutModule(message: WorkerRequest): WorkerRequest {
  const strip = <T extends ModuleParts>(parts: T): T => ({ ...parts, module: undefined, plan: undefined }) as unknown as T;
  if (message.op === 'wasi.run') return { ...message, job: strip(message.job) };
  if (message.op === 'filter.start' || message.op === 'filter.warm') return { ...message, vm: strip(message.vm) };
  return message;
}

/** FNV-1a: a stable spread of affinity keys over the slots. */
function slotFor(key: string, slots: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % slots;
}
