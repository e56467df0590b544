/**
 * The optimize stage, run by the worker after a successful build:
 *
 *   strip (host, our parser) → Wizer (sandbox) → wasm-opt (sandbox)
 *   → memory cap (host, our parser) → start-up of both variants (sandbox)
 *
 * Wizer comes before wasm-opt so wasm-opt can pack the snapshot's data and
 * drop the init code nothing calls any more; the memory cap comes last so
 * nothing after it rewrites the memory type.
 *
 * Each step is on its own: a step that fails (a Wizer trap, a wasm-opt
 * crash, an output that no longer fits the kind) is recorded with its reason
 * and the next step continues from the last good module. The original is
 * never touched — it is already uploaded when this runs — and no optimized
 * variant is offered when no step applied or when the result does not start
 * while the original does; `fallbackReason` then says why the original is
 * served.
 */
import { errorMessage } from '../errors.ts';
import { createWorkDir } from '../sandbox/volume.ts';
import type { Sandbox, SandboxLimits } from '../sandbox/sandbox.ts';
import type { OptimizeOptions } from './options.ts';
import { inspectModule, type ModuleInfo } from '../wasm/inspect.ts';
import { checkKind, type AppKind } from '../wasm/kind.ts';
import { setMemoryMaximum } from '../wasm/memory-cap.ts';
import { OptimizeResultCache } from './result-cache.ts';
import { skipComponentOptimization } from './component.ts';
import { isStartupTimes, measureStartup, prepareMeasurement, type PreparedMeasurement, type StartupMeasurement } from './startup.ts';
import { stripCustomSections } from './strip.ts';
import { OptimizeCancelled, putFile, takeFile, type ToolContext, type ToolOutcome } from './tool-run.ts';
import { runWasmOpt } from './wasm-opt.ts';
import { exportsWizerInit, findWizerDirectory, runWizer, WIZER_INIT_EXPORT } from './wizer.ts';

export type StepName = 'strip' | 'wizer' | 'wasm-opt' | 'memory-cap';

export interface StepReport {
  name: StepName;
  status: 'applied' | 'skipped' | 'failed';
  /** Why it was skipped or failed. */
  reason?: string;
  durationMs: number;
  bytesBefore?: number;
  bytesAfter?: number;
}

export interface VariantReport {
  bytes: number;
  /** null when measuring was turned off. */
  startup: StartupMeasurement | null;
}

export interface OptimizeReport {
  steps: StepReport[];
  /** Which variant `GET …/artifact` serves by default. */
  served: 'optimized' | 'original';
  /** Set when optimization was asked for but the original is served. */
  fallbackReason?: string;
  /** original total start-up / optimized total start-up, when both were measured. */
  startupSpeedup?: number;
  /** optimized bytes / original bytes. */
  sizeRatio?: number;
  /** True when this is the earlier result for the same module, options and tools (result-cache.ts). */
  reused?: boolean;
}

/** What goes into `build.details` (see docs/decisions/0005). */
export interface OptimizeDetails {
  variants: { original: VariantReport; optimized?: VariantReport };
  optimize: OptimizeReport;
}

export interface OptimizeResult {
  /** The optimized module, when one is offered. */
  optimized?: Uint8Array;
  details: OptimizeDetails;
}

export interface OptimizeInput {
  original: Uint8Array;
  kind: AppKind;
  options: OptimizeOptions;
  sandbox: Sandbox;
  /** Where the stage's private volume is created (the worker's work root). */
  workRoot: string;
  /** The job's limits: memory, CPU, disk and log apply to every tool run. */
  limits: SandboxLimits;
  /** Kiln's lines for the build log. */
  log: (line: string) => void;
  /** The tools' own output for the build log. */
  onOutput: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /** Host directory of the `wizer` binary; default the npm package's, null: no Wizer. */
  wizerDirectory?: string | null;
  /**
   * Measure start-up of both variants. Default: when any optimization is
   * asked for — with everything off there is nothing to compare, and the
   * stage then costs nothing (no volume, no sandbox run).
   */
  measure?: boolean;
  /** Results reused by input hash, per owner namespace; absent: always optimize. */
  cache?: { store: OptimizeResultCache<OptimizeDetails>; namespace: string };
}

