/**
 * The test bed section of KilnConfig (`config.testbed`): every runner setting
 * and host limit, declared once in TESTBED_SETTINGS (KILN_TESTBED_* variables,
 * `testbed.*` file keys) with embedded defaults sized for a small machine
 * (BRIEF §6: 2 cores). The API loads it once at start (src/config.ts) and
 * hands it to every runner over the wire (runner/messages.ts), so a runner
 * process never reads an environment of its own.
 */
import { availableParallelism } from 'node:os';
import { booleanSetting, customSetting, integerSetting, SettingReader, type Env } from '../config/settings.ts';
import { JS_TOOLCHAIN_SETTING } from '../languages/javascript/toolchain.ts';
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
  /** An owner's next call may wait on its runner behind the owner's running call on the same slot (decision 0043). */
  sendAhead: boolean;
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
  /**
   * How long a successful build's report may wait, before the build is recorded succeeded, for its module to be
   * compiled on the runners and a filter's warm VM started (decision 0040); 0 leaves it all to after the report.
   * At most 10 s: the worker waits for its report's answer (60 s), and the report is judged first.
   */
  readyWaitMs: number;
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
  /** Kiln's JS toolchain (jco-transpile) that http-components are transpiled with in the runner (the same setting as the builds'). */
  componentToolchainDir: string;
}

const MIB = 1024 * 1024;

/** Two slots even on two cores: with one slot per owner at most, a second owner always finds one free. */
function defaultSlots(): number {
  return Math.max(2, Math.min(4, availableParallelism() - 1));
}

const int = (env: string, key: string, fallback: number, min: number, max: number | undefined, description: string, defaultText?: string) =>
  integerSetting({ env, key: `testbed.${key}`, fallback, min, max, description, defaultText });

