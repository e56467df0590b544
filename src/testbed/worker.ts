/**
 * A test bed worker thread: runs guest code for the pool, one message at a
 * time and synchronously, so the main thread knows which message a stuck
 * worker is stuck in (see pool.ts).
 *
 * It keeps warm filter VMs (the preview URL reuses them, as a proxy keeps
 * its VMs across requests) in a small LRU, and the fresh VMs of invocations
 * until their exchange ends. A VM whose guest code failed is discarded.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { Activity, BusyMarker } from './busy.ts';
import { classifyFailure } from './failure.ts';
import { OwnerBudgetLane } from './owner-budget.ts';
import type { OwnerBudgetLayout } from './owner-budget.ts';
import type { FilterEnd, FilterStep, GuestFailure, ModuleParts, VmSpec, WorkerEvent, WorkerMessage, WorkerReply } from './protocol.ts';
import { deliverCallResponse, finishStream, runRequestPhase, runResponsePhase, stepFor } from './proxy-wasm/session.ts';
import { PluginVm, recorderLimits } from './proxy-wasm/vm.ts';
import type { AccountOpener } from './proxy-wasm/vm.ts';
import { Lru } from './lru.ts';
import { Recorder } from './recorder.ts';
import { runWasiCommand } from './wasi/run.ts';

export interface TestbedWorkerData {
  busy: SharedArrayBuffer;
  /** Warm VMs kept per worker; idle ones beyond this are dropped, least recently used first. */
  maxWarmVms: number;
  /** A warm VM's timer stops firing after this long without a request. */
  idleTickStopMs: number;
  /** Niceness this thread gives itself before running guest code (0: unchanged). */
  guestNice: number;
  /** The process's per-owner budget table and this thread's lane in it (pool.ts). */
  budget?: { layout: OwnerBudgetLayout; lane: number };
}

/** Guest code failed: the reply carries the outcome instead of a value. */
class GuestError extends Error {
  constructor(readonly failure: GuestFailure) {
    super(failure.message);
  }
}

interface VmEntry {
  vm: PluginVm;
  fresh: boolean;
  ticker?: ReturnType<typeof setInterval>;
  tickerPeriod: number;
}

const port = parentPort;
if (!port) throw new Error('the test bed worker must run in a worker thread');
const settings = workerData as TestbedWorkerData;
const busy = new BusyMarker(settings.busy);
const vms = new Map<string, VmEntry>();
let freshCounter = 0;
const lane = settings.budget ? new OwnerBudgetLane(settings.budget.layout, settings.budget.lane) : undefined;

/** The process-wide account when the main thread sent a ticket; else PluginVm's per-thread default. */
function accountFor(spec: VmSpec): AccountOpener | undefined {
  const ticket = spec.ownerTicket;
  return lane && ticket ? () => lane.open(ticket) : undefined;
}

lowerThreadPriority(settings.guestNice);
port.on('message', (message: WorkerMessage) => handle(message));
post({ event: 'ready' });

/**
 * Linux keeps a niceness per thread, and setpriority() with a thread id
 * changes that thread only: guest code then yields to the process's main
 * thread and to the API (decision 0029). Raising one's own niceness needs
 * no privilege. Elsewhere, or if it fails, the thread keeps its priority.
 */
function lowerThreadPriority(nice: number): void {
  if (nice <= 0) return;
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(threadId) && threadId > 0) setPriority(threadId, nice);
  } catch {
    // Not Linux, or no /proc: same priority as the rest of the process.
  }
}

function post(message: WorkerReply | WorkerEvent): void {
  port?.postMessage(message);
}

/** Compiled modules posted earlier, by key; the pool says when to forget one (pool.ts wireMessage). */
const modules = new Map<string, { module: WebAssembly.Module; plan: ModuleParts['plan'] }>();

/** Restores a module the pool left out, or keeps the one it sent. */
function hydrate(message: WorkerMessage): void {
  for (const key of message.forget ?? []) modules.delete(key);
  const parts = message.op === 'wasi.run' ? message.job : message.op === 'filter.start' || message.op === 'filter.warm' ? message.vm : undefined;
  if (!parts) return;
  if (!message.cachedModule) {
    modules.set(parts.moduleKey, { module: parts.module, plan: parts.plan });
    return;
  }
  const cached = modules.get(parts.moduleKey);
  if (!cached) throw new Error(`test bed worker: module ${parts.moduleKey} was not posted to this worker`);
  parts.module = cached.module;
  parts.plan = cached.plan;
}