/** Tool output beyond this is cut (a chatty Wizer init must not flood the log). */
const TOOL_LOG_BYTES = 1024 * 1024;
/** Optimized modules may grow (a Wizer snapshot holds the initialized heap); never past this. */
const MAX_OPTIMIZED_BYTES = 128 * 1024 ** 2;
/**
 * Modules up to this size have both measuring processes started while the
 * sandboxed steps run (decisions 0035, 0039); every run then gets half the
 * job's memory limit. Only one of them works on untrusted input at a time
 * (a tool, or one measurement after the steps; a waiting process is our
 * script alone), so together they stay near what one run of the build could
 * use. Larger modules go one run at a time, each with the whole limit,
 * because wasm-opt's memory grows with the module.
 */
export const OVERLAP_MAX_BYTES = 4 * 1024 ** 2;

interface Candidate {
  bytes: Uint8Array;
  info: ModuleInfo;
  wizened: boolean;
}

export async function optimizeArtifact(input: OptimizeInput): Promise<OptimizeResult> {
  if (input.kind === 'http-component') return skipComponentOptimization(input.original, input.options, input.log);
  if (!wantsWork(input)) {
    return { details: { variants: { original: { bytes: input.original.length, startup: null } }, optimize: { steps: [], served: 'original' } } };
  }
  const key = input.cache && OptimizeResultCache.key({ ...input, measure: input.measure ?? anyRequested(input.options), namespace: input.cache.namespace });
  const reused = key === undefined ? undefined : input.cache?.store.get(key);
  if (reused) {
    reused.details.optimize.reused = true;
    input.log(`\n==> optimize: ${describeOptions(input.options)}\nkiln: optimize: same module, options and tools as an earlier build: reusing its result`);
    return reused;
  }
  const overlap = overlapsMeasurement(input);
  const limits = { ...input.limits, logBytes: Math.min(input.limits.logBytes, TOOL_LOG_BYTES), memoryBytes: overlap ? Math.floor(input.limits.memoryBytes / 2) : input.limits.memoryBytes };
  // Three volumes when both measuring processes wait while the steps run: each run hands its volume to its own uid.
  const volumes = await Promise.all(Array.from({ length: overlap ? 3 : 1 }, () => createWorkDir(input.workRoot, input.limits.diskBytes, 'optimize')));
  try {
    const [main, forOriginal, forOptimized] = volumes.map((volume): ToolContext => ({ sandbox: input.sandbox, volume: volume.path, limits, onOutput: input.onOutput, signal: input.signal }));
    const result = await optimizeIn(main as ToolContext, input, forOriginal && forOptimized && { original: forOriginal, optimized: forOptimized });
    if (key !== undefined && isClean(result.details)) input.cache?.store.set(key, result);
    return result;
  } finally {
    await Promise.all(volumes.map((volume) => volume.dispose().catch(() => undefined)));
  }
}

/**
 * For a small module, both variants' measuring processes are started while
 * the sandboxed steps (Wizer, wasm-opt) run and wait there for their module
 * (decisions 0035, 0039). Nothing to overlap without a sandboxed step.
 */
function overlapsMeasurement(input: OptimizeInput): boolean {
  const measuring = input.measure ?? anyRequested(input.options);
  const sandboxedStep = (input.options.wizer && input.wizerDirectory !== null) || input.options.wasmOpt !== 'off';
  return measuring && sandboxedStep && input.original.length <= OVERLAP_MAX_BYTES;
}

/** Worth reusing: no step failed and every requested start-up was measured. */
function isClean(details: OptimizeDetails): boolean {
  const variants = [details.variants.original, details.variants.optimized].filter((variant) => variant !== undefined);
  return details.optimize.steps.every((step) => step.status !== 'failed') && variants.every((variant) => variant.startup === null || isStartupTimes(variant.startup));
}

/** The two measuring processes started with the steps, one per variant, each in its own volume. */
interface Prepared {
  original: PreparedMeasurement;
  optimized: PreparedMeasurement;
}