/** Every test bed setting; the order is the order of docs/configuration.md. */
export const TESTBED_SETTINGS = {
  workers: integerSetting({ env: 'KILN_TESTBED_WORKERS', key: 'testbed.workers', fallback: undefined, min: 1, max: 64, defaultText: 'cores − 1, from 2 to 4', description: 'Slots per runner process (one worker thread each)' }),
  spares: int('KILN_TESTBED_SPARES', 'spares', 1, 0, 16, 'Warm spare threads per slot that replace a stopped thread at once'),
  localRunners: int('KILN_TESTBED_RUNNERS', 'localRunners', 1, 0, 16, 'Runner processes `kiln serve` starts on its machine (0: only remote `kiln testbed` runners)'),
  runnerHeapMb: int('KILN_TESTBED_RUNNER_HEAP_MB', 'runnerHeapMb', 512, 64, undefined, 'V8 heap limit of a local runner process, MiB (--max-old-space-size)'),
  ownerSlots: int('KILN_TESTBED_OWNER_SLOTS', 'ownerSlots', 1, 1, 1024, 'Slots one owner may hold at once (fair sharing, decision 0013)'),
  ownerQueue: int('KILN_TESTBED_OWNER_QUEUE', 'ownerQueue', 32, 0, 10_000, 'Calls one owner may have waiting for a slot; beyond it, 429'),
  queueWaitMs: int('KILN_TESTBED_QUEUE_WAIT_MS', 'queueWaitMs', 10_000, 10, undefined, 'How long a call may wait for a slot, ms'),
  ownerRate: int('KILN_TESTBED_OWNER_RATE', 'ownerRate', 5_000, 1, undefined, 'Calls per second one owner may start'),
  ownerBurst: int('KILN_TESTBED_OWNER_BURST', 'ownerBurst', 1_000, 1, undefined, 'Burst above the owner rate'),
  sendAhead: booleanSetting({
    env: 'KILN_TESTBED_SEND_AHEAD',
    key: 'testbed.sendAhead',
    fallback: true,
    description: "Send an owner's next call to the slot its running call holds, to start there when that one ends, while no other owner waits (decision 0043)",
  }),
  prewarm: booleanSetting({ env: 'KILN_TESTBED_PREWARM', key: 'testbed.prewarm', fallback: false, defaultText: 'true under `kiln serve`, else false', description: 'Start the runner threads with the API instead of on the first call' }),
  timeoutMs: int('KILN_TESTBED_TIMEOUT_MS', 'timeoutMs', 2_000, 10, undefined, 'Guest time per call by default, ms'),
  maxTimeoutMs: int('KILN_TESTBED_MAX_TIMEOUT_MS', 'maxTimeoutMs', 10_000, 10, undefined, 'The most guest time a request may ask for, ms (never below the default)'),
  memoryCapMb: int('KILN_TESTBED_MEMORY_MB', 'memoryCapMb', 64, 1, 4096, "Cap of a module's linear memory, MiB (the default and the most a request may ask for)"),
  moduleCacheEntries: int('KILN_TESTBED_MODULE_CACHE', 'moduleCacheEntries', 32, 1, undefined, 'Compiled modules kept per worker thread'),
  maxWarmVms: int('KILN_TESTBED_WARM_VMS', 'maxWarmVms', 8, 1, undefined, 'Warm filter VMs kept for preview'),
  idleTickStopMs: int('KILN_TESTBED_IDLE_TICK_STOP_MS', 'idleTickStopMs', 60_000, 1_000, undefined, "A warm VM's proxy_on_tick timer stops after this long without requests, ms"),
  minTickPeriodMs: int('KILN_TESTBED_MIN_TICK_PERIOD_MS', 'minTickPeriodMs', 100, 10, undefined, 'Shortest proxy_on_tick period a module may set, ms'),
  tickBudgetMs: int('KILN_TESTBED_TICK_BUDGET_MS', 'tickBudgetMs', 200, 10, undefined, 'How long one proxy_on_tick outside a request may run before its worker is replaced, ms'),
  maxBodyBytes: int('KILN_TESTBED_MAX_BODY_BYTES', 'maxBodyBytes', 8 * MIB, 1024, undefined, 'Bodies a filter may build, and upstream response bodies, bytes'),
  maxOutputBytes: int('KILN_TESTBED_MAX_OUTPUT_BYTES', 'maxOutputBytes', MIB, 1024, undefined, 'Output per stream (stdout, stderr) of a function, bytes'),
  workerHeapMb: int('KILN_TESTBED_WORKER_HEAP_MB', 'workerHeapMb', 256, 32, undefined, 'V8 heap of one worker thread, MiB'),
  guestNice: int('KILN_TESTBED_GUEST_NICE', 'guestNice', 5, 0, 19, 'Nice value guest worker threads give themselves (Linux), so the API and runner main threads come first under a busy loop (decision 0029)'),
  upstreams: customSetting<Map<string, URL> | undefined>({
    env: 'KILN_TESTBED_UPSTREAMS',
    key: 'testbed.upstreams',
    type: 'list of name=origin',
    // Computed per load (below): a Map shared by every loaded config could be changed through one of them.
    fallback: undefined,
    defaultText: '`echo` (built in) only',
    description: 'Operator allow-list of upstreams filters may reach (comma-separated name=http(s)://origin)',
    parseText: parseUpstreamList,
  }),
  upstreamTimeoutMs: int('KILN_TESTBED_UPSTREAM_TIMEOUT_MS', 'upstreamTimeoutMs', 10_000, 100, undefined, 'Timeout of one upstream request, ms'),
  previewCacheMs: int('KILN_TESTBED_PREVIEW_CACHE_MS', 'previewCacheMs', 1_000, 0, undefined, 'How long the preview URL may reuse what it looked up for a version, ms'),
  readyWaitMs: int('KILN_TESTBED_READY_WAIT_MS', 'readyWaitMs', 1_000, 0, 10_000, "How long a successful build may wait to be recorded succeeded while the runners compile its module and start a filter's warm VM, ms (best effort; 0: after)"),
  maxTables: int('KILN_TESTBED_MAX_TABLES', 'moduleShape.maxTables', DEFAULT_MODULE_SHAPE_LIMITS.maxTables, 1, 1_000_000, 'Tables a module may declare (imported and defined)'),
  maxTableEntries: int('KILN_TESTBED_MAX_TABLE_ENTRIES', 'moduleShape.maxTableEntries', DEFAULT_MODULE_SHAPE_LIMITS.maxTableEntries, 1, 1_000_000, "Entries per table (every defined table's maximum is capped to it)"),
  maxTypes: int('KILN_TESTBED_MAX_TYPES', 'moduleShape.maxTypes', DEFAULT_MODULE_SHAPE_LIMITS.maxTypes, 1, 1_000_000, 'Function types a module may declare'),
  maxFunctions: int('KILN_TESTBED_MAX_FUNCTIONS', 'moduleShape.maxFunctions', DEFAULT_MODULE_SHAPE_LIMITS.maxFunctions, 1, 1_000_000, 'Functions a module may declare'),
  maxGlobals: int('KILN_TESTBED_MAX_GLOBALS', 'moduleShape.maxGlobals', DEFAULT_MODULE_SHAPE_LIMITS.maxGlobals, 1, 1_000_000, 'Globals a module may declare'),
  maxElementSegments: int('KILN_TESTBED_MAX_ELEMENT_SEGMENTS', 'moduleShape.maxElementSegments', DEFAULT_MODULE_SHAPE_LIMITS.maxElementSegments, 1, 1_000_000, 'Element segments a module may declare'),
  maxDataSegments: int('KILN_TESTBED_MAX_DATA_SEGMENTS', 'moduleShape.maxDataSegments', DEFAULT_MODULE_SHAPE_LIMITS.maxDataSegments, 1, 1_000_000, 'Data segments a module may declare'),
  maxHeaderCount: int('KILN_TESTBED_MAX_HEADERS', 'maxHeaderCount', 100, 8, 10_000, 'Headers per header or trailer map a filter builds (Envoy: 100)'),
  maxHeaderBytes: int('KILN_TESTBED_MAX_HEADER_BYTES', 'maxHeaderBytes', 60 * 1024, 1024, 16 * MIB, 'Bytes per header or trailer map (Envoy: 60 KiB)'),
  maxHttpCalls: int('KILN_TESTBED_MAX_HTTP_CALLS', 'maxHttpCalls', 16, 1, 1024, 'HTTP and gRPC calls a filter may have in flight at once (and outgoing calls per component request)'),
  maxHttpCallRounds: int('KILN_TESTBED_MAX_HTTP_CALL_ROUNDS', 'maxHttpCallRounds', 16, 1, 1024, 'Rounds of calls made from call responses'),
  maxHttpCallResponseBytes: int('KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES', 'maxHttpCallResponseBytes', MIB, 1024, undefined, 'Body of each call response, bytes'),
  upstreamSocketsPerOwner: int('KILN_TESTBED_UPSTREAM_SOCKETS_PER_OWNER', 'upstreamSocketsPerOwner', 8, 1, 1024, 'Upstream sockets of one owner (each owner has its own connection pool)'),
  maxSharedKeys: int('KILN_TESTBED_MAX_SHARED_KEYS', 'maxSharedKeys', 1_000, 1, undefined, "Shared-data keys per owner (summed over the owner's VMs in one runner)"),
  maxSharedBytes: int('KILN_TESTBED_MAX_SHARED_BYTES', 'maxSharedBytes', 4 * MIB, 1024, 1024 * MIB, 'Shared-data bytes per owner per runner process (decision 0030; at most 1 GiB: shared 32-bit counters)'),
  maxQueues: int('KILN_TESTBED_MAX_QUEUES', 'maxQueues', 64, 1, undefined, 'Shared queues per owner'),
  maxQueueDepth: int('KILN_TESTBED_MAX_QUEUE_DEPTH', 'maxQueueDepth', 1_000, 1, undefined, 'Items per shared queue'),
  maxQueueBytes: int('KILN_TESTBED_MAX_QUEUE_BYTES', 'maxQueueBytes', 4 * MIB, 1024, 1024 * MIB, 'Bytes in the shared queues of one owner per runner process (at most 1 GiB)'),
  maxLogLines: int('KILN_TESTBED_MAX_LOG_LINES', 'maxLogLines', 1_000, 10, undefined, 'Log lines kept per call (or preview request)'),
  maxLogBytes: int('KILN_TESTBED_MAX_LOG_BYTES', 'maxLogBytes', 256 * 1024, 1024, undefined, 'Log bytes kept per call'),
  maxResultBodyBytes: int('KILN_TESTBED_MAX_RESULT_BODY_BYTES', 'maxResultBodyBytes', 256 * 1024, 1024, undefined, "Bytes of each body shown in a call's result (the rest is counted, not shown)"),
} as const;