function handle(message: WorkerMessage): void {
  busy.set(Activity.MESSAGE);
  let endLater: (() => void) | undefined;
  try {
    hydrate(message);
    const value = dispatch(message);
    endLater = endAfterReply(message, value);
    post({ id: message.id, ok: true, value });
  } catch (error) {
    if (error instanceof GuestError) post({ id: message.id, ok: false, failure: error.failure });
    else post({ id: message.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  } finally {
    busy.set(Activity.IDLE);
  }
  if (endLater) inBackground(endLater);
  if (message.op === 'filter.start' && message.fresh && message.endAfter) {
    const spec = message.vm;
    inBackground(() => startFreshAhead(spec));
  }
}

/**
 * Preview requests of a version with a fresh instance per request: the VM
 * for the next request is started after this one's answer, while the worker
 * would be idle, and is used by that request only — no state survives a
 * request, and the start (instantiate, _initialize, vm_start, configure) is
 * off the request's path. One per version at most, and at most maxWarmVms.
 */
const freshAhead = new Lru<string, VmEntry>(settings.maxWarmVms, (entry) => discard(entry));

function startFreshAhead(spec: VmSpec): void {
  if (freshAhead.get(spec.key)) return;
  try {
    freshAhead.set(spec.key, createVm(spec, true));
  } catch {
    // createVm discarded the VM: the next request starts its own and reports the failure.
  }
}

function takeFreshAhead(key: string): VmEntry | undefined {
  const entry = freshAhead.get(key);
  if (!entry) return undefined;
  freshAhead.delete(key);
  return vms.has(entry.vm.spec.key) ? entry : undefined;
}

/** With `endAfter`, a step that leaves the stream done is marked, and its end is returned to run after the reply. */
function endAfterReply(message: WorkerMessage, value: unknown): (() => void) | undefined {
  if ((message.op !== 'filter.start' && message.op !== 'filter.response') || !message.endAfter) return undefined;
  const step = value as FilterStep;
  const done = step.calls.length === 0 && step.streamWrites.length === 0 && (step.state === 'complete' || step.state === 'respond' || step.state === 'closed' || step.state === 'paused');
  if (!done) return undefined;
  step.endsInWorker = true;
  const { dispose } = message.endAfter;
  return () => {
    const entry = vms.get(step.vmKey);
    if (!entry) return;
    try {
      end(entry, step.contextId, dispose);
    } catch {
      // end() discarded a VM whose guest failed; no caller waits for this.
    }
  };
}

/** Work no message waits for: the watchdog gives it the background budget (pool.ts). */
function inBackground(work: () => void): void {
  busy.set(Activity.BACKGROUND);
  try {
    work();
  } finally {
    busy.set(Activity.IDLE);
  }
}

function dispatch(message: WorkerMessage): unknown {
  switch (message.op) {
    case 'wasi.run':
      return runWasiCommand(message.job);
    case 'filter.start':
      return start(message.vm, message.fresh, message);
    case 'filter.deliver': {
      const entry = need(message.vmKey);
      guarded(entry, () => deliverCallResponse(entry.vm, message.token, message.response, message.partial === true));
      return step(entry, message.contextId);
    }
    case 'filter.response': {
      const entry = need(message.vmKey);
      const stream = entry.vm.streams.get(message.contextId);
      if (stream) guarded(entry, () => runResponsePhase(entry.vm, stream, message.response));
      return step(entry, message.contextId);
    }
    case 'filter.end':
      return end(need(message.vmKey), message.contextId, message.dispose);
    case 'filter.warm': {
      if (vms.has(message.vm.key)) return false;
      afterMessage(createVm(message.vm, false));
      return true;
    }
    case 'filter.drop': {
      const entry = vms.get(message.vmKey);
      if (entry) discard(entry);
      return entry !== undefined;
    }
  }
}

function start(spec: VmSpec, fresh: boolean, message: Extract<WorkerMessage, { op: 'filter.start' }>): FilterStep {
  const existing = fresh ? undefined : vms.get(spec.key);
  const entry = existing ?? (fresh && message.endAfter ? takeFreshAhead(spec.key) : undefined) ?? createVm(spec, fresh);
  const { vm } = entry;
  let contextId = 0;
  guarded(entry, () => {
    // An invocation has no time passing: the ticks it asked for run now, before the request.
    for (let i = 0; i < message.ticks && vm.tickPeriodMs > 0; i++) vm.tick();
    const stream = vm.createStream(message.request, message.connection);
    contextId = stream.id;
    runRequestPhase(vm, stream);
  });
  return { ...step(entry, contextId), vmStarted: existing === undefined };
}

/** A new VM, started (instantiate, initialize, vm_start, configure) and registered. */
function createVm(spec: VmSpec, fresh: boolean): VmEntry {
  const vm = new PluginVm(fresh ? { ...spec, key: `${spec.key}#fresh-${++freshCounter}` } : spec, accountFor(spec));
  const entry: VmEntry = { vm, fresh, tickerPeriod: 0 };
  vms.set(vm.spec.key, entry);
  guarded(entry, () => vm.start());
  return entry;
}

function need(vmKey: string): VmEntry {
  const entry = vms.get(vmKey);
  if (!entry) throw new GuestError({ outcome: 'vm_lost', message: "the filter's VM is gone: it failed in another request, or the test bed dropped it" });
  return entry;
}

/** Runs guest code; on failure the VM is discarded and the failure (with what was recorded so far) is the reply. */
function guarded(entry: VmEntry, work: () => void): void {
  try {
    work();
  } catch (error) {
    discard(entry);
    const { vm } = entry;
    const failure = classifyFailure(error, { memoryBytes: vm.memoryBytes(), capBytes: vm.spec.capBytes, allocationFailed: vm.allocationFailed });
    throw new GuestError({ ...failure, recording: vm.recorder.take() });
  }
}

function step(entry: VmEntry, contextId: number): FilterStep {
  const { vm } = entry;
  vm.lastUsed = Date.now();
  const stream = vm.streams.get(contextId);
  const state = stream ? stepFor(vm, stream) : { vmKey: vm.spec.key, contextId, state: 'idle' as const };
  const result: FilterStep = { ...state, calls: vm.takeOutgoingCalls(), streamWrites: vm.takeStreamWrites(), recording: vm.recorder.take() };
  afterMessage(entry);
  return result;
}

function end(entry: VmEntry, contextId: number, dispose: boolean): FilterEnd {
  const { vm } = entry;
  const stream = vm.streams.get(contextId);
  if (stream) guarded(entry, () => finishStream(vm, stream));
  const result: FilterEnd = { recording: vm.recorder.take(), metrics: vm.metrics.snapshot(), sharedData: vm.shared.snapshot() };
  if (dispose) discard(entry);
  else afterMessage(entry);
  return result;
}

function discard(entry: VmEntry): void {
  if (entry.ticker) clearInterval(entry.ticker);
  entry.ticker = undefined;
  vms.delete(entry.vm.spec.key);
  entry.vm.dispose();
}

function afterMessage(entry: VmEntry): void {
  if (entry.fresh || !vms.has(entry.vm.spec.key)) return;
  armTicker(entry);
  evictIdle();
}

/** Warm VMs get a real timer for proxy_on_tick, at the period the filter set (bounded below). */
function armTicker(entry: VmEntry): void {
  const wanted = entry.vm.tickPeriodMs;
  const period = wanted === 0 ? 0 : Math.max(wanted, entry.vm.spec.limits.minTickPeriodMs);
  if (period === entry.tickerPeriod && (period === 0 || entry.ticker)) return;
  if (entry.ticker) clearInterval(entry.ticker);
  entry.ticker = undefined;
  entry.tickerPeriod = period;
  if (period > 0) entry.ticker = setInterval(() => backgroundTick(entry), period);
}

/**
 * One proxy_on_tick outside any request. The busy marker tells the pool's
 * watchdog a timer is running, so a hung tick gets the worker replaced.
 * Its log lines are not reported anywhere (no request is waiting for them).
 */
function backgroundTick(entry: VmEntry): void {
  const { vm } = entry;
  if (Date.now() - vm.lastUsed > settings.idleTickStopMs) {
    if (entry.ticker) clearInterval(entry.ticker);
    entry.ticker = undefined;
    return;
  }
  busy.set(Activity.BACKGROUND);
  const saved = vm.recorder;
  vm.recorder = new Recorder(recorderLimits(vm.spec));
  try {
    vm.tick();
    const calls = vm.takeOutgoingCalls();
    const streamWrites = vm.takeStreamWrites();
    if (calls.length > 0 || streamWrites.length > 0) post({ event: 'calls', vmKey: vm.spec.key, calls, streamWrites });
  } catch {
    discard(entry);
  } finally {
    vm.recorder = saved;
    busy.set(Activity.IDLE);
  }
}

function evictIdle(): void {
  const warm = [...vms.values()].filter((e) => !e.fresh && e.vm.streams.size === 0).sort((a, b) => a.vm.lastUsed - b.vm.lastUsed);
  const excess = [...vms.values()].filter((e) => !e.fresh).length - settings.maxWarmVms;
  for (const entry of warm.slice(0, Math.max(0, excess))) discard(entry);
}