/**
 * `lanes`: the volumes where the two variants' measuring processes start
 * right away and wait while the steps run, so that node's start is off the
 * critical path. Both are measured after the steps, one after the other,
 * with none of the stage's tools running: the same conditions for both
 * variants (decision 0039).
 */
async function optimizeIn(context: ToolContext, input: OptimizeInput, lanes?: { original: ToolContext; optimized: ToolContext }): Promise<OptimizeResult> {
  input.log(`\n==> optimize: ${describeOptions(input.options)}`);
  const original: Candidate = { bytes: input.original, info: inspectModule(input.original, { validate: false }), wizened: false };
  const prepared: Prepared | undefined = lanes && {
    original: prepareMeasurement(lanes.original, input.kind, { name: 'measure-original.wasm' }),
    optimized: prepareMeasurement(lanes.optimized, input.kind, { name: 'measure-optimized.wasm' }),
  };
  try {
    const steps = await runSteps(context, input, original);
    const current = steps.current;
    const failures = steps.reports.filter((step) => step.status === 'failed').map((step) => `${step.name}: ${step.reason ?? 'failed'}`);
    const applied = current !== original;
    const report: OptimizeReport = { steps: steps.reports, served: applied ? 'optimized' : 'original' };
    if (!applied && failures.length > 0) report.fallbackReason = failures.join('; ');
    const details: OptimizeDetails = { variants: { original: { bytes: original.bytes.length, startup: null } }, optimize: report };
    if (applied) details.variants.optimized = { bytes: current.bytes.length, startup: null };
    if (input.measure ?? anyRequested(input.options)) await measureVariants(context, input, details, applied ? current.bytes : undefined, prepared);
    return finish(input, details, applied ? current.bytes : undefined);
  } finally {
    // A process that got no module is let go; the volumes are removed only once both runs are over.
    await Promise.all([prepared?.original.release(), prepared?.optimized.release()]);
  }
}

async function runSteps(context: ToolContext, input: OptimizeInput, original: Candidate): Promise<{ current: Candidate; reports: StepReport[] }> {
  let current = original;
  const reports: StepReport[] = [];
  for (const step of pipeline(input)) {
    const outcome = await timedStep(step.name, current, () => step.run(context, current));
    reports.push(outcome.report);
    logStep(input.log, outcome.report);
    if (outcome.next) current = outcome.next;
  }
  return { current, reports };
}

/** Drops the optimized variant when it fails to start although the original starts. */
function finish(input: OptimizeInput, details: OptimizeDetails, optimized: Uint8Array | undefined): OptimizeResult {
  const report = details.optimize;
  const before = details.variants.original.startup;
  const after = details.variants.optimized?.startup;
  if (optimized !== undefined && isStartupTimes(before) && after != null && !isStartupTimes(after)) {
    report.served = 'original';
    report.fallbackReason = `the optimized module does not start although the original does (${after.error})`;
    input.log(`kiln: optimize: ${report.fallbackReason}; serving the original`);
    return { details };
  }
  if (optimized === undefined) {
    input.log(report.fallbackReason === undefined ? 'kiln: optimize: nothing to do; serving the original' : `kiln: optimize: serving the original (${report.fallbackReason})`);
    return { details };
  }
  report.sizeRatio = round(optimized.length / details.variants.original.bytes, 4);
  if (isStartupTimes(before) && isStartupTimes(after) && after.totalMs > 0) report.startupSpeedup = round(before.totalMs / after.totalMs, 2);
  input.log(`kiln: optimize: ${formatSize(details.variants.original.bytes)} → ${formatSize(optimized.length)}${startupLine(before, after)}`);
  return { optimized, details };
}

/** One variant after the other, so neither is measured while anything else of the stage runs. */
async function measureVariants(context: ToolContext, input: OptimizeInput, details: OptimizeDetails, optimized: Uint8Array | undefined, prepared?: Prepared): Promise<void> {
  details.variants.original.startup = await (prepared ? prepared.original.measure(input.original) : measureStartup(context, input.original, input.kind, { name: 'measure-original.wasm' }));
  if (optimized !== undefined && details.variants.optimized) {
    details.variants.optimized.startup = await (prepared ? prepared.optimized.measure(optimized) : measureStartup(context, optimized, input.kind, { name: 'measure-optimized.wasm' }));
  }
}

