/**
 * One instance of a filter module with its plugin (root) context and its
 * stream contexts: what a proxy calls a Wasm VM running one plugin.
 *
 * It runs inside a test bed worker thread. Every entry into guest code goes
 * through `call`, which times it and records it; anything the guest throws
 * (a trap, proc_exit) propagates to the worker, which discards the VM.
 */
import { GuestMemory } from '../guest-memory.ts';
import type { ConnectionInfo, HttpRequestData } from '../http-message.ts';
import { hostNames, linkImports } from '../link.ts';
import { leaseMemory } from '../memory-pool.ts';
import type { GrpcStreamWrite, OutgoingCall, VmSpec } from '../protocol.ts';
import { DEFAULT_RECORDER_LIMITS, Recorder } from '../recorder.ts';
import type { RecorderLimits } from '../recorder.ts';
import { createWasi, WASI_LEGACY_MODULE, WASI_MODULE } from '../wasi/wasi.ts';
import { LOG_LEVELS } from './abi.ts';
import type { LogLevelName } from './abi.ts';
import type { HeaderMap } from './header-map.ts';
import type { GrpcCallInfo, GrpcReceived, GrpcStreamDraft, PendingCall, QueuedStreamWrite } from './host/grpc-calls.ts';
import { takeStreamWrites } from './host/grpc-calls.ts';
import { hostImports } from './host/index.ts';
import { Metrics, SharedData, SharedQueues } from './shared-state.ts';
import { StreamState } from './stream.ts';
import { LocalOwnerAccounts } from '../owner-budget.ts';
import type { OwnerAccount } from '../owner-budget.ts';

/** Where a VM's owner account comes from: the process-wide table in a pooled worker (worker.ts), else this thread's. */
export type AccountOpener = (spec: VmSpec) => OwnerAccount;
const THREAD_ACCOUNTS = new LocalOwnerAccounts();
const openInThread: AccountOpener = (spec) => THREAD_ACCOUNTS.open(spec.plugin.ownerId);

/** The guest did something that makes the plugin unusable (a callback answered false). */
export class VmStartFailure extends Error {
  constructor(
    readonly outcome: 'vm_start_failed' | 'configure_failed',
    message: string,
  ) {
    super(message);
    this.name = 'VmStartFailure';
  }
}

export interface CallResponse {
  status: number;
  headers: HeaderMap;
  body: Uint8Array;
  trailers: HeaderMap;
}

type GuestFunction = (...args: number[]) => unknown;

export class PluginVm {
  readonly rootContextId = 1;
  readonly streams = new Map<number, StreamState>();
  readonly shared: SharedData;
  readonly queues: SharedQueues;
  readonly metrics: Metrics;
  readonly rootProperties = new Map<string, Uint8Array>();
  recorder: Recorder;
  effectiveContextId = 1;
  tickPeriodMs = 0;
  /** proxy_on_memory_allocate returned 0: a later trap is most likely the memory cap. */
  allocationFailed = false;
  /** Set while proxy_on_http_call_response runs. */
  callResponse: CallResponse | undefined;
  /** Set while a gRPC callback runs: its metadata maps, message and status. */
  grpcResponse: GrpcReceived | undefined;
  /** gRPC streams open for writing (opened, not yet half-closed by the filter or closed by the upstream). */
  readonly grpcStreams = new Map<number, GrpcStreamDraft>();
  /** Calls made since the worker last handed them to the main thread. */
  outgoingCalls: OutgoingCall[] = [];
  /** Stream sends and cancels since then (after those calls: a stream is opened before it is written to). */
  streamWrites: QueuedStreamWrite[] = [];
  readonly pendingCalls = new Map<number, PendingCall>();
  readonly queueReady: Array<{ contextId: number; queueId: number }> = [];
  lastUsed = Date.now();
  /** The callback running now (local responses record where they were sent from). */
  currentCallback: string | undefined;
  private disposed = false;
  private nextContextId = 2;
  private nextToken = 1;
  private instance: WebAssembly.Instance | undefined;
  private guestMemory: GuestMemory | undefined;
  private allocator: GuestFunction | undefined;
  private releaseMemory: () => void = () => undefined;

  private readonly account: OwnerAccount;

