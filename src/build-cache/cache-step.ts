/**
 * One short shell script in the build's sandbox (tar and find: restoring or
 * packing a cache entry). Used by the dependency cache (session.ts) and by
 * the fetch phase's cache of fetched dependencies. A cache step can never
 * fail a build: every problem comes back as a reason, and the caller builds
 * (or fetches) from scratch.
 */
import { errorMessage } from '../errors.ts';
import type { Mount, Sandbox, SandboxLimits } from '../sandbox/sandbox.ts';

export interface CacheStepContext {
  sandbox: Sandbox;
  /** Host path of the job's volume (mounted at /build). */
  jobDir: string;
  limits: SandboxLimits;
  onOutput: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export type CacheStepOutcome = { ok: true } | { ok: false; cancelled: boolean; exitCode?: number; reason: string };

/** Cache steps are tar and find: minutes would mean something is wrong. */
const CACHE_STEP_WALL_MS = 2 * 60_000;

export async function runCacheStep(run: CacheStepContext, script: string, mounts: Mount[], env: Record<string, string>): Promise<CacheStepOutcome> {
  try {
    const result = await run.sandbox.run({
      command: ['/usr/bin/sh', '-c', script],
      env,
      cwd: '/build',
      workDir: run.jobDir,
      mounts,
      limits: { ...run.limits, wallMs: Math.min(run.limits.wallMs, CACHE_STEP_WALL_MS) },
      onOutput: run.onOutput,
      signal: run.signal,
    });
    if (result.cancelled) return { ok: false, cancelled: true, reason: 'cancelled' };
    if (result.limitHit !== undefined) return { ok: false, cancelled: false, reason: `${result.limitHit} limit reached` };
    if (result.exitCode === 0) return { ok: true };
    return { ok: false, cancelled: false, exitCode: result.exitCode ?? undefined, reason: `exit code ${result.exitCode ?? result.signal ?? 'unknown'}` };
  } catch (error) {
    return { ok: false, cancelled: false, reason: `sandbox error: ${errorMessage(error)}` };
  }
}
