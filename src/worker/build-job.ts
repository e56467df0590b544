/**
 * One build, minus HTTP: detect → prepare → run each step in the sandbox →
 * copy the module out. The worker loop downloads and extracts the source,
 * calls runBuild, then uploads the artifact and reports the outcome; keeping
 * this free of HTTP lets tests and benchmarks drive it directly.
 *
 * Outcomes separate blame (BRIEF §2.1): `failed` is the user's code (compile
 * error, limit hit, missing output), `crashed` is Kiln or the machine, and
 * `cancelled` is somebody pressing cancel.
 */
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { UserError, errorMessage } from '../errors.ts';
import { loadFetchConfig, type FetchConfig } from '../fetch/config.ts';
import { FetchCancelled, runFetchPhase, supportsDependencyFetch, type FetchReport } from '../fetch/fetch-phase.ts';
import { UNDETECTED_REASON, createLanguages, detectLanguage, type LanguageRegistry } from '../languages/index.ts';
import type { AppKind, BuildContext, BuildStep, Language, LanguageId } from '../languages/language.ts';
import { APP_KINDS } from '../languages/language.ts';
import { BASE_DIRECTORIES, BASE_ENV } from '../languages/paths.ts';
import { openDependencyCache, saveDependencyCache, type CacheReport, type CacheRunContext, type CacheSession } from '../optimize/cache/build-cache.ts';
import { supportsDependencyCache } from '../optimize/cache/plan.ts';
import type { DependencyCacheStore } from '../optimize/cache/store.ts';
import type { LimitName, Sandbox, SandboxLimits, SandboxResult } from '../sandbox/sandbox.ts';
import { DEFAULT_LIMITS } from '../sandbox/sandbox.ts';
import type { BuildOutcome as ProtocolOutcome, StageTiming } from './protocol.ts';

// Declared once, in the worker protocol; the old names stay for this module's readers.
export type BuildOutcomeState = ProtocolOutcome;
export type BuildStage = StageTiming;

export interface BuildOutcome {
  outcome: BuildOutcomeState;
  /** One line, for people: why it did not succeed. */
  reason?: string;
  language?: LanguageId;
  kind?: AppKind;
  /** The caller's artifactPath, set only when the module was copied there. */
  artifactPath?: string;
  artifactBytes?: number;
  stages: BuildStage[];
  /** Set when the language supports the dependency cache and the build used one. */
  cache?: CacheReport;
  /** Set when the build fetched (or restored) dependencies before building. */
  fetch?: FetchReport;
  /** Facts the language recorded (e.g. `toolchain`: which compiler and target), for the build record. */
  facts?: Record<string, unknown>;
}

export interface RunBuildOptions {
  /** A fresh job directory holding the extracted upload at `${jobDir}/src`. */
  jobDir: string;
  sandbox: Sandbox;
  /** As declared by the uploader; detected from the source when absent. */
  language?: LanguageId | null;
  kind?: AppKind | null;
  /** Applied per build: the wall limit covers all steps together. */
  limits?: Partial<SandboxLimits>;
  /** Receives the build log: step headers, Kiln's notes and the tools' output. */
  onLog: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /** Host path the module is copied to; its directory must exist. */
  artifactPath: string;
  /** Operator-configured toolchains (default: Debian's, Kiln's own asc). */
  languages?: LanguageRegistry;
  maxArtifactBytes?: number;
  /**
   * Reuse compiled dependencies across builds in the same namespace (one per
   * owner, from the job). Only languages that support it use it.
   */
  dependencyCache?: { store: DependencyCacheStore; namespace: string };
  /** Registries and bounds of the dependency fetch phase (default: loadFetchConfig() of the environment). */
  fetch?: FetchConfig;
}

