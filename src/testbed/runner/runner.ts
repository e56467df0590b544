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
 * runs (a WASI command, a Proxy-Wasm filter, …) and gets the slot's
 * Testbed and the verified artifact.
 */
import { createHash } from 'node:crypto';
import { PlatformError, badRequest } from '../../errors.ts';
import type { TestbedConfig } from '../config.ts';
import type { ArtifactRef } from '../modules.ts';
import { ModuleCache } from '../modules.ts';
import { Testbed } from '../testbed.ts';
import type { CompileOrder, RunnerCall, RunnerHello, WireTestbedConfig } from './messages.ts';
import { OPS, fromWireConfig } from './messages.ts';
import type { Peer } from './wire.ts';

/** How one execution kind runs a call on a slot. */
export type Executor = (testbed: Testbed, artifact: ArtifactRef, call: RunnerCall) => Promise<unknown>;

export const EXECUTORS: Readonly<Record<string, Executor>> = {
  'wasi-command': (testbed, artifact, call) => {
    if (call.kind !== 'wasi-command') throw badRequest('wrong_kind', 'not a WASI command call');
    return testbed.invokeFunction(artifact, call.invocation);
  },
  'proxy-wasm': (testbed, artifact, call) => {
    if (call.kind !== 'proxy-wasm') throw badRequest('wrong_kind', 'not a filter call');
    return call.op === 'invoke' ? testbed.invokeFilter(artifact, call.plugin, call.invocation) : testbed.serveFilter(artifact, call.plugin, call.request, call.connection, call.upstream, call.fresh);
  },
};

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
  const hello: RunnerHello = { slots: options.slots, pid: process.pid, kinds: Object.keys(EXECUTORS), name: options.name };
  // Handlers exist before the settings arrive: a call may follow the settings in the same chunk.
  let resolveSlots: (slots: Testbed[]) => void = () => undefined;
  const ready = new Promise<Testbed[]>((resolve) => (resolveSlots = resolve));
  const artifact = (sha256: string): ArtifactRef => ({ sha256, load: () => fetchArtifact(peer, sha256) });
  peer.handle(OPS.call, async (body) => {
    const call = body as RunnerCall;
    const slots = await ready;
    const testbed = slots[call.assignment.slot];
    if (!testbed) throw new PlatformError('runner_bad_slot', `this runner has ${slots.length} slots; slot ${call.assignment.slot} does not exist`);
    const executor = EXECUTORS[call.kind];
    if (!executor) throw new PlatformError('runner_unknown_kind', `this runner cannot run ${call.kind} modules`);
    return executor(testbed, artifact(call.assignment.sha256), call);
  });
  peer.onNote(OPS.compile, (body) => {
    const order = body as CompileOrder;
    // Compiling ahead is an optimisation: a module that does not compile fails again, with its 422, when it is called.
    const kind = order.kind;
    if (kind === 'wasi-command' || kind === 'proxy-wasm') {
      void ready.then((slots) => slots[0]?.prepare(artifact(order.sha256), kind, {})).catch(() => undefined);
    }
  });
  const config = fromWireConfig(await peer.request<WireTestbedConfig>(OPS.configure, hello));
  const slots = startSlots(config, options.slots);
  resolveSlots(slots);
  const closed = new Promise<string>((resolve) => peer.onClose(resolve));
  const stopSlots = () => Promise.allSettled(slots.map((slot) => slot.close()));
  void closed.then(stopSlots);
  return {
    closed,
    async close() {
      peer.close('the runner is stopping');
      await stopSlots();
    },
  };
}

/** One Testbed per slot, each with a single worker thread (and its warm spare), over one module cache. */
function startSlots(config: TestbedConfig, count: number): Testbed[] {
  const modules = new ModuleCache(config.moduleCacheEntries, config.moduleShape);
  return Array.from({ length: count }, () => new Testbed({ ...config, workers: 1 }, modules));
}

async function fetchArtifact(peer: Peer, sha256: string): Promise<Uint8Array> {
  const bytes = await peer.request<Uint8Array>(OPS.artifact, { sha256 });
  if (!(bytes instanceof Uint8Array)) throw new PlatformError('runner_artifact', `the API sent no bytes for artifact ${sha256}`);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256) throw new PlatformError('runner_artifact_mismatch', `artifact ${sha256} arrived with sha256 ${actual}; refusing to run it`);
  return bytes;
}
