import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../store/metadata/database.ts';
import { builds, jobs } from '../store/metadata/schema.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import { JOBS_CHANNEL, LeaseLostError } from './jobs.ts';
import { endJob, requeue } from './lease.ts';
import type { ArtifactRecord, BuildOutcome, StageTiming } from '../worker/protocol.ts';

export interface CompletionReport {
  outcome: BuildOutcome;
  reason: string | null;
  language: string | null;
  kind: string | null;
  stages: StageTiming[];
  artifacts: Record<string, ArtifactRecord>;
  details: Record<string, unknown>;
}

/**
 * Records a worker's (already evaluated) result. The update is conditional on
 * the lease inside one transaction, so a job completes at most once even when
 * two workers race or a stale worker reports late. A crash is retried until
 * the job has used its attempts.
 */
export async function completeJob(database: Database, jobId: string, leaseToken: string, report: CompletionReport): Promise<{ build: Build; requeued: boolean }> {
  return database.db.transaction(async (tx) => {
    const [job] = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.id, jobId), eq(jobs.leaseToken, leaseToken), eq(jobs.state, 'running')))
      .for('update');
    if (!job) throw new LeaseLostError(jobId);
    const [current] = await tx.select({ cancelRequested: builds.cancelRequested }).from(builds).where(eq(builds.id, job.buildId));
    if (!current) throw new LeaseLostError(jobId);
    const retry = report.outcome === 'crashed' && job.attempt < job.maxAttempts && !current.cancelRequested;
    let build: Build | undefined;
    if (retry) {
      build = await requeue(tx, job);
      await tx.execute(sql`select pg_notify(${JOBS_CHANNEL}, '')`);
    } else {
      const outcome = current.cancelRequested && report.outcome !== 'succeeded' ? 'cancelled' : report.outcome;
      build = await endJob(tx, job, outcome, report.reason, {
        language: report.language,
        kind: report.kind,
        stages: report.stages,
        artifacts: report.artifacts,
        details: report.details,
      });
    }
    if (!build) throw new LeaseLostError(jobId);
    return { build, requeued: retry };
  });
}
