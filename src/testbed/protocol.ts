/**
 * Messages between the main thread and the test bed's worker threads. All of
 * it crosses by structured clone: plain data, byte arrays and compiled
 * WebAssembly.Module objects (which worker_threads share without copying or
 * recompiling — the reason modules are compiled once, in the main thread).
 */
import type { ConnectionInfo, HttpRequestData, HttpResponseData } from './http-message.ts';
import type { PlannedImport } from './link.ts';
import type { OwnerTicket } from './owner-budget.ts';
import type { MetricSnapshot } from './proxy-wasm/shared-state.ts';
import type { LocalResponse } from './proxy-wasm/stream.ts';
import type { Recording } from './recorder.ts';
import type { MemoryType } from '../wasm/memory-import.ts';

/** What a filter can learn about the plugin it runs as (properties plugin_name, …). */
export interface PluginInfo {
  /** The tenant: shared data, queues, upstream connections and fair-sharing limits are kept per owner. */
  ownerId: string;
  name: string;
  rootId: string;
  vmId: string;
  versionId: string;
  version: string;
  applicationId: string;
}

export interface HostLimits {
  /** Largest body a filter may build with proxy_set_buffer_bytes. */
  maxBodyBytes: number;
  /** proxy_http_call calls per VM between two answers of the worker. */
  maxHttpCalls: number;
  /** Per header or trailer map the filter builds: pairs, and key + value bytes in total. */
  maxHeaderCount: number;
  maxHeaderBytes: number;
  /** Log lines and their bytes recorded per message (the exchange also bounds them per call). */
  maxLogLines: number;
  maxLogBytes: number;
  /** Per owner, over all its VMs in one test bed process (owner-budget.ts): shared data and queues. */
  shared: OwnerSharedLimits;
  /** proxy_on_queue_ready deliveries per message (a filter re-enqueueing from it must not loop forever). */
  maxQueueDeliveries: number;
  /** Shortest tick period honoured for warm VMs (shorter ones are raised to it). */
  minTickPeriodMs: number;
}

export interface OwnerSharedLimits {
  maxSharedKeys: number;
  maxSharedBytes: number;
  maxQueues: number;
  maxQueueDepth: number;
  maxQueueBytes: number;
  maxMetrics: number;
}

/**
 * A compiled module and its import plan, named by the prepared module's key.
 * The pool posts the module and plan to a worker once; later messages carry
 * only the key (`cachedModule`), and the worker fills them in (see pool.ts).
 */
export interface ModuleParts {
  moduleKey: string;
  module: WebAssembly.Module;
  plan: PlannedImport[];
  /** The module imports its memory (POOLED_MEMORY_IMPORT) of this type: the worker supplies one from its pool. */
  memory?: MemoryType;
}

export interface VmSpec extends ModuleParts {
  /** Warm VMs are kept under this key; fresh ones get a unique key. */
  key: string;
  capBytes: number;
  pluginConfig: Uint8Array;
  vmConfig: Uint8Array;
  plugin: PluginInfo;
  /** 0 (trace) … 5 (critical): lines below it are not recorded. */
  logLevel: number;
  /** Names proxy_http_call may target. */
  upstreams: string[];
  limits: HostLimits;
  /** The owner's row in the process's budget table (absent: the worker's own accounts). */
  ownerTicket?: OwnerTicket;
}

/** A proxy_http_call (or proxy_grpc_call/stream) the main thread must perform and answer with filter.deliver. */
export interface OutgoingCall {
  token: number;
  /** Whose connection pool performs it. */
  ownerId: string;
  contextId: number;
  upstream: string;
  request: HttpRequestData;
  timeoutMs: number;
  /**
   * A gRPC call or stream, sent over HTTP/2. A call is answered once, with
   * its frames and status; a stream is opened live (its messages follow as
   * GrpcStreamWrites) and answered with filter.deliver `partial` updates as
   * its messages arrive, then a final one with the trailers.
   */
  grpc?: { kind: 'call' | 'stream'; service: string; method: string };
}

/** What the filter did to a live gRPC stream (or a call in flight) since the last step, in order. */
export type GrpcStreamWrite =
  /** Length-prefixed messages to send; `end`: half-close after them. */
  | { token: number; kind: 'send'; framed: Uint8Array; end: boolean }
  /** proxy_grpc_cancel: reset the stream (or stop waiting for the call); nothing more is delivered for it. */
  | { token: number; kind: 'cancel' };