export const DEFAULT_MAX_ARTIFACT_BYTES = 64 * 1024 ** 2;
/** Raised inside runBuild to end it with a given outcome. */
class BuildStop extends Error {
  constructor(
    readonly outcome: Exclude<BuildOutcomeState, 'succeeded'>,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export async function runBuild(options: RunBuildOptions): Promise<BuildOutcome> {
  const limits: SandboxLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const languages = options.languages ?? defaultLanguages();
  const log = lineLogger(options.onLog);
  const stages: BuildStage[] = [];
  const result: BuildOutcome = { outcome: 'crashed', stages };
  try {
    const { language, kind } = await stage(stages, 'detect', () => resolveLanguage(options, languages, log));
    Object.assign(result, { language: language.id, kind });
    const record = (facts: Record<string, unknown>): void => void (result.facts = { ...result.facts, ...facts });
    const context: BuildContext = { jobDir: options.jobDir, sourceDir: join(options.jobDir, 'src'), kind, log, record };
    await stage(stages, 'prepare', () => prepare(language, context, options.signal));
    const fetchStarted = Date.now();
    const fetched = await fetchDependencies(language, context, limits, options, stages);
    if (fetched) result.fetch = fetched;
    // The wall limit covers the whole build: the fetch's time is taken from the steps'.
    const stepLimits = { ...limits, wallMs: limits.wallMs - (Date.now() - fetchStarted) };
    if (stepLimits.wallMs <= 0) throw new BuildStop('failed', limitReason('wall', limits));
    const cache = await openCache(language, context, stepLimits, options, stages);
    if (cache) result.cache = cache.report;
    await runSteps(language, context, stepLimits, options, stages);
    const bytes = await stage(stages, 'collect', () => collect(language, context, options));
    // Only after a miss: entries are written once, by a build that started from nothing.
    if (cache?.plan && !cache.report.hit) await stage(stages, 'cache save', () => saveDependencyCache(cache, cacheRunContext(language, context, limits, options)));
    return { ...result, outcome: 'succeeded', artifactPath: options.artifactPath, artifactBytes: bytes };
  } catch (error) {
    const stop = classify(error, options.signal);
    log(`kiln: build ${stop.outcome}: ${stop.reason}`);
    return { ...result, outcome: stop.outcome, reason: stop.reason };
  }
}

let sharedLanguages: LanguageRegistry | undefined;
function defaultLanguages(): LanguageRegistry {
  return (sharedLanguages ??= createLanguages());
}

/** Turns whatever ended the build into an outcome; unknown errors are ours (crashed). */
function classify(error: unknown, signal: AbortSignal | undefined): BuildStop {
  if (error instanceof BuildStop) return error;
  if (signal?.aborted === true) return new BuildStop('cancelled', 'the build was cancelled');
  if (error instanceof UserError) return new BuildStop('failed', error.message);
  return new BuildStop('crashed', `platform error: ${errorMessage(error)}`);
}

async function stage<T>(stages: BuildStage[], name: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await work();
  } finally {
    stages.push({ name, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started });
  }
}

function lineLogger(onLog: (chunk: Buffer) => void): (line: string) => void {
  return (line) => onLog(Buffer.from(`${line}\n`));
}

async function resolveLanguage(
  options: RunBuildOptions,
  languages: LanguageRegistry,
  log: (line: string) => void,
): Promise<{ language: Language; kind: AppKind }> {
  const sourceDir = join(options.jobDir, 'src');
  const declared = options.language ?? undefined;
  // Declared values come from an API field: check them even though the types say they are fine.
  if (declared !== undefined && !Object.hasOwn(languages, declared)) throw new BuildStop('failed', `unsupported language ${JSON.stringify(declared)}`);
  if (options.kind != null && !APP_KINDS.includes(options.kind)) throw new BuildStop('failed', `unsupported kind ${JSON.stringify(options.kind)}`);
  const detection = declared === undefined ? await detectLanguage(sourceDir, languages) : await languages[declared].detect(sourceDir);
  const id = declared ?? detection?.language;
  if (id === undefined) throw new BuildStop('failed', UNDETECTED_REASON);
  const language = languages[id];
  // Without any hint a function is the safer guess: it needs no host ABI.
  const kind = options.kind ?? detection?.kind ?? 'wasi-command';
  if (options.kind != null && detection?.kind !== undefined && detection.kind !== options.kind) {
    log(`kiln: the project looks like a ${detection.kind}, building it as the declared ${options.kind}`);
  }
  const kindSource = options.kind != null ? 'declared' : detection?.kind !== undefined ? 'detected' : 'default';
  log(`kiln: language ${id} (${declared === undefined ? 'detected' : 'declared'}), kind ${kind} (${kindSource})`);
  return { language, kind };
}

async function prepare(language: Language, context: BuildContext, signal: AbortSignal | undefined): Promise<void> {
  throwIfCancelled(signal);
  for (const directory of BASE_DIRECTORIES) await mkdir(join(context.jobDir, directory), { recursive: true });
  await language.prepare(context);
}

/** Runs the fetch phase when the language declares dependencies to fetch (src/fetch). */
async function fetchDependencies(language: Language, context: BuildContext, limits: SandboxLimits, options: RunBuildOptions, stages: BuildStage[]): Promise<FetchReport | undefined> {
  if (!supportsDependencyFetch(language)) return undefined;
  throwIfCancelled(options.signal);
  const config = options.fetch ?? defaultFetchConfig();
  const plan = await language.fetchPlan(context, config);
  if (plan === undefined) return undefined;
  try {
    return await stage(stages, 'fetch', () =>
      runFetchPhase(plan, { sandbox: options.sandbox, jobDir: context.jobDir, config, limits, log: context.log, onOutput: options.onLog, signal: options.signal, cache: options.dependencyCache }),
    );
  } catch (error) {
    if (error instanceof FetchCancelled) throw new BuildStop('cancelled', 'the build was cancelled');
    throw error;
  }
}

let sharedFetchConfig: FetchConfig | undefined;
function defaultFetchConfig(): FetchConfig {
  return (sharedFetchConfig ??= loadFetchConfig());
}

/** Restores the dependency cache when the language supports it and the job has a namespace. */
async function openCache(language: Language, context: BuildContext, limits: SandboxLimits, options: RunBuildOptions, stages: BuildStage[]): Promise<CacheSession | undefined> {
  const cache = options.dependencyCache;
  if (cache === undefined || !supportsDependencyCache(language)) return undefined;
  throwIfCancelled(options.signal);
  const session = await stage(stages, 'cache restore', () => openDependencyCache(language, context, cache.store, cache.namespace, cacheRunContext(language, context, limits, options)));
  throwIfCancelled(options.signal);
  return session;
}

function cacheRunContext(language: Language, context: BuildContext, limits: SandboxLimits, options: RunBuildOptions): CacheRunContext {
  return { sandbox: options.sandbox, jobDir: context.jobDir, mounts: language.mounts(context), env: { ...BASE_ENV }, limits, log: context.log, onOutput: options.onLog, signal: options.signal };
}

async function runSteps(
  language: Language,
  context: BuildContext,
  limits: SandboxLimits,
  options: RunBuildOptions,
  stages: BuildStage[],
): Promise<void> {
  const steps = await language.steps(context);
  const mounts = language.mounts(context);
  const deadline = Date.now() + limits.wallMs;
  for (const [index, step] of steps.entries()) {
    throwIfCancelled(options.signal);
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) throw new BuildStop('failed', limitReason('wall', limits));
    options.onLog(Buffer.from(stepHeader(step, index, steps.length)));
    const errors = new ErrorLineFinder();
    const run = await stage(stages, step.name, () =>
      options.sandbox.run({
        command: step.command,
        env: step.env,
        cwd: step.cwd,
        workDir: context.jobDir,
        mounts,
        // The wall limit is for the whole build, so later steps get what is left.
        limits: { ...limits, wallMs: remainingMs },
        onOutput: (chunk) => {
          errors.push(chunk);
          options.onLog(chunk);
        },
        signal: options.signal,
      }),
    );
    for (const note of run.notes) context.log(`kiln: ${note}`);
    checkStepResult(step, run, limits, errors.finish());
  }
}