  /**
   * `openAccount` gives the VM its owner's account: its shared data and
   * queues count against the owner's limits until dispose().
   */
  constructor(
    readonly spec: VmSpec,
    openAccount: AccountOpener = openInThread,
  ) {
    this.recorder = new Recorder(recorderLimits(spec));
    const usage = openAccount(spec);
    this.account = usage;
    const refused = (limit: string, note: string): void => this.recorder.limit(limit, note);
    this.shared = new SharedData(spec.limits.shared, usage, refused);
    this.queues = new SharedQueues(spec.limits.shared, usage, refused);
    this.metrics = new Metrics(spec.limits.shared);
  }

  /** Gives the VM's shared data and queues back to its owner's budget; the VM is not used after. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // Nothing may call into the instance once its memory can go to another VM.
    this.instance = undefined;
    this.allocator = undefined;
    this.releaseMemory();
    this.shared.clear();
    this.queues.clear();
    this.account.close();
  }

  get memory(): GuestMemory {
    if (!this.guestMemory) throw new Error('the VM is not instantiated');
    return this.guestMemory;
  }

  /** Records a log line of the effective context, unless it is below the configured level. */
  log(level: LogLevelName, message: string): void {
    if (LOG_LEVELS.indexOf(level) >= this.spec.logLevel) this.recorder.log(level, message, this.effectiveContextId);
  }

  /** Instantiates the module and runs the plugin's start-up callbacks (ABI order). */
  start(): void {
    const { plan } = this.spec;
    const stdio = { args: [], env: {}, stdin: new Uint8Array(0), stdout: lineLogger(this, 'info'), stderr: lineLogger(this, 'error') };
    const wasi = createWasi(stdio, () => this.memory, hostNames(plan, [WASI_MODULE, WASI_LEGACY_MODULE]));
    const env = hostImports(this, hostNames(plan, ['env']));
    const imports = linkImports(plan, { env, [WASI_MODULE]: wasi, [WASI_LEGACY_MODULE]: wasi }, (module, name) => this.recorder.stub(module, name));
    this.releaseMemory = leaseMemory(imports, this.spec.memory);
    const started = performance.now();
    this.instance = new WebAssembly.Instance(this.spec.module, imports);
    this.recorder.callback({ name: 'instantiate', contextId: 0, durationMs: performance.now() - started });
    const memory = this.instance.exports.memory;
    if (!(memory instanceof WebAssembly.Memory)) throw new VmStartFailure('vm_start_failed', 'the module does not export its memory as "memory"');
    this.guestMemory = new GuestMemory(memory);
    this.allocator = this.guestFunction('proxy_on_memory_allocate') ?? this.guestFunction('malloc');
    this.initialize();
    this.call('proxy_on_context_create', this.rootContextId, this.rootContextId, 0);
    if (this.call('proxy_on_vm_start', this.rootContextId, this.rootContextId, this.spec.vmConfig.length) === 0) {
      throw new VmStartFailure('vm_start_failed', 'proxy_on_vm_start returned false: the filter rejected its VM configuration');
    }
    if (this.call('proxy_on_configure', this.rootContextId, this.rootContextId, this.spec.pluginConfig.length) === 0) {
      throw new VmStartFailure('configure_failed', 'proxy_on_configure returned false: the filter rejected its plugin configuration (the version config)');
    }
  }

  /** _initialize (then main), or _start when there is no _initialize, as the spec orders. */
  private initialize(): void {
    if (this.has('_initialize')) {
      this.call('_initialize', 0);
      if (this.has('main')) this.call('main', 0, 0, 0);
    } else if (this.has('_start')) {
      this.call('_start', 0);
    }
  }

  has(name: string): boolean {
    return this.guestFunction(name) !== undefined;
  }

  private guestFunction(name: string): GuestFunction | undefined {
    const value = this.instance?.exports[name];
    return typeof value === 'function' ? (value as GuestFunction) : undefined;
  }

  /**
   * Calls an exported callback (when the module has it) as context
   * `contextId`, timing and recording it. Returns its i32 result, if any.
   */
  call(name: string, contextId: number, ...args: number[]): number | undefined {
    const fn = this.guestFunction(name);
    if (!fn) return undefined;
    this.effectiveContextId = contextId;
    const outer = this.currentCallback;
    this.currentCallback = name;
    const started = performance.now();
    let result: unknown;
    try {
      result = fn(...args);
    } finally {
      this.currentCallback = outer;
    }
    const returned = typeof result === 'number' ? result : undefined;
    this.recorder.callback({ name, contextId, durationMs: performance.now() - started, ...(returned === undefined ? {} : { returned }) });
    return returned;
  }