/** 'idle': the message concerned no stream (a call made from a timer, say). */
export type StepState = 'forward' | 'complete' | 'respond' | 'paused' | 'closed' | 'idle';

/** Where an exchange stands after the worker handled a message. */
export interface FilterStep {
  vmKey: string;
  contextId: number;
  state: StepState;
  /** With 'forward': the request as the filter left it. */
  request?: HttpRequestData;
  /** With 'complete': the response as the filter left it. */
  response?: HttpResponseData;
  /** With 'respond': the filter's local response. */
  localResponse?: LocalResponse;
  /** The callback that paused the stream (state 'paused'). */
  pausedIn?: string;
  calls: OutgoingCall[];
  /** Sends, half-closes and cancels of gRPC streams opened in earlier or this step (after `calls`). */
  streamWrites: GrpcStreamWrite[];
  recording: Recording;
  /** Set once when a VM was created for this message. */
  vmStarted?: boolean;
  /** The worker ends the stream itself right after this reply (the message asked with `endAfter`): send no filter.end. */
  endsInWorker?: boolean;
}

export interface FilterEnd {
  recording: Recording;
  metrics: MetricSnapshot[];
  sharedData: Array<{ key: string; size: number; cas: number }>;
}

export interface WasiJob extends ModuleParts {
  capBytes: number;
  stdin: Uint8Array;
  args: string[];
  env: Record<string, string>;
  maxOutputBytes: number;
}

export interface WasiRunResult {
  /** Null when the module trapped (see failure). */
  exitCode: number | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  durationMs: number;
  unimplemented: string[];
  failure?: GuestFailure;
}

export type WorkerRequest =
  | { op: 'wasi.run'; job: WasiJob }
  | { op: 'filter.start'; vm: VmSpec; fresh: boolean; request: HttpRequestData; connection: ConnectionInfo; ticks: number; endAfter?: EndAfter }
  /** `partial`: a live gRPC stream's update (initial metadata, new messages); more follow, the last without `partial`. */
  | { op: 'filter.deliver'; vmKey: string; token: number; response: HttpResponseData | null; contextId: number; partial?: boolean }
  | { op: 'filter.response'; vmKey: string; contextId: number; response: HttpResponseData; endAfter?: EndAfter }
  | { op: 'filter.end'; vmKey: string; contextId: number; dispose: boolean }
  /** Start the warm VM for vm.key now if there is none (a build just succeeded): the first preview request finds it running. */
  | { op: 'filter.warm'; vm: VmSpec }
  /** Forget a VM without running guest code: the exchange failed outside the worker (a limit, a lost deadline). */
  | { op: 'filter.drop'; vmKey: string };

export type WorkerMessage = WorkerRequest & {
  id: number;
  /** The module and plan were left out: the worker has them under moduleKey (posted with an earlier message). */
  cachedModule?: true;
  /** Module keys the worker may forget (the pool stopped counting on them). */
  forget?: string[];
};

/**
 * "When this step leaves the stream done (nothing forwarded, no HTTP call
 * pending), answer, then run its end (on_log, on_done) at once as background
 * work" — saves the preview a round trip per request to the worker. The end
 * runs under the background budget, like a timer callback.
 */
export interface EndAfter {
  dispose: boolean;
}

/** Why guest code failed; the VM (or instance) it ran in is discarded. */
export type FailureOutcome = 'trap' | 'memory_limit' | 'vm_start_failed' | 'configure_failed' | 'exited' | 'vm_lost' | 'runner_lost';

export interface GuestFailure {
  outcome: FailureOutcome;
  message: string;
  /** Wasm frames of the trap, innermost first, when V8 gave them. */
  stack?: string[];
  /** What was recorded before the failure (logs up to the trap). */
  recording?: Recording;
}

export type WorkerReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; failure: GuestFailure } | { id: number; ok: false; error: string };

export type WorkerEvent = { event: 'ready' } | { event: 'calls'; vmKey: string; calls: OutgoingCall[]; streamWrites: GrpcStreamWrite[] };
