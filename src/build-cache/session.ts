/**
 * The dependency cache around one build (called by src/worker/build-job.ts):
 * before the language's steps, look the key up and restore the entry in the
 * sandbox; after a successful build that missed, pack the output in the
 * sandbox and keep it. Nothing here can fail a build: any problem is a line
 * in the log and a build from scratch (a miss).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';
import type { Mount, Sandbox, SandboxLimits } from '../sandbox/sandbox.ts';
import { RESTORE_FAILED_EXIT, SANDBOX_CACHE_DIR, SAVED_ENTRY, restoreScript, saveScript, type CachePlan, type CachePlanAnswer } from './plan.ts';
import type { DependencyCacheStore } from './store.ts';
import { runCacheStep } from './cache-step.ts';
import { NO_TREE } from './trees.ts';
import { formatBytes } from '../format/bytes.ts';

/** What `build.details.cache` records. */
export interface CacheReport {
  hit: boolean;
  /** The entry's key (a digest of toolchain, lock file, profile, target…), when the build had one. */
  key?: string;
  /** Whether this build stored a new entry (only after a miss). */
  saved?: boolean;
  /** Why the cache was not used or not saved. */
  reason?: string;
  restoreMs?: number;
  /** The hit was a copy of the worker's unpacked tree (trees.ts), not an unpack of the tarball. */
  unpacked?: boolean;
  saveMs?: number;
  /** Size of the restored or saved entry. */
  bytes?: number;
}

