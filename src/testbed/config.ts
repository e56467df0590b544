/**
 * Test bed settings, from KILN_TESTBED_* environment variables with embedded
 * defaults sized for a small machine (BRIEF §6: 2 cores).
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from '../config.ts';
import type { ModuleShapeLimits } from '../wasm/module-limits.ts';
import { DEFAULT_MODULE_SHAPE_LIMITS } from '../wasm/module-limits.ts';
import { parseUpstreamList } from './upstream.ts';

export interface TestbedConfig {
  /** Slots per runner process (one worker thread each), and warm spares per slot that replace a stopped thread at once. */
  workers: number;
  spares: number;
  /** Runner processes the API starts on this machine (0: only remote `kiln testbed` runners). */
  localRunners: number;
  /** V8 heap limit of a local runner process (--max-old-space-size). */
  runnerHeapMb: number;
  /** Fair sharing (runner/scheduler.ts): slots one owner may hold, calls it may queue, how long they may wait, calls/s and burst. */
  ownerSlots: number;
  ownerQueue: number;
  queueWaitMs: number;
  ownerRate: number;
  ownerBurst: number;
  /** Start the workers with the API instead of on the first invocation. */
  prewarm: boolean;
  /** Guest time per invocation by default, and the most a request may ask for. */
  timeoutMs: number;
  maxTimeoutMs: number;
  /** Memory cap of a module's memory (the default and the most a request may ask for). */
  memoryCapMb: number;
  moduleCacheEntries: number;
  maxWarmVms: number;
  /** A warm VM's proxy_on_tick timer stops after this long without requests. */
  idleTickStopMs: number;
  minTickPeriodMs: number;
  /** How long one proxy_on_tick outside a request may run before its worker is replaced. */
  tickBudgetMs: number;
  /** Bodies a filter may build, and upstream response bodies. */
  maxBodyBytes: number;
  /** Per stream (stdout, stderr) of a function. */
  maxOutputBytes: number;
  workerHeapMb: number;
  /**
   * Niceness of the worker threads that run guest code (Linux, per thread; 0 leaves them as they are): the
   * API's and runners' main threads come before any tenant's Wasm, so one owner's busy loops cannot starve
   * the I/O of another owner's calls on a small machine.
   */
  guestNice: number;
  /** Operator allow-list: name → origin. `echo` is built in. */
  upstreams: Map<string, URL>;
  upstreamTimeoutMs: number;
  /** How long the preview URL may reuse what it looked up for a version (version, build, artifact). */
  previewCacheMs: number;
  /** Tables (each table's maximum is capped), functions, globals, segments a module may declare. */
  moduleShape: ModuleShapeLimits;
  /** Per header or trailer map a filter builds (Envoy: 100 headers, 60 KiB). */
  maxHeaderCount: number;
  maxHeaderBytes: number;
  /** proxy_http_call: calls per step, rounds of calls made from call responses, and each response body. */
  maxHttpCalls: number;
  maxHttpCallRounds: number;
  maxHttpCallResponseBytes: number;
  /** Upstream sockets of one owner (each owner has its own connection pool). */
  upstreamSocketsPerOwner: number;
  /** Shared data and queues, per owner (summed over the owner's VMs in all worker threads of one test bed process: a runner). */
  maxSharedKeys: number;
  maxSharedBytes: number;
  maxQueues: number;
  maxQueueDepth: number;
  maxQueueBytes: number;
  /** Log lines and their bytes kept per invocation (or preview request). */
  maxLogLines: number;
  maxLogBytes: number;
  /** Bytes of each body shown in an invocation's result (the rest is counted, not shown). */
  maxResultBodyBytes: number;
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return value;
}

