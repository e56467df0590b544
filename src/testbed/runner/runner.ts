/**
 * The runner's side of the test bed: a process (local, started by
 * `kiln serve`, or remote, `kiln testbed`) that runs tenant modules for the
 * API. It never trusts what it receives more than the API does: artifacts
 * come by sha256 and are verified, and every call runs inside a worker
 * thread with a deadline and a heap limit (pool.ts), in a process whose own
 * heap is bounded too — when something still breaks, only this process and
 * the calls it holds are lost (decision 0012).
 *
 * Calls arrive already assigned to one of the runner's slots by the API's
 * scheduler (runners.ts). Each slot is a Testbed with one worker thread of
 * its own, so a call never queues behind another call's busy loop; the
 * slots share one cache of compiled modules.
 *
 * Execution kinds plug in through `EXECUTORS`: a kind names what the call
 * runs (a WASI command, a Proxy-Wasm filter, an http-component) and gets the
 * slot's Testbed, the runner's ComponentTestbed and the verified artifact.
 *
 * http-components share one ComponentTestbed per runner (one worker thread,
 * started on the first component call): a prepared component costs tens of
 * MB and seconds of transpiling, so it is kept once per process rather than
 * once per slot; its calls run in order, each with its own deadline.
 */
import { createHash } from 'node:crypto';
import { PlatformError, badRequest } from '../../errors.ts';
import type { TestbedConfig } from '../config.ts';
import type { ArtifactRef } from '../modules.ts';
import { ModuleCache } from '../modules.ts';
import { OwnerBudgets } from '../owner-budget.ts';
import { emptyRecording } from '../recorder.ts';
import { Testbed, budgetLanes } from '../testbed.ts';
import type { FilterResult } from '../testbed.ts';
import { ComponentTestbed } from '../component/index.ts';
import type { CompileOrder, Recall, RunnerCall, RunnerHello, WireTestbedConfig } from './messages.ts';
import { OPS, RECALLED_CODE, fromWireConfig } from './messages.ts';
import type { Peer } from './wire.ts';

/** What a call may use on the runner: its slot's Testbed, and the runner's component host. */
export interface SlotContext {
  testbed: Testbed;
  /** Created on first use: a runner that never sees a component starts no component worker. */
  components(): ComponentTestbed;
}

/** How one execution kind runs a call on a slot. */
export type Executor = (slot: SlotContext, artifact: ArtifactRef, call: RunnerCall) => Promise<unknown>;

export const EXECUTORS: Readonly<Record<string, Executor>> = {
  'wasi-command': ({ testbed }, artifact, call) => {
    if (call.kind !== 'wasi-command') throw badRequest('wrong_kind', 'not a WASI command call');
    return testbed.invokeFunction(artifact, call.invocation);
  },
  'proxy-wasm': ({ testbed }, artifact, call) => {
    if (call.kind !== 'proxy-wasm') throw badRequest('wrong_kind', 'not a filter call');
    if (call.op === 'invoke') return testbed.invokeFilter(artifact, call.plugin, call.invocation);
    if (call.op === 'warm') return testbed.warmFilter(artifact, call.plugin);
    return testbed.serveFilter(artifact, call.plugin, call.request, call.connection, call.upstream, call.fresh).then(previewAnswer);
  },
  'http-component': (slot, artifact, call) => {
    if (call.kind !== 'http-component') throw badRequest('wrong_kind', 'not an http-component call');
    return slot.components().invoke(artifact, call.request, call.limits, call.ownerId);
  },
};

/**
 * What the preview URL uses of a served request (src/api/routes/testbed.ts:
 * the response, the outcome and its message, the guest time): the recording,
 * the forwarded request and the upstream's response stay here rather than
 * crossing the wire again on every request.
 */
export function previewAnswer(result: FilterResult): FilterResult {
  const { outcome, message, limit, response, responseSource, guestMs, durationMs, vmStarted, module } = result;
  return {
    outcome,
    ...(message === undefined ? {} : { message }),
    ...(limit === undefined ? {} : { limit }),
    ...(response === undefined ? {} : { response }),
    ...(responseSource === undefined ? {} : { responseSource }),
    recording: emptyRecording(),
    httpCalls: [],
    metrics: [],
    sharedData: [],
    guestMs,
    durationMs,
    vmStarted,
    module,
  };
}

export interface RunnerOptions {
  slots: number;
  name: string;
}

export interface RunningRunner {
  /** Resolves when the connection to the API ends. */
  closed: Promise<string>;
  close(): Promise<void>;
}

