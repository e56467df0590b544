/**
 * The test bed as the API uses it: run a function once, run one request
 * through a filter (a fresh VM: start-up logs and timings included, nothing
 * carried over), or serve preview traffic through a warm VM that lives on
 * between requests like a proxy's.
 *
 * Workers start on first use unless the configuration asks to pre-warm them,
 * so an API that never runs the test bed pays nothing for it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { PlatformError } from '../errors.ts';
import type { MemoryType } from '../wasm/memory-import.ts';
import { CallDriver } from './call-driver.ts';
import type { TestbedConfig } from './config.ts';
import type { ExchangeReport, UpstreamAnswer } from './exchange.ts';
import { runExchange } from './exchange.ts';
import type { ConnectionInfo, HttpRequestData, HttpResponseData } from './http-message.ts';
import type { ArtifactRef, PreparedModule } from './modules.ts';
import { ModuleCache } from './modules.ts';
import { OwnerBudgets } from './owner-budget.ts';
import type { WorkerRef } from './pool.ts';
import { WorkerLostError, WorkerPool, WorkerTimeoutError } from './pool.ts';
import type { FailureOutcome, FilterStep, GrpcStreamWrite, HostLimits, OutgoingCall, PluginInfo, VmSpec, WasiRunResult, WorkerEvent } from './protocol.ts';
import { DEFAULT_RECORDER_LIMITS } from './recorder.ts';
import type { RecorderLimits } from './recorder.ts';
import { UpstreamError, Upstreams, upstreamFailureResponse } from './upstream.ts';
import { GrpcUpstreams } from './grpc-upstream.ts';
import type { LiveGrpcStream } from './grpc-upstream.ts';

export interface Limits {
  timeoutMs?: number;
  memoryMb?: number;
}

export interface FunctionInvocation extends Limits {
  /** Whom the function runs for (fair sharing, per-owner host state). */
  ownerId: string;
  stdin: Uint8Array;
  args: string[];
  env: Record<string, string>;
}

export interface FunctionResult {
  outcome: 'ok' | 'timeout' | 'aborted' | FailureOutcome;
  message?: string;
  stack?: string[];
  exitCode: number | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  unimplemented: string[];
  durationMs: number;
  module: ModuleSummary;
}

export interface ModuleSummary {
  sha256: string;
  size: number;
  memoryCapBytes: number;
  compileMs: number;
}

export interface PluginSettings {
  info: PluginInfo;
  /** The version's config: the plugin configuration the filter reads in proxy_on_configure. */
  config: string;
}

export interface FilterInvocation extends Limits {
  request: HttpRequestData;
  connection?: Partial<ConnectionInfo>;
  /** A response to use instead of asking the upstream. */
  response?: HttpResponseData;
  /** The upstream to ask (default: echo). */
  upstream?: string;
  /** Answers for the filter's proxy_http_call, by upstream name, instead of real calls. */
  httpCallResponses?: Record<string, HttpResponseData>;
  ticks?: number;
  logLevel?: number;
}

export type FilterResult = ExchangeReport & { module: ModuleSummary };

const MB = 1024 * 1024;
/** Owners whose upstream connection pools stay open at once (least recently used beyond are closed). */
const MAX_OWNER_POOLS = 256;

export class Testbed {
  readonly upstreams: Upstreams;
  /** Filters' gRPC calls: HTTP/2 sessions per owner and origin (decision 0033). */
  private readonly grpc: GrpcUpstreams;
  private readonly modules: ModuleCache;
  private readonly budgets: OwnerBudgets;
  private pool: WorkerPool | undefined;

  /**
   * `modules` and `budgets`: shared with the other Testbeds of the same
   * process (a runner's slots share one module cache, and one table of
   * per-owner budgets: shared data and queues are bounded per owner per
   * process, decision 0030).
   */
  constructor(
    readonly config: TestbedConfig,
    modules?: ModuleCache,
    budgets?: OwnerBudgets,
  ) {
    this.upstreams = new Upstreams(config.upstreams, { timeoutMs: config.upstreamTimeoutMs, maxResponseBytes: config.maxBodyBytes, socketsPerOwner: config.upstreamSocketsPerOwner, maxOwnerPools: MAX_OWNER_POOLS });
    this.grpc = new GrpcUpstreams(config.upstreams, { timeoutMs: config.upstreamTimeoutMs, maxResponseBytes: config.maxHttpCallResponseBytes, maxSessions: MAX_OWNER_POOLS });
    this.modules = modules ?? new ModuleCache(config.moduleCacheEntries, config.moduleShape);
    this.budgets = budgets ?? new OwnerBudgets(budgetLanes(config.workers, config.spares));
    if (config.prewarm) void this.workers().warm().catch(() => undefined);
  }