export function loadTestbedConfig(env: Env = process.env): TestbedConfig {
  const timeoutMs = integer(env, 'KILN_TESTBED_TIMEOUT_MS', 2_000, 10);
  let upstreams: Map<string, URL>;
  try {
    upstreams = parseUpstreamList(env.KILN_TESTBED_UPSTREAMS);
  } catch (error) {
    throw new ConfigError(`KILN_TESTBED_UPSTREAMS: ${error instanceof Error ? error.message : String(error)}`);
  }
  return {
    // Two slots even on two cores: with one slot per owner at most, a second owner always finds one free.
    workers: integer(env, 'KILN_TESTBED_WORKERS', Math.max(2, Math.min(4, availableParallelism() - 1)), 1, 64),
    spares: integer(env, 'KILN_TESTBED_SPARES', 1, 0, 16),
    localRunners: integer(env, 'KILN_TESTBED_RUNNERS', 1, 0, 16),
    runnerHeapMb: integer(env, 'KILN_TESTBED_RUNNER_HEAP_MB', 512, 64),
    ownerSlots: integer(env, 'KILN_TESTBED_OWNER_SLOTS', 1, 1, 1024),
    ownerQueue: integer(env, 'KILN_TESTBED_OWNER_QUEUE', 32, 0, 10_000),
    queueWaitMs: integer(env, 'KILN_TESTBED_QUEUE_WAIT_MS', 10_000, 10),
    ownerRate: integer(env, 'KILN_TESTBED_OWNER_RATE', 5_000, 1),
    ownerBurst: integer(env, 'KILN_TESTBED_OWNER_BURST', 1_000, 1),
    prewarm: env.KILN_TESTBED_PREWARM === 'true' || env.KILN_TESTBED_PREWARM === '1',
    timeoutMs,
    maxTimeoutMs: Math.max(timeoutMs, integer(env, 'KILN_TESTBED_MAX_TIMEOUT_MS', 10_000, 10)),
    memoryCapMb: integer(env, 'KILN_TESTBED_MEMORY_MB', 64, 1, 4096),
    moduleCacheEntries: integer(env, 'KILN_TESTBED_MODULE_CACHE', 32, 1),
    maxWarmVms: integer(env, 'KILN_TESTBED_WARM_VMS', 8, 1),
    idleTickStopMs: 60_000,
    minTickPeriodMs: 100,
    tickBudgetMs: integer(env, 'KILN_TESTBED_TICK_BUDGET_MS', 200, 10),
    maxBodyBytes: integer(env, 'KILN_TESTBED_MAX_BODY_BYTES', 8 * 1024 * 1024, 1024),
    maxOutputBytes: integer(env, 'KILN_TESTBED_MAX_OUTPUT_BYTES', 1024 * 1024, 1024),
    workerHeapMb: integer(env, 'KILN_TESTBED_WORKER_HEAP_MB', 256, 32),
    guestNice: integer(env, 'KILN_TESTBED_GUEST_NICE', 5, 0, 19),
    upstreams,
    upstreamTimeoutMs: integer(env, 'KILN_TESTBED_UPSTREAM_TIMEOUT_MS', 10_000, 100),
    previewCacheMs: integer(env, 'KILN_TESTBED_PREVIEW_CACHE_MS', 1_000, 0),
    moduleShape: loadModuleShape(env),
    maxHeaderCount: integer(env, 'KILN_TESTBED_MAX_HEADERS', 100, 8, 10_000),
    maxHeaderBytes: integer(env, 'KILN_TESTBED_MAX_HEADER_BYTES', 60 * 1024, 1024, 16 * 1024 * 1024),
    maxHttpCalls: integer(env, 'KILN_TESTBED_MAX_HTTP_CALLS', 16, 1, 1024),
    maxHttpCallRounds: integer(env, 'KILN_TESTBED_MAX_HTTP_CALL_ROUNDS', 16, 1, 1024),
    maxHttpCallResponseBytes: integer(env, 'KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES', 1024 * 1024, 1024),
    upstreamSocketsPerOwner: integer(env, 'KILN_TESTBED_UPSTREAM_SOCKETS_PER_OWNER', 8, 1, 1024),
    maxSharedKeys: integer(env, 'KILN_TESTBED_MAX_SHARED_KEYS', 1_000, 1),
    // At most 1 GiB: the per-owner counts are 32-bit cells shared by a runner's threads (owner-budget.ts).
    maxSharedBytes: integer(env, 'KILN_TESTBED_MAX_SHARED_BYTES', 4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxQueues: integer(env, 'KILN_TESTBED_MAX_QUEUES', 64, 1),
    maxQueueDepth: integer(env, 'KILN_TESTBED_MAX_QUEUE_DEPTH', 1_000, 1),
    maxQueueBytes: integer(env, 'KILN_TESTBED_MAX_QUEUE_BYTES', 4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    maxLogLines: integer(env, 'KILN_TESTBED_MAX_LOG_LINES', 1_000, 10),
    maxLogBytes: integer(env, 'KILN_TESTBED_MAX_LOG_BYTES', 256 * 1024, 1024),
    maxResultBodyBytes: integer(env, 'KILN_TESTBED_MAX_RESULT_BODY_BYTES', 256 * 1024, 1024),
  };
}

const SHAPE_VARIABLES: Readonly<Record<keyof ModuleShapeLimits, string>> = {
  maxTables: 'KILN_TESTBED_MAX_TABLES',
  maxTableEntries: 'KILN_TESTBED_MAX_TABLE_ENTRIES',
  maxTypes: 'KILN_TESTBED_MAX_TYPES',
  maxFunctions: 'KILN_TESTBED_MAX_FUNCTIONS',
  maxGlobals: 'KILN_TESTBED_MAX_GLOBALS',
  maxElementSegments: 'KILN_TESTBED_MAX_ELEMENT_SEGMENTS',
  maxDataSegments: 'KILN_TESTBED_MAX_DATA_SEGMENTS',
};

function loadModuleShape(env: Env): ModuleShapeLimits {
  const shape = { ...DEFAULT_MODULE_SHAPE_LIMITS };
  for (const [field, variable] of Object.entries(SHAPE_VARIABLES) as Array<[keyof ModuleShapeLimits, string]>) {
    // V8 has hard limits of its own (1M functions and globals, 10M table entries); stay under them.
    shape[field] = integer(env, variable, shape[field], 1, 1_000_000);
  }
  return shape;
}
