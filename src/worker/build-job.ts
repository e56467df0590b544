/**
 * One build, minus HTTP: detect → prepare → run each step in the sandbox →
 * copy the module out. The worker loop downloads and extracts the source,
 * calls runBuild, then uploads the artifact and reports the outcome; keeping
 * this free of HTTP lets tests and benchmarks drive it directly.
 *
 * This file is the order of the stages; each concern has its own file:
 * build-stop.ts (outcomes and blame), build-dependencies.ts (fetch phase and
 * dependency cache), build-steps.ts (the sandboxed steps), build-output.ts
 * (copying the module out safely), build-diagnostics.ts (one-line reasons).
 *
 * Outcomes separate blame (BRIEF §2.1): `failed` is the user's code (compile
 * error, limit hit, missing output), `crashed` is Kiln or the machine, and
 * `cancelled` is somebody pressing cancel.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheReport } from '../build-cache/session.ts';
import type { DependencyCacheStore } from '../build-cache/store.ts';
import { BASE_DIRECTORIES } from '../build-kit/paths.ts';
import type { FetchConfig } from '../fetch/config.ts';
import type { FetchReport } from '../fetch/fetch-phase.ts';
import { UNDETECTED_REASON, createLanguages, detectLanguage, type LanguageRegistry } from '../languages/index.ts';
import type { AppKind, BuildContext, Language, LanguageId } from '../languages/language.ts';
import { APP_KINDS } from '../languages/language.ts';
import type { Sandbox, SandboxLimits } from '../sandbox/sandbox.ts';
import { DEFAULT_LIMITS } from '../sandbox/sandbox.ts';
import { limitReason } from './build-diagnostics.ts';
import { fetchDependencies, openCache, saveCacheAfterMiss } from './build-dependencies.ts';
import { collectOutput } from './build-output.ts';
import { runSteps } from './build-steps.ts';
import { BuildStop, classify, stage, throwIfCancelled, type BuildOutcomeState, type BuildStage } from './build-stop.ts';

export type { BuildOutcomeState, BuildStage };
export { DEFAULT_MAX_ARTIFACT_BYTES } from './build-output.ts';

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
  /** Registries and bounds of the dependency fetch phase (default: the embedded defaults; a worker passes its config's `fetch`). */
  fetch?: FetchConfig;
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
    const bytes = await stage(stages, 'collect', () => collectOutput(language, context, options));
    if (cache) await saveCacheAfterMiss(cache, language, context, limits, options, stages);
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