export interface CacheRunContext {
  sandbox: Sandbox;
  /** Host path of the job's volume (mounted at /build). */
  jobDir: string;
  /** The language's own mounts (the steps see the same paths). */
  mounts: Mount[];
  env: Record<string, string>;
  limits: SandboxLimits;
  log: (line: string) => void;
  onOutput: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export interface CacheSession {
  report: CacheReport;
  plan?: CachePlan;
  store: DependencyCacheStore;
  namespace: string;
}

/** `planCache` is the language's cachePlan for this build; its errors are ours and only mean a miss. */
export async function openDependencyCache(
  planCache: () => Promise<CachePlanAnswer>,
  store: DependencyCacheStore,
  namespace: string,
  run: CacheRunContext,
): Promise<CacheSession> {
  const session: CacheSession = { report: { hit: false }, store, namespace };
  let plan: CachePlanAnswer;
  try {
    plan = await planCache();
  } catch (error) {
    plan = { unavailable: `platform error: ${errorMessage(error)}` };
  }
  if ('unavailable' in plan) {
    session.report.reason = plan.unavailable;
    run.log(`kiln: dependency cache not used: ${plan.unavailable}`);
    return session;
  }
  session.plan = plan;
  session.report.key = plan.key;
  run.log(`kiln: dependency cache key ${plan.key} (${plan.describe})`);
  if (await handOverTree(session, plan, run)) return session;
  const checkout = await store.checkout(namespace, plan.key).catch((error: unknown) => {
    run.log(`kiln: dependency cache lookup failed: ${errorMessage(error)}`);
    return undefined;
  });
  if (checkout === undefined) {
    run.log('kiln: dependency cache miss: building dependencies from scratch');
    return session;
  }
  try {
    await restore(session, plan, run, checkout.directory, checkout.bytes);
  } finally {
    await checkout.release().catch(() => undefined);
  }
  return session;
}

async function restore(session: CacheSession, plan: CachePlan, run: CacheRunContext, directory: string, bytes: number): Promise<void> {
  const started = Date.now();
  run.onOutput(Buffer.from(`\n==> restore dependency cache\n`));
  const outcome = await runScript(run, restoreScript(plan), [...run.mounts, { host: directory, sandbox: SANDBOX_CACHE_DIR }]);
  session.report.restoreMs = Date.now() - started;
  if (outcome === 'ok') {
    session.report.hit = true;
    session.report.bytes = bytes;
    run.log(`kiln: dependency cache hit: restored ${formatBytes(bytes)} in ${session.report.restoreMs} ms`);
    // The volume holds the entry's content and no sandbox process: the moment to keep it unpacked.
    await keepTree(session, plan, run);
    return;
  }
  // Whatever a half-finished restore left must not meet cargo: remove it (all sandbox processes are gone).
  for (const name of plan.directories) await rm(join(run.jobDir, name), { recursive: true, force: true });
  session.report.reason = `the entry could not be restored (${outcome})`;
  run.log(`kiln: dependency cache not restored (${outcome}); building from scratch`);
}

/** After a successful build that missed: pack the output and keep it. */
export async function saveDependencyCache(session: CacheSession, run: CacheRunContext): Promise<void> {
  const { plan, report } = session;
  if (plan === undefined || report.hit) return;
  const started = Date.now();
  run.onOutput(Buffer.from(`\n==> save dependency cache\n`));
  const outcome = await runScript(run, saveScript(plan), run.mounts);
  if (outcome !== 'ok') {
    report.saved = false;
    report.reason = `not saved: ${outcome}`;
    run.log(`kiln: dependency cache not saved (${outcome})`);
    return;
  }
  const saved = await session.store.save(session.namespace, plan.key, run.jobDir, SAVED_ENTRY).catch((error: unknown) => ({ saved: false as const, reason: `platform error: ${errorMessage(error)}` }));
  await rm(join(run.jobDir, SAVED_ENTRY), { force: true }).catch(() => undefined);
  report.saveMs = Date.now() - started;
  report.saved = saved.saved;
  if (saved.saved) {
    report.bytes = saved.bytes;
    run.log(`kiln: dependency cache saved (${formatBytes(saved.bytes)}, ${report.saveMs} ms)`);
    // The tarball was just packed from these directories: they are the entry, unpacked.
    await keepTree(session, plan, run);
  } else {
    report.reason = `not saved: ${saved.reason}`;
    run.log(`kiln: dependency cache not saved (${saved.reason})`);
  }
}

/**
 * A hit on the worker's unpacked copy of the entry: a host copy into the
 * volume (trees.ts). False when there is none or it is unusable; the
 * tarball is tried next.
 */
async function handOverTree(session: CacheSession, plan: CachePlan, run: CacheRunContext): Promise<boolean> {
  const trees = session.store.trees;
  if (trees === undefined) return false;
  const started = Date.now();
  const outcome = await trees
    .handOver(session.namespace, plan.key, run.jobDir, plan.directories, { keyedSourceDirectories: plan.keyedSourceDirectories })
    .catch((error: unknown) => ({ ok: false as const, reason: `platform error: ${errorMessage(error)}` }));
  if (!outcome.ok) {
    if (outcome.reason !== NO_TREE) run.log(`kiln: dependency cache: ${outcome.reason}; unpacking the entry instead`);
    return false;
  }
  await session.store.markUsed(session.namespace, plan.key).catch(() => undefined);
  Object.assign(session.report, { hit: true, unpacked: true, bytes: outcome.bytes, restoreMs: Date.now() - started });
  run.log(`kiln: dependency cache hit: copied the unpacked entry (${formatBytes(outcome.bytes)}) in ${session.report.restoreMs} ms`);
  return true;
}

/** Keeping the unpacked copy is an optimization for the next build: a failure is a log line. */
async function keepTree(session: CacheSession, plan: CachePlan, run: CacheRunContext): Promise<void> {
  const trees = session.store.trees;
  if (trees === undefined) return;
  await session.store.prepare();
  const kept = await trees.keep(session.namespace, plan.key, run.jobDir, plan.directories).catch((error: unknown) => ({ ok: false as const, reason: `platform error: ${errorMessage(error)}` }));
  if (!kept.ok) run.log(`kiln: dependency cache entry not kept unpacked (${kept.reason})`);
}

/** The step's outcome as a word for the log: `ok`, or why not. */
async function runScript(run: CacheRunContext, script: string, mounts: Mount[]): Promise<string> {
  const outcome = await runCacheStep(run, script, mounts, run.env);
  if (outcome.ok) return 'ok';
  return outcome.exitCode === RESTORE_FAILED_EXIT ? 'the entry is unreadable' : outcome.reason;
}
