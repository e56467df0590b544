/**
 * What the API does for build workers, free of HTTP (the routes are
 * src/api/routes/internal.ts; the wire is src/worker/protocol.ts): hand out
 * a job with every limit that applies to it, and take an attempt's report —
 * the evaluator judges it, the job completes at most once, the log is
 * finished and an ended build announced.
 */
import { cacheNamespace } from '../build-cache/namespace.ts';
import { evaluateReport, INSPECT_DEADLINE_MS } from '../evaluator/evaluate.ts';
import { claimWithWait, type ClaimedJob } from '../queue/claim.ts';
import { completeJob } from '../queue/complete.ts';
import { LeaseLostError, type Job } from '../queue/jobs.ts';
import { releaseClaim } from '../queue/lease.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';
import { artifactKey, attemptsPrefix } from '../store/objects/keys.ts';
import type { JobResult, JobSpec } from '../worker/protocol.ts';
import type { UseCaseContext } from './context.ts';

/**
 * A build about to be recorded succeeded: its row as it will be (kind and
 * artifacts from the judged report; its state is still `running`), and its
 * version. The commit may still fail (a lost lease): nothing done with it may
 * show as the version's state before the build-succeeded news.
 */
export interface SucceedingBuild {
  build: Build;
  version: Version;
}

type JobContext = Pick<UseCaseContext, 'config' | 'database' | 'logs'>;
type ReportContext = Pick<UseCaseContext, 'config' | 'database' | 'logs' | 'objects' | 'versions' | 'logger'> & Partial<Pick<UseCaseContext, 'inspections'>> & {
  /** A build reached an end state (not re-queued): metrics and build-succeeded listeners. */
  buildEnded(build: Build): void;
  /**
   * A report was judged a success and is about to be committed: bounded, best-effort preparation (the test
   * bed readies the module, decision 0040). It never rejects and never changes the outcome.
   */
  buildSucceeding?(candidate: SucceedingBuild): Promise<void>;
};

/** The next job for a worker, or undefined; a job claimed for a worker that left meanwhile is handed back. */
export async function claimJob(context: JobContext, workerId: string, waitMs: number, signal: AbortSignal): Promise<JobSpec | undefined> {
  const claimed = await claimWithWait(context.database, workerId, context.config.queue, waitMs, signal);
  if (!claimed) return undefined;
  if (signal.aborted) {
    await releaseClaim(context.database, claimed.job.id, claimed.job.leaseToken ?? '');
    return undefined;
  }
  await context.logs.appendLine(claimed.build.id, `attempt ${claimed.job.attempt} claimed by worker ${workerId}`);
  return jobSpec(context, claimed);
}

function jobSpec(context: JobContext, claimed: ClaimedJob): JobSpec {
  const { job, build, version } = claimed;
  return {
    id: job.id,
    buildId: build.id,
    versionId: version.id,
    attempt: job.attempt,
    leaseToken: job.leaseToken ?? '',
    leaseExpiresAt: job.leaseExpiresAt?.toISOString() ?? '',
    language: version.language,
    kind: version.kind,
    phases: version.phases,
    config: version.config,
    optimize: version.optimize,
    sourceSha256: version.sourceSha256,
    sourceFormat: version.sourceFormat,
    limits: context.config.buildLimits,
    // The upload was accepted under these; the worker must not refuse it under others.
    archiveLimits: context.config.archiveLimits,
    // Opaque per-owner partition of the workers' dependency cache (a hash, never the owner's id or tokens).
    cacheNamespace: cacheNamespace(build.ownerId),
  };
}

/** An attempt's report, judged and recorded; the build as it now stands and whether the job went back to the queue. */
export async function reportResult(context: ReportContext, job: Job, build: Build, leaseToken: string, result: JobResult): Promise<{ build: Build; requeued: boolean }> {
  const version = await context.versions.get(build.ownerId, build.versionId);
  if (!version) throw new LeaseLostError(job.id);
  const report = await evaluateReport(context.objects, {
    report: result,
    declaredKind: version.kind,
    declaredLanguage: version.language,
    artifactKeys: { original: artifactKey(build, job.attempt, 'original'), optimized: artifactKey(build, job.attempt, 'optimized') },
    inspect: { maxBytes: context.config.maxArtifactBytes, deadlineMs: INSPECT_DEADLINE_MS },
    early: context.inspections,
  });
  if (report.outcome !== result.outcome) await context.logs.appendLine(build.id, `evaluator: ${report.reason ?? report.outcome}`);
  // Before the commit, so that whoever sees the build succeeded finds its module ready on the test bed.
  if (report.outcome === 'succeeded') await context.buildSucceeding?.({ build: { ...build, kind: report.kind, artifacts: report.artifacts }, version });
  const completed = await completeJob(context.database, job.id, leaseToken, report);
  if (completed.requeued) {
    await context.logs.appendLine(build.id, `attempt ${job.attempt} crashed (${report.reason ?? 'platform fault'}); re-queued`);
    context.logs.touch(build.id);
  } else {
    // The log is complete once the build has ended (nothing is appended after): followers may end
    // their streams now rather than after finalize, which only moves the log into one object
    // (and wakes them again when it has).
    context.logs.touch(build.id);
    await context.logs.finalize(build.id, completed.build);
    await removeStaleAttempts(context, completed.build);
    context.buildEnded(completed.build);
  }
  return { build: completed.build, requeued: completed.requeued };
}

/** Objects of earlier attempts are never served: delete them once the build ended. */
async function removeStaleAttempts(context: Pick<ReportContext, 'objects' | 'logger'>, build: Build): Promise<void> {
  const keep = new Set(Object.values(build.artifacts).map((record) => record.key));
  try {
    for await (const object of context.objects.list(attemptsPrefix(build))) {
      if (!keep.has(object.key)) await context.objects.delete(object.key);
    }
  } catch (error) {
    context.logger.warn({ err: error, buildId: build.id }, 'could not remove stale attempt artifacts');
  }
}