function stepHeader(step: BuildStep, index: number, total: number): string {
  return `\n==> [${index + 1}/${total}] ${step.name}\n$ ${step.command.map(quoteForLog).join(' ')}\n`;
}

function quoteForLog(argument: string): string {
  return /^[\w@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replace(/'/g, `'\\''`)}'`;
}

function checkStepResult(step: BuildStep, run: SandboxResult, limits: SandboxLimits, errorLine: string | undefined): void {
  if (run.cancelled) throw new BuildStop('cancelled', 'the build was cancelled');
  if (run.limitHit !== undefined) throw new BuildStop('failed', limitReason(run.limitHit, limits));
  if (run.exitCode === 0) return;
  if (run.exitCode === null) {
    throw new BuildStop('failed', `${step.name} was killed by ${run.signal ?? 'a signal'}`);
  }
  throw new BuildStop('failed', errorLine ?? `${step.name} failed with exit code ${run.exitCode}`);
}

function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new BuildStop('cancelled', 'the build was cancelled');
}

export function limitReason(limit: LimitName, limits: SandboxLimits): string {
  switch (limit) {
    case 'memory':
      return `memory limit of ${formatBytes(limits.memoryBytes)} exceeded`;
    case 'wall':
      return `time limit of ${formatDuration(limits.wallMs)} exceeded`;
    case 'pids':
      return `process limit of ${limits.pids} exceeded`;
    case 'disk':
      return `disk limit of ${formatBytes(limits.diskBytes)} exceeded`;
    case 'log':
      return `log limit of ${formatBytes(limits.logBytes)} exceeded`;
  }
}

export function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))} ${unit}`;
  }
  return `${bytes} bytes`;
}

export function formatDuration(ms: number): string {
  if (ms >= 60_000) return `${Number((ms / 60_000).toFixed(1))} min`;
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * Finds the first line that looks like a compiler error in streamed output:
 * rustc/cargo (`error[E0308]: …`, followed by ` --> file:line:col`), clang
 * and wasm-ld (`file.c:3:5: error: …`, `wasm-ld: error: …`), asc
 * (`ERROR TS2304: …`). Memory stays bounded whatever the output size.
 */
export class ErrorLineFinder {
  private partial = '';
  private found: string | undefined;
  private awaitingLocation = false;
  private static readonly MAX_LINE = 300;

  push(chunk: Buffer): void {
    if (this.found !== undefined && !this.awaitingLocation) return;
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = (lines.pop() ?? '').slice(0, 4096);
    for (const line of lines) {
      this.consider(line);
      if (this.found !== undefined && !this.awaitingLocation) return;
    }
  }

  finish(): string | undefined {
    if (this.partial !== '') this.consider(this.partial);
    this.partial = '';
    return this.found;
  }

  private consider(rawLine: string): void {
    // eslint-disable-next-line no-control-regex -- ANSI colour codes are control characters by definition
    const line = rawLine.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '').trimEnd();
    if (this.awaitingLocation) {
      this.awaitingLocation = false;
      const location = /^\s*--> (.+)$/.exec(line);
      if (location?.[1] !== undefined) this.found = truncate(`${this.found ?? ''} (${location[1]})`, ErrorLineFinder.MAX_LINE);
      return;
    }
    if (this.found !== undefined) return;
    if (/^error(\[E\d+\])?: /.test(line)) {
      this.found = truncate(line, ErrorLineFinder.MAX_LINE);
      this.awaitingLocation = true;
    } else if (/\b(fatal )?error: /.test(line) || /^ERROR (TS|AS)\d+: /.test(line)) {
      this.found = truncate(line.trim(), ErrorLineFinder.MAX_LINE);
    }
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

async function collect(language: Language, context: BuildContext, options: RunBuildOptions): Promise<number> {
  throwIfCancelled(options.signal);
  const relativePath = await language.locateOutput(context);
  const bytes = await copyOutputSafely(context.jobDir, relativePath, options.artifactPath, options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES);
  context.log(`kiln: module ${relativePath} (${formatBytes(bytes)}) collected`);
  return bytes;
}

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

/**
 * Copies `root/relativePath` to `destination` without ever leaving root.
 * Runs only after every sandboxed process is dead, so nothing can swap a
 * path component between our checks and the open: every component is
 * lstat-ed (no symlink anywhere), the file is opened with O_NOFOLLOW and
 * must be a regular file no larger than maxBytes, and it must start with
 * the Wasm magic. Problems with what the build left are the user's
 * (`failed`); I/O errors are ours.
 */
export async function copyOutputSafely(root: string, relativePath: string, destination: string, maxBytes: number): Promise<number> {
  const parts = safeParts(relativePath);
  let current = root;
  for (const [index, part] of parts.entries()) {
    current = join(current, part);
    const stats = await lstat(current).catch(() => undefined);
    const isLast = index === parts.length - 1;
    if (stats === undefined) throw new BuildStop('failed', `the build produced no ${relativePath}`);
    if (stats.isSymbolicLink()) throw new BuildStop('failed', `${relativePath} is or passes through a symlink; refusing to copy it`);
    if (!isLast && !stats.isDirectory()) throw new BuildStop('failed', `${relativePath}: ${part} is not a directory`);
    if (isLast && !stats.isFile()) throw new BuildStop('failed', `${relativePath} is not a regular file`);
  }
  return copyRegularFile(current, relativePath, destination, maxBytes);
}

function safeParts(relativePath: string): string[] {
  const parts = relativePath.split('/');
  const unsafe =
    relativePath === '' ||
    isAbsolute(relativePath) ||
    relativePath.includes('\0') ||
    parts.some((part) => part === '' || part === '.' || part === '..');
  // The path derives from the user's project files, so a bad one is theirs to fix.
  if (unsafe) throw new BuildStop('failed', `refusing the output path ${JSON.stringify(relativePath)}: it must stay inside the build directory`);
  return parts;
}

async function copyRegularFile(source: string, shownAs: string, destination: string, maxBytes: number): Promise<number> {
  const input = await open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const stats = await input.stat();
    if (!stats.isFile()) throw new BuildStop('failed', `${shownAs} is not a regular file`);
    if (stats.size > maxBytes) throw new BuildStop('failed', `${shownAs} is larger than ${formatBytes(maxBytes)}`);
    // Read at most one byte past the cap: a file growing after fstat is caught too.
    const buffer = Buffer.alloc(Math.min(stats.size, maxBytes) + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await input.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw new BuildStop('failed', `${shownAs} is larger than ${formatBytes(maxBytes)}`);
    const content = buffer.subarray(0, length);
    if (!content.subarray(0, 4).equals(WASM_MAGIC)) throw new BuildStop('failed', `${shownAs} is not a WebAssembly module`);
    await writeArtifact(destination, content);
    return length;
  } finally {
    await input.close();
  }
}

/**
 * Writes through a fresh temporary name (O_EXCL: never follows or reuses an
 * entry) and renames it into place, so whatever sits at `destination` — a
 * symlink or a FIFO a build planted, if a caller put it inside the job dir —
 * is replaced, never followed or opened.
 */
async function writeArtifact(destination: string, content: Buffer): Promise<void> {
  const temporary = `${destination}.${randomBytes(6).toString('hex')}.partial`;
  const output = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    await output.writeFile(content);
  } finally {
    await output.close();
  }
  try {
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