function anyRequested(options: OptimizeOptions): boolean {
  return options.strip || options.wizer || options.wasmOpt !== 'off' || options.memoryCapPages !== null;
}

function wantsWork(input: OptimizeInput): boolean {
  return anyRequested(input.options) || input.measure === true;
}

interface Step {
  name: StepName;
  run(context: ToolContext, current: Candidate): Promise<StepResult>;
}

type StepResult = { status: 'applied'; next: Candidate } | { status: 'skipped' | 'failed'; reason: string };

function pipeline(input: OptimizeInput): Step[] {
  const { options, kind } = input;
  const steps: Step[] = [];
  if (options.strip) steps.push({ name: 'strip', run: async (_context, current) => strip(current) });
  if (options.wizer) steps.push({ name: 'wizer', run: (context, current) => wizer(context, current, kind, input.wizerDirectory) });
  const level = options.wasmOpt;
  if (level !== 'off') {
    steps.push({ name: 'wasm-opt', run: (context, current) => wasmOpt(context, current, kind, { level, keepDebugInfo: !options.strip, bulkMemory: current.wizened }) });
  }
  const cap = options.memoryCapPages;
  if (cap !== null) steps.push({ name: 'memory-cap', run: async (_context, current) => memoryCap(current, kind, cap) });
  return steps;
}

function strip(current: Candidate): StepResult {
  const { bytes, removed } = stripCustomSections(current.bytes);
  if (removed.length === 0) return { status: 'skipped', reason: 'no debug or metadata sections' };
  return { status: 'applied', next: { ...current, bytes, info: inspectModule(bytes, { validate: false }) } };
}

async function wizer(context: ToolContext, current: Candidate, kind: AppKind, configured: string | null | undefined): Promise<StepResult> {
  if (!exportsWizerInit(current.info)) return { status: 'skipped', reason: `the module exports no ${WIZER_INIT_EXPORT} function` };
  const directory = configured === undefined ? findWizerDirectory() : configured;
  if (directory == null) return { status: 'skipped', reason: 'Wizer is not installed on this worker' };
  await putFile(context.volume, 'wizer-in.wasm', current.bytes);
  const run = await runWizer(context, directory, 'wizer-in.wasm', 'wizer-out.wasm');
  const next = await collect(context, run, 'wizer-out.wasm', kind);
  return next.ok ? { status: 'applied', next: { ...next.candidate, wizened: true } } : { status: 'failed', reason: next.reason };
}

async function wasmOpt(context: ToolContext, current: Candidate, kind: AppKind, run: Parameters<typeof runWasmOpt>[3]): Promise<StepResult> {
  await putFile(context.volume, 'wasm-opt-in.wasm', current.bytes);
  const outcome = await runWasmOpt(context, 'wasm-opt-in.wasm', 'wasm-opt-out.wasm', run);
  const next = await collect(context, outcome, 'wasm-opt-out.wasm', kind);
  return next.ok ? { status: 'applied', next: { ...next.candidate, wizened: current.wizened } } : { status: 'failed', reason: next.reason };
}

function memoryCap(current: Candidate, kind: AppKind, pages: number): StepResult {
  let bytes: Uint8Array;
  try {
    bytes = setMemoryMaximum(current.bytes, pages);
  } catch (error) {
    return { status: 'failed', reason: errorMessage(error) };
  }
  if (Buffer.compare(bytes, current.bytes) === 0) return { status: 'skipped', reason: `the memory maximum is already at most ${pages} pages` };
  const verdict = judge(bytes, kind);
  return verdict.ok ? { status: 'applied', next: { ...current, bytes, info: verdict.info } } : { status: 'failed', reason: verdict.reason };
}

