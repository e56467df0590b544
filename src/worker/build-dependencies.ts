/**
 * The two phases around a language's steps that deal with dependencies:
 * the fetch phase (src/fetch) before them, when the language has
 * dependencies to fetch, and the per-owner dependency cache
 * (src/build-cache), restored before them and saved after a successful miss.
 */
import { openDependencyCache, saveDependencyCache, type CacheRunContext, type CacheSession } from '../build-cache/session.ts';
import type { DependencyCacheStore } from '../build-cache/store.ts';
import { BASE_ENV } from '../build-kit/paths.ts';
import { loadFetchConfig, type FetchConfig } from '../fetch/config.ts';
import { FetchCancelled, runFetchPhase, type FetchReport } from '../fetch/fetch-phase.ts';
import { supportsDependencyCache, supportsDependencyFetch, type BuildContext, type Language } from '../languages/language.ts';
import type { Sandbox, SandboxLimits } from '../sandbox/sandbox.ts';
import { BuildStop, stage, throwIfCancelled, type BuildStage } from './build-stop.ts';

export interface DependencyOptions {
  sandbox: Sandbox;
  onLog: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /** One namespace per owner, from the job. */
  dependencyCache?: { store: DependencyCacheStore; namespace: string };
  /** Registries and bounds of the fetch phase (default: loadFetchConfig() of the environment). */
  fetch?: FetchConfig;
}

/** Runs the fetch phase when the language declares dependencies to fetch (src/fetch). */
export async function fetchDependencies(language: Language, context: BuildContext, limits: SandboxLimits, options: DependencyOptions, stages: BuildStage[]): Promise<FetchReport | undefined> {
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
export async function openCache(language: Language, context: BuildContext, limits: SandboxLimits, options: DependencyOptions, stages: BuildStage[]): Promise<CacheSession | undefined> {
  const cache = options.dependencyCache;
  if (cache === undefined || !supportsDependencyCache(language)) return undefined;
  throwIfCancelled(options.signal);
  const planCache = (): ReturnType<typeof language.cachePlan> => language.cachePlan(context);
  const session = await stage(stages, 'cache restore', () => openDependencyCache(planCache, cache.store, cache.namespace, cacheRunContext(language, context, limits, options)));
  throwIfCancelled(options.signal);
  return session;
}

/** Only after a miss: entries are written once, by a build that started from nothing. */
export async function saveCacheAfterMiss(session: CacheSession, language: Language, context: BuildContext, limits: SandboxLimits, options: DependencyOptions, stages: BuildStage[]): Promise<void> {
  if (session.plan === undefined || session.report.hit) return;
  await stage(stages, 'cache save', () => saveDependencyCache(session, cacheRunContext(language, context, limits, options)));
}

function cacheRunContext(language: Language, context: BuildContext, limits: SandboxLimits, options: DependencyOptions): CacheRunContext {
  return { sandbox: options.sandbox, jobDir: context.jobDir, mounts: language.mounts(context), env: { ...BASE_ENV }, limits, log: context.log, onOutput: options.onLog, signal: options.signal };
}