  private workers(): WorkerPool {
    this.pool ??= new WorkerPool({
      size: this.config.workers,
      spares: this.config.spares,
      maxWarmVms: this.config.maxWarmVms,
      idleTickStopMs: this.config.idleTickStopMs,
      // A timer callback has no caller waiting, but calls may queue behind it: it gets a short budget.
      backgroundDeadlineMs: this.config.tickBudgetMs,
      resourceLimits: { maxOldGenerationSizeMb: this.config.workerHeapMb, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
      budgets: this.budgets,
      guestNice: this.config.guestNice,
      onEvent: (ref, event) => this.onWorkerEvent(ref, event),
    });
    return this.pool;
  }

  /** Prepares (and caches) a module: memory cap, checks, compilation. Errors are 422s. */
  prepare(artifact: ArtifactRef, kind: 'proxy-wasm' | 'wasi-command', limits: Limits): Promise<PreparedModule> {
    return this.modules.get(artifact, kind, this.capPages(limits));
  }

  async invokeFunction(artifact: ArtifactRef, invocation: FunctionInvocation): Promise<FunctionResult> {
    const prepared = await this.prepare(artifact, 'wasi-command', invocation);
    const timeoutMs = this.timeout(invocation);
    const job = { moduleKey: prepared.key, module: prepared.module, plan: prepared.plan, ...pooledMemory(prepared), capBytes: prepared.capBytes, stdin: invocation.stdin, args: invocation.args, env: invocation.env, maxOutputBytes: this.config.maxOutputBytes };
    const started = performance.now();
    const base = { exitCode: null, stdout: new Uint8Array(0), stderr: new Uint8Array(0), stdoutTruncated: false, stderrTruncated: false, unimplemented: [], module: summary(prepared) };
    try {
      const { reply } = await this.workers().send({ op: 'wasi.run', job }, { affinity: prepared.sha256, deadlineMs: timeoutMs });
      if (!reply.ok) throw new PlatformError('testbed_host_error', `the test bed failed while running the function: ${'error' in reply ? reply.error : reply.failure.message}`);
      const run = reply.value as WasiRunResult;
      const { failure, ...rest } = run;
      return { ...base, ...rest, outcome: failure?.outcome ?? 'ok', ...(failure ? { message: failure.message, ...(failure.stack?.length ? { stack: failure.stack } : {}) } : {}) };
    } catch (error) {
      if (error instanceof WorkerTimeoutError) {
        return { ...base, outcome: 'timeout', message: `the function ran longer than its ${timeoutMs} ms deadline and was stopped; its output is lost`, durationMs: performance.now() - started };
      }
      if (error instanceof WorkerLostError) return { ...base, outcome: error.outOfMemory ? 'memory_limit' : 'aborted', message: error.message, durationMs: performance.now() - started };
      throw error;
    }
  }

  /** One request through a fresh VM of the filter. */
  async invokeFilter(artifact: ArtifactRef, plugin: PluginSettings, invocation: FilterInvocation): Promise<FilterResult> {
    const prepared = await this.prepare(artifact, 'proxy-wasm', invocation);
    const vm = this.vmSpec(prepared, plugin, invocation.logLevel ?? 0, `${plugin.info.versionId}:${randomUUID()}`);
    const report = await runExchange({
      pool: this.workers(),
      affinity: plugin.info.versionId,
      vm,
      fresh: true,
      ticks: Math.min(invocation.ticks ?? 0, 100),
      request: invocation.request,
      connection: connectionInfo(invocation.connection),
      budgetMs: this.timeout(invocation),
      upstream: (request) => (invocation.response ? Promise.resolve({ response: invocation.response }) : this.askUpstream(invocation.upstream ?? 'echo', request, plugin.info.ownerId)),
      httpCall: (call) => this.httpCall(call, invocation.httpCallResponses),
      grpcStream: (call) => this.grpcStream(call, invocation.httpCallResponses),
      endInBackground: false,
      maxCallRounds: this.config.maxHttpCallRounds,
      recordingLimits: this.recordingLimits(),
    });
    return { ...report, module: summary(prepared) };
  }

  /**
   * One request through the warm VM of the filter (the preview URL), or with
   * `fresh` through a new VM made from the compiled module and dropped after
   * the request (a version's `preview.freshInstance`: no state survives).
   */
  async serveFilter(artifact: ArtifactRef, plugin: PluginSettings, request: HttpRequestData, connection: Partial<ConnectionInfo>, upstream: string, fresh = false): Promise<FilterResult> {
    const prepared = await this.prepare(artifact, 'proxy-wasm', {});
    const vm = this.vmSpec(prepared, plugin, 0, warmVmKey(plugin, prepared));
    const report = await runExchange({
      pool: this.workers(),
      affinity: plugin.info.versionId,
      vm,
      fresh,
      ticks: 0,
      request,
      connection: connectionInfo(connection),
      budgetMs: this.config.timeoutMs,
      upstream: (forwarded) => this.askUpstream(upstream, forwarded, plugin.info.ownerId),
      httpCall: (call) => this.httpCall(call, undefined),
      grpcStream: (call) => this.grpcStream(call, undefined),
      endInBackground: true,
      maxCallRounds: this.config.maxHttpCallRounds,
      recordingLimits: this.recordingLimits(),
    });
    return { ...report, module: summary(prepared) };
  }

  /**
   * Starts the filter's warm VM (the one serveFilter uses) without a request:
   * a build just succeeded, and its first preview request should find the
   * module compiled and the VM started. True when a VM was started.
   */
  async warmFilter(artifact: ArtifactRef, plugin: PluginSettings): Promise<boolean> {
    const prepared = await this.prepare(artifact, 'proxy-wasm', {});
    const { reply } = await this.workers().send({ op: 'filter.warm', vm: this.vmSpec(prepared, plugin, 0, warmVmKey(plugin, prepared)) }, { affinity: plugin.info.versionId, deadlineMs: this.config.timeoutMs });
    return reply.ok && reply.value === true;
  }

  async close(): Promise<void> {
    this.upstreams.close();
    this.grpc.close();
    await this.pool?.close();
  }

  private vmSpec(prepared: PreparedModule, plugin: PluginSettings, logLevel: number, key: string): VmSpec {
    return {
      key,
      moduleKey: prepared.key,
      module: prepared.module,
      plan: prepared.plan,
      ...pooledMemory(prepared),
      capBytes: prepared.capBytes,
      pluginConfig: new TextEncoder().encode(plugin.config),
      vmConfig: new Uint8Array(0),
      plugin: plugin.info,
      logLevel,
      upstreams: this.upstreams.names(),
      limits: hostLimits(this.config),
      ownerTicket: this.budgets.ticket(plugin.info.ownerId),
    };
  }

  private async askUpstream(name: string, request: HttpRequestData, ownerId: string): Promise<UpstreamAnswer> {
    try {
      return { response: await this.upstreams.send(name, request, { ownerId }) };
    } catch (error) {
      if (!(error instanceof UpstreamError)) throw error;
      return { response: upstreamFailureResponse(error), error: error.message };
    }
  }

  private httpCall(call: OutgoingCall, simulated: Record<string, HttpResponseData> | undefined): Promise<HttpResponseData> {
    const canned = simulated?.[call.upstream];
    if (canned) return Promise.resolve(canned);
    if (call.grpc) return this.grpc.send(call.upstream, call.request, { ownerId: call.ownerId, timeoutMs: call.timeoutMs });
    return this.upstreams.send(call.upstream, call.request, { ownerId: call.ownerId, timeoutMs: call.timeoutMs, maxResponseBytes: this.config.maxHttpCallResponseBytes });
  }

  /** A gRPC stream, opened live; undefined when the invocation gave a canned answer for its upstream. */
  private grpcStream(call: OutgoingCall, simulated: Record<string, HttpResponseData> | undefined): LiveGrpcStream | undefined {
    if (simulated?.[call.upstream]) return undefined;
    return this.grpc.openStream(call.upstream, call.request, { ownerId: call.ownerId, timeoutMs: call.timeoutMs });
  }

  /**
   * Calls a warm VM made from a timer: performed, and their answers (and the
   * calls made from those, up to maxHttpCallRounds) handed to the same worker.
   */
  private onWorkerEvent(ref: WorkerRef, event: WorkerEvent): void {
    if (event.event !== 'calls') return;
    const driver = new CallDriver({ call: (call) => this.httpCall(call, undefined).catch(() => null), openStream: (call) => this.grpcStream(call, undefined) }, this.config.maxHttpCallRounds);
    const follow = (calls: OutgoingCall[], writes: GrpcStreamWrite[], round: number): void => {
      driver.launch(calls, round);
      driver.apply(writes);
    };
    const run = async (): Promise<void> => {
      follow(event.calls, event.streamWrites, 0);
      for (let arrival = await driver.next(); arrival; arrival = await driver.next()) {
        const message = { op: 'filter.deliver' as const, vmKey: event.vmKey, token: arrival.token, response: arrival.response, contextId: arrival.contextId, ...(arrival.partial ? { partial: true } : {}) };
        const { reply } = await this.workers().send(message, { affinity: '', deadlineMs: this.config.timeoutMs, pin: ref });
        if (!reply.ok) return;
        const step = reply.value as FilterStep;
        follow(step.calls, step.streamWrites, arrival.round + 1);
      }
    };
    // A timer's calls have no caller to report to: a failure (a lost worker, the round limit) just ends them.
    void run()
      .catch(() => undefined)
      .finally(() => driver.close());
  }

  private recordingLimits(): RecorderLimits {
    return { ...DEFAULT_RECORDER_LIMITS, maxLogLines: this.config.maxLogLines, maxLogBytes: this.config.maxLogBytes };
  }

  private timeout(limits: Limits): number {
    return Math.min(limits.timeoutMs ?? this.config.timeoutMs, this.config.maxTimeoutMs);
  }

  private capPages(limits: Limits): number {
    const mb = Math.min(limits.memoryMb ?? this.config.memoryCapMb, this.config.memoryCapMb);
    return Math.max(1, Math.floor((mb * MB) / 65_536));
  }
}

/** The key of a version's warm VM: a new module or config is a new VM. */
function warmVmKey(plugin: PluginSettings, prepared: PreparedModule): string {
  const configHash = createHash('sha256').update(plugin.config).digest('hex').slice(0, 16);
  return `${plugin.info.versionId}:${prepared.key}:${configHash}`;
}

/**
 * Lanes (live worker threads) a budget table needs for `pools` pools of
 * `workers` threads plus spares: twice that, because a stopped thread keeps
 * its lane until it has exited while its replacement already runs.
 */
export function budgetLanes(workers: number, spares: number, pools = 1): number {
  return 2 * pools * (workers + spares) + 2;
}

/** The module's memory type when it imports its memory (spread, so an absent one stays absent). */
function pooledMemory(prepared: PreparedModule): { memory?: MemoryType } {
  return prepared.memory ? { memory: prepared.memory } : {};
}

function hostLimits(config: TestbedConfig): HostLimits {
  return {
    maxBodyBytes: config.maxBodyBytes,
    maxHttpCalls: config.maxHttpCalls,
    maxQueueDeliveries: 100,
    minTickPeriodMs: config.minTickPeriodMs,
    maxHeaderCount: config.maxHeaderCount,
    maxHeaderBytes: config.maxHeaderBytes,
    maxLogLines: config.maxLogLines,
    maxLogBytes: config.maxLogBytes,
    shared: {
      maxSharedKeys: config.maxSharedKeys,
      maxSharedBytes: config.maxSharedBytes,
      maxQueues: config.maxQueues,
      maxQueueDepth: config.maxQueueDepth,
      maxQueueBytes: config.maxQueueBytes,
      maxMetrics: 1000,
    },
  };
}

function summary(prepared: PreparedModule): ModuleSummary {
  return { sha256: prepared.sha256, size: prepared.size, memoryCapBytes: prepared.capBytes, compileMs: prepared.compileMs };
}

function connectionInfo(partial: Partial<ConnectionInfo> = {}): ConnectionInfo {
  return {
    sourceAddress: partial.sourceAddress ?? '127.0.0.1',
    sourcePort: partial.sourcePort ?? 0,
    destinationAddress: partial.destinationAddress ?? '127.0.0.1',
    destinationPort: partial.destinationPort ?? 0,
    protocol: partial.protocol ?? 'HTTP/1.1',
    requestId: partial.requestId ?? randomUUID(),
  };
}