/** Reads a tool's output back and checks it is still a valid module of the kind. */
async function collect(context: ToolContext, run: ToolOutcome, file: string, kind: AppKind): Promise<{ ok: true; candidate: Candidate } | { ok: false; reason: string }> {
  if (!run.ok) return { ok: false, reason: run.reason };
  const bytes = await takeFile(context.volume, file, MAX_OPTIMIZED_BYTES);
  if (bytes === undefined) return { ok: false, reason: `no usable output (missing, not a regular file, or larger than ${formatSize(MAX_OPTIMIZED_BYTES)})` };
  const verdict = judge(bytes, kind);
  return verdict.ok ? { ok: true, candidate: { bytes, info: verdict.info, wizened: false } } : { ok: false, reason: verdict.reason };
}

/** The evaluator's rules, applied early so a bad step is dropped here rather than the whole variant later. */
function judge(bytes: Uint8Array, kind: AppKind): { ok: true; info: ModuleInfo } | { ok: false; reason: string } {
  let info: ModuleInfo;
  try {
    info = inspectModule(bytes);
  } catch (error) {
    return { ok: false, reason: `the output is not a valid module: ${errorMessage(error)}` };
  }
  const check = checkKind(info, kind);
  return check.ok ? { ok: true, info } : { ok: false, reason: `the output no longer fits the ${kind} kind: ${check.problems.join(' ')}` };
}

async function timedStep(name: StepName, current: Candidate, work: () => Promise<StepResult>): Promise<{ report: StepReport; next?: Candidate }> {
  const started = Date.now();
  const result = await work().catch((error: unknown): StepResult => {
    if (error instanceof OptimizeCancelled) throw error;
    return { status: 'failed', reason: `platform error: ${errorMessage(error)}` };
  });
  const durationMs = Date.now() - started;
  if (result.status !== 'applied') return { report: { name, status: result.status, reason: result.reason, durationMs } };
  return { report: { name, status: 'applied', durationMs, bytesBefore: current.bytes.length, bytesAfter: result.next.bytes.length }, next: result.next };
}

function logStep(log: (line: string) => void, step: StepReport): void {
  if (step.status === 'applied') log(`kiln: optimize: ${step.name} applied (${formatSize(step.bytesBefore ?? 0)} → ${formatSize(step.bytesAfter ?? 0)}, ${step.durationMs} ms)`);
  else if (step.status === 'skipped') log(`kiln: optimize: ${step.name} skipped: ${step.reason ?? ''}`);
  else log(`kiln: optimize: ${step.name} failed, continuing without it: ${step.reason ?? ''}`);
}

function describeOptions(options: OptimizeOptions): string {
  return [
    `strip ${options.strip ? 'on' : 'off'}`,
    `wizer ${options.wizer ? 'on' : 'off'}`,
    `wasm-opt ${options.wasmOpt === 'off' ? 'off' : `-${options.wasmOpt}`}`,
    `memory cap ${options.memoryCapPages === null ? 'none' : `${options.memoryCapPages} pages`}`,
  ].join(', ');
}

function startupLine(before: StartupMeasurement | null, after: StartupMeasurement | null | undefined): string {
  if (!isStartupTimes(before) || !isStartupTimes(after)) return '';
  return `; start-up ${before.totalMs.toFixed(1)} ms → ${after.totalMs.toFixed(1)} ms`;
}

function formatSize(bytes: number): string {
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} bytes`;
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));

export type SafeOptimizeResult = (OptimizeResult & { cancelled: false }) | { cancelled: true };

/**
 * optimizeArtifact for the worker: cancellation is reported as such, and
 * any other failure of the stage itself (not of a step) becomes a fallback
 * to the original with the reason in the details — never a failed build.
 */
export async function optimizeSafely(input: OptimizeInput): Promise<SafeOptimizeResult> {
  try {
    return { ...(await optimizeArtifact(input)), cancelled: false };
  } catch (error) {
    if (error instanceof OptimizeCancelled || input.signal?.aborted === true) return { cancelled: true };
    const fallbackReason = `platform error: ${errorMessage(error)}`;
    input.log(`kiln: optimize: ${fallbackReason}; serving the original`);
    return {
      cancelled: false,
      details: { variants: { original: { bytes: input.original.length, startup: null } }, optimize: { steps: [], served: 'original', fallbackReason } },
    };
  }
}