/** The section from a reader (src/config.ts passes the one reader of the whole config). */
export function testbedConfigFrom(reader: SettingReader): TestbedConfig {
  const s = TESTBED_SETTINGS;
  const read = reader.read.bind(reader);
  const timeoutMs = read(s.timeoutMs);
  return {
    workers: read(s.workers) ?? defaultSlots(),
    spares: read(s.spares),
    localRunners: read(s.localRunners),
    runnerHeapMb: read(s.runnerHeapMb),
    ownerSlots: read(s.ownerSlots),
    ownerQueue: read(s.ownerQueue),
    queueWaitMs: read(s.queueWaitMs),
    ownerRate: read(s.ownerRate),
    ownerBurst: read(s.ownerBurst),
    sendAhead: read(s.sendAhead),
    prewarm: read(s.prewarm),
    timeoutMs,
    maxTimeoutMs: Math.max(timeoutMs, read(s.maxTimeoutMs)),
    memoryCapMb: read(s.memoryCapMb),
    moduleCacheEntries: read(s.moduleCacheEntries),
    maxWarmVms: read(s.maxWarmVms),
    idleTickStopMs: read(s.idleTickStopMs),
    minTickPeriodMs: read(s.minTickPeriodMs),
    tickBudgetMs: read(s.tickBudgetMs),
    maxBodyBytes: read(s.maxBodyBytes),
    maxOutputBytes: read(s.maxOutputBytes),
    workerHeapMb: read(s.workerHeapMb),
    guestNice: read(s.guestNice),
    upstreams: read(s.upstreams) ?? parseUpstreamList(undefined),
    upstreamTimeoutMs: read(s.upstreamTimeoutMs),
    previewCacheMs: read(s.previewCacheMs),
    readyWaitMs: read(s.readyWaitMs),
    // V8 has hard limits of its own (1M functions and globals, 10M table entries): the shape limits stay under them.
    moduleShape: {
      maxTables: read(s.maxTables),
      maxTableEntries: read(s.maxTableEntries),
      maxTypes: read(s.maxTypes),
      maxFunctions: read(s.maxFunctions),
      maxGlobals: read(s.maxGlobals),
      maxElementSegments: read(s.maxElementSegments),
      maxDataSegments: read(s.maxDataSegments),
    },
    maxHeaderCount: read(s.maxHeaderCount),
    maxHeaderBytes: read(s.maxHeaderBytes),
    maxHttpCalls: read(s.maxHttpCalls),
    maxHttpCallRounds: read(s.maxHttpCallRounds),
    maxHttpCallResponseBytes: read(s.maxHttpCallResponseBytes),
    upstreamSocketsPerOwner: read(s.upstreamSocketsPerOwner),
    maxSharedKeys: read(s.maxSharedKeys),
    maxSharedBytes: read(s.maxSharedBytes),
    maxQueues: read(s.maxQueues),
    maxQueueDepth: read(s.maxQueueDepth),
    maxQueueBytes: read(s.maxQueueBytes),
    maxLogLines: read(s.maxLogLines),
    maxLogBytes: read(s.maxLogBytes),
    maxResultBodyBytes: read(s.maxResultBodyBytes),
    componentToolchainDir: read(JS_TOOLCHAIN_SETTING),
  };
}

/**
 * The section alone, from the variables given (tests, benches): defaults for
 * everything else. Reads no process environment; a server gets its section
 * from loadConfig().testbed.
 */
export function loadTestbedConfig(env: Env = {}): TestbedConfig {
  return testbedConfigFrom(new SettingReader(env));
}