/** Introduces the runner, takes the API's settings, and serves calls until the connection ends. */
export async function serveRunner(peer: Peer, options: RunnerOptions): Promise<RunningRunner> {
  const hello: RunnerHello = { slots: options.slots, pid: process.pid, kinds: Object.keys(EXECUTORS), name: options.name, sendAhead: true };
  // Handlers exist before the settings arrive: a call may follow the settings in the same chunk.
  let resolveSlots: (slots: Slots) => void = () => undefined;
  const ready = new Promise<Slots>((resolve) => (resolveSlots = resolve));
  const artifact = (sha256: string): ArtifactRef => ({ sha256, load: () => fetchArtifact(peer, sha256) });
  peer.handle(OPS.call, async (body) => {
    const call = body as RunnerCall;
    const slots = await ready;
    const testbed = slots.testbeds[call.assignment.slot];
    const line = slots.lines[call.assignment.slot];
    if (!testbed || !line) throw new PlatformError('runner_bad_slot', `this runner has ${slots.testbeds.length} slots; slot ${call.assignment.slot} does not exist`);
    const executor = EXECUTORS[call.kind];
    if (!executor) throw new PlatformError('runner_unknown_kind', `this runner cannot run ${call.kind} modules`);
    return line.run(call.assignment.ticket, () => executor({ testbed, components: () => slots.components() }, artifact(call.assignment.sha256), call));
  });
  peer.onNote(OPS.recall, (body) => {
    const recall = body as Recall;
    void ready.then((slots) => slots.lines[recall.slot]?.recall(recall.ticket));
  });
  // Answered once the module is ready, so the API can wait for it (bounded) before it records the build succeeded.
  peer.handle(OPS.compile, async (body) => {
    const order = body as CompileOrder;
    const slots = await ready;
    // Compiling ahead is an optimisation: a module that does not compile fails again, with its 422, when it is called.
    const kind = order.kind;
    if (kind === 'wasi-command' || kind === 'proxy-wasm') await slots.testbeds[0]?.prepare(artifact(order.sha256), kind, {});
    // Transpiling takes seconds: done now, the first invoke or preview finds the component warm.
    else if (kind === 'http-component') await slots.components().prepare(artifact(order.sha256));
    return true;
  });
  const config = fromWireConfig(await peer.request<WireTestbedConfig>(OPS.configure, hello));
  const slots = startSlots(config, options.slots);
  resolveSlots(slots);
  const closed = new Promise<string>((resolve) => peer.onClose(resolve));
  const stopSlots = () => slots.close();
  void closed.then(stopSlots);
  return {
    closed,
    async close() {
      peer.close('the runner is stopping');
      await stopSlots();
    },
  };
}

/** Calls a slot may have waiting behind its running call (the API sends at most one ahead, decision 0043). */
const MAX_WAITING_PER_SLOT = 1;

interface Waiting {
  ticket: number;
  start(): void;
  drop(error: Error): void;
}

/**
 * One slot's calls, one at a time: a call sent ahead waits here, on this
 * process's main thread (not in the worker, where a deadline's replacement
 * would take it along), and starts the moment the running call settles —
 * before that call's answer is even written. A recall drops it if it has
 * not started.
 */
export class SlotLine {
  private running = false;
  private readonly waiting: Waiting[] = [];

  run<T>(ticket: number, work: () => Promise<T>): Promise<T> {
    if (!this.running) return this.start(work);
    if (this.waiting.length >= MAX_WAITING_PER_SLOT) return Promise.reject(new PlatformError('runner_slot_busy', `a call is already waiting on this slot; the API sends at most ${MAX_WAITING_PER_SLOT} ahead`));
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ ticket, start: () => this.start(work).then(resolve, reject), drop: reject });
    });
  }

  recall(ticket: number): void {
    const index = this.waiting.findIndex((w) => w.ticket === ticket);
    if (index === -1) return;
    const [dropped] = this.waiting.splice(index, 1);
    dropped?.drop(new PlatformError(RECALLED_CODE, 'the call was taken back by the API before it started (another owner is waiting, or its queue wait ended)'));
  }

  /** The runner is stopping: calls that have not started never will. */
  close(reason: string): void {
    for (const waiting of this.waiting.splice(0)) waiting.drop(new PlatformError('runner_stopping', reason));
  }

  private start<T>(work: () => Promise<T>): Promise<T> {
    this.running = true;
    let current: Promise<T>;
    try {
      current = work();
    } catch (error) {
      current = Promise.reject(error);
    }
    // Attached first, so the next call is handed to the worker before this one's answer is written.
    const next = () => {
      this.running = false;
      this.waiting.shift()?.start();
    };
    current.then(next, next);
    return current;
  }
}

interface Slots {
  testbeds: Testbed[];
  lines: SlotLine[];
  components(): ComponentTestbed;
  close(): Promise<unknown>;
}

/**
 * One Testbed per slot, each with a single worker thread (and its warm
 * spare), over one module cache and one table of per-owner budgets (shared
 * data and queues are bounded per owner per runner process); one component host.
 */
function startSlots(config: TestbedConfig, count: number): Slots {
  const modules = new ModuleCache(config.moduleCacheEntries, config.moduleShape);
  const budgets = new OwnerBudgets(budgetLanes(1, config.spares, count));
  const testbeds = Array.from({ length: count }, () => new Testbed({ ...config, workers: 1 }, modules, budgets));
  const lines = testbeds.map(() => new SlotLine());
  let components: ComponentTestbed | undefined;
  let closed = false;
  return {
    testbeds,
    lines,
    components() {
      if (closed) throw new PlatformError('runner_stopping', 'the runner is stopping');
      components ??= new ComponentTestbed(config);
      return components;
    },
    close() {
      closed = true;
      for (const line of lines) line.close('the runner is stopping');
      return Promise.allSettled([...testbeds.map((slot) => slot.close()), components?.close()]);
    },
  };
}

async function fetchArtifact(peer: Peer, sha256: string): Promise<Uint8Array> {
  const bytes = await peer.request<Uint8Array>(OPS.artifact, { sha256 });
  if (!(bytes instanceof Uint8Array)) throw new PlatformError('runner_artifact', `the API sent no bytes for artifact ${sha256}`);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256) throw new PlatformError('runner_artifact_mismatch', `artifact ${sha256} arrived with sha256 ${actual}; refusing to run it`);
  return bytes;
}