  /** Memory in the guest for data the host returns; 0 when the guest could not allocate. */
  allocate(size: number): number {
    if (!this.allocator) return 0;
    const pointer = Number(this.allocator(size)) >>> 0;
    if (pointer === 0) {
      this.allocationFailed = true;
      this.recorder.note(`the filter could not allocate ${size} bytes for data from the host (its allocator returned 0)`);
    }
    return pointer;
  }

  /**
   * Hands bytes to the guest the ABI way: copied into memory it allocates,
   * pointer and size written where it asked. Empty data is a null pointer
   * and size 0, as proxy-wasm-cpp-host does. False when allocation failed.
   */
  returnBytes(data: Uint8Array, pointerPtr: number, sizePtr: number): boolean {
    let pointer = 0;
    if (data.length > 0) {
      pointer = this.allocate(data.length);
      if (pointer === 0) return false;
      this.memory.write(pointer, data);
    }
    this.memory.writeU32(pointerPtr, pointer);
    this.memory.writeU32(sizePtr, data.length);
    return true;
  }

  createStream(request: HttpRequestData, connection: ConnectionInfo): StreamState {
    const stream = new StreamState(this.nextContextId++, request, connection);
    this.streams.set(stream.id, stream);
    this.call('proxy_on_context_create', stream.id, stream.id, this.rootContextId);
    return stream;
  }

  /** The stream the host functions act on (none while a root callback runs). */
  effectiveStream(): StreamState | undefined {
    return this.streams.get(this.effectiveContextId);
  }

  isContext(id: number): boolean {
    return id === this.rootContextId || this.streams.has(id);
  }

  dispatchCall(contextId: number, upstream: string, request: HttpRequestData, timeoutMs: number, grpc?: GrpcCallInfo): number {
    const token = this.newToken();
    this.pendingCalls.set(token, { contextId, ...(grpc ? { grpc } : {}) });
    this.outgoingCalls.push({ token, ownerId: this.spec.plugin.ownerId, contextId, upstream, request, timeoutMs, ...(grpc ? { grpc } : {}) });
    return token;
  }

  /** Tokens are shared by HTTP calls, gRPC calls and gRPC streams (one id space, as in Envoy). */
  newToken(): number {
    return this.nextToken++;
  }

  takeOutgoingCalls(): OutgoingCall[] {
    const calls = this.outgoingCalls;
    this.outgoingCalls = [];
    return calls;
  }

  takeStreamWrites(): GrpcStreamWrite[] {
    const writes = takeStreamWrites(this.streamWrites);
    this.streamWrites = [];
    return writes;
  }

  /** proxy_on_queue_ready for everything enqueued, bounded so re-enqueueing from it cannot loop forever. */
  deliverQueueReady(): void {
    for (let delivered = 0; this.queueReady.length > 0; delivered++) {
      if (delivered >= this.spec.limits.maxQueueDeliveries) {
        this.recorder.note(`more than ${this.spec.limits.maxQueueDeliveries} queue notifications in one step; the rest were dropped`);
        this.queueReady.length = 0;
        return;
      }
      const next = this.queueReady.shift();
      if (next) this.call('proxy_on_queue_ready', next.contextId, next.contextId, next.queueId);
    }
  }

  tick(): void {
    this.call('proxy_on_tick', this.rootContextId, this.rootContextId);
    this.deliverQueueReady();
  }

  memoryBytes(): number {
    return this.guestMemory?.size ?? 0;
  }
}

export function recorderLimits(spec: VmSpec): RecorderLimits {
  return { ...DEFAULT_RECORDER_LIMITS, maxLogLines: spec.limits.maxLogLines, maxLogBytes: spec.limits.maxLogBytes };
}

/** fd_write to stdout/stderr becomes log lines, split at newlines (the spec's WASI logging). */
function lineLogger(vm: PluginVm, level: 'info' | 'error'): (chunk: Uint8Array) => void {
  const decoder = new TextDecoder('utf-8');
  return (chunk) => {
    for (const line of decoder.decode(chunk).split('\n')) {
      if (line !== '') vm.log(level, line);
    }
  };
}
