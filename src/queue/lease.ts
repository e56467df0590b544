import { and, eq, lt, sql } from 'drizzle-orm';
import type { Database, Executor } from '../store/metadata/database.ts';
import { builds, jobs } from '../store/metadata/schema.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { BuildRef } from '../store/objects/keys.ts';
import type { BuildOutcome } from '../worker/protocol.ts';
import { JOBS_CHANNEL, LeaseLostError, type Job, type QueueSettings } from './jobs.ts';

/** The condition every lease check shares: `leaseToken` is the job's current, unexpired lease. */
function leaseHeld(jobId: string, leaseToken: string) {
  return and(eq(jobs.id, jobId), eq(jobs.leaseToken, leaseToken), eq(jobs.state, 'running'), sql`${jobs.leaseExpiresAt} > now()`);
}

/** What most of a worker's calls on its job need: the attempt and the ids that name the job's objects. */
export interface LeasedJob {
  attempt: number;
  build: BuildRef;
}

/**
 * The lease check of requireLeasedBuild, reading only a LeasedJob: the log
 * appends and artifact uploads of every build make it, and on the embedded
 * database the two whole rows cost about twice the planning and reading.
 */
export async function requireLease(db: Executor, jobId: string, leaseToken: string): Promise<LeasedJob> {
  const [row] = await db
    .select({ attempt: jobs.attempt, id: builds.id, ownerId: builds.ownerId, versionId: builds.versionId })
    .from(jobs)
    .innerJoin(builds, eq(builds.id, jobs.buildId))
    .where(leaseHeld(jobId, leaseToken));
  if (!row) throw new LeaseLostError(jobId);
  return { attempt: row.attempt, build: { id: row.id, ownerId: row.ownerId, versionId: row.versionId } };
}

/**
 * The job and its build, if `leaseToken` is the job's current, unexpired
 * lease: one query (every call a worker makes on its job needs both, and on
 * the embedded database each query holds the API's event loop).
 */
export async function requireLeasedBuild(db: Executor, jobId: string, leaseToken: string): Promise<{ job: Job; build: Build }> {
  const [row] = await db
    .select({ job: jobs, build: builds })
    .from(jobs)
    .innerJoin(builds, eq(builds.id, jobs.buildId))
    .where(leaseHeld(jobId, leaseToken));
  if (!row) throw new LeaseLostError(jobId);
  return row;
}

export interface HeartbeatAnswer {
  leaseExpiresAt: Date;
  cancelRequested: boolean;
}

export async function heartbeat(database: Database, jobId: string, leaseToken: string, settings: QueueSettings): Promise<HeartbeatAnswer> {
  const [job] = await database.db
    .update(jobs)
    .set({ leaseExpiresAt: sql`now() + ${`${settings.leaseMs} milliseconds`}::interval` })
    .where(leaseHeld(jobId, leaseToken))
    .returning({ leaseExpiresAt: jobs.leaseExpiresAt, buildId: jobs.buildId });
  if (!job?.leaseExpiresAt) throw new LeaseLostError(jobId);
  const [build] = await database.db.select({ cancelRequested: builds.cancelRequested }).from(builds).where(eq(builds.id, job.buildId));
  return { leaseExpiresAt: job.leaseExpiresAt, cancelRequested: build?.cancelRequested ?? true };
}

export interface SweepResult {
  requeued: string[];
  crashed: string[];
  cancelled: string[];
}

/**
 * Jobs whose worker stopped heartbeating: re-queue them, or end their build
 * (crashed after maxAttempts, cancelled if a cancel was pending).
 * Returns the build ids it ended so their logs can be finalized.
 */
export async function sweepExpiredLeases(database: Database): Promise<SweepResult> {
  const result: SweepResult = { requeued: [], crashed: [], cancelled: [] };
  await database.db.transaction(async (tx) => {
    const expired = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.state, 'running'), lt(jobs.leaseExpiresAt, sql`now()`)))
      .for('update', { skipLocked: true });
    for (const job of expired) {
      const [build] = await tx.select().from(builds).where(eq(builds.id, job.buildId));
      if (!build) continue;
      if (build.cancelRequested) {
        await endJob(tx, job, 'cancelled', 'cancelled; the worker stopped responding before it acknowledged');
        result.cancelled.push(build.id);
      } else if (job.attempt >= job.maxAttempts) {
        await endJob(tx, job, 'crashed', `the build's worker stopped responding ${job.attempt} times; giving up (a platform fault, not your code)`);
        result.crashed.push(build.id);
      } else {
        await requeue(tx, job);
        result.requeued.push(build.id);
      }
    }
    if (result.requeued.length > 0) await tx.execute(sql`select pg_notify(${JOBS_CHANNEL}, '')`);
  });
  return result;
}

/** Queues the job again; resolves to its build's row as updated (undefined if the build is gone). */
export async function requeue(tx: Executor, job: Job): Promise<Build | undefined> {
  await tx.update(jobs).set({ state: 'queued', leaseToken: null, leaseExpiresAt: null, workerId: null }).where(eq(jobs.id, job.id));
  const [build] = await tx.update(builds).set({ state: 'queued' }).where(eq(builds.id, job.buildId)).returning();
  return build;
}

export async function endJob(
  tx: Executor,
  job: Job,
  state: BuildOutcome,
  reason: string | null,
  extra: Partial<typeof builds.$inferInsert> = {},
): Promise<Build | undefined> {
  await tx.update(jobs).set({ state: 'done', leaseToken: null, leaseExpiresAt: null }).where(eq(jobs.id, job.id));
  const [build] = await tx
    .update(builds)
    .set({ ...extra, state, reason, finishedAt: sql`now()` })
    .where(eq(builds.id, job.buildId))
    .returning();
  return build;
}

/**
 * Gives back a job claimed for a worker that went away before it received
 * it: queued again at once, and the attempt it never started is not counted.
 */
export async function releaseClaim(database: Database, jobId: string, leaseToken: string): Promise<boolean> {
  return database.db.transaction(async (tx) => {
    const [job] = await tx
      .update(jobs)
      .set({ state: 'queued', attempt: sql`${jobs.attempt} - 1`, leaseToken: null, leaseExpiresAt: null, workerId: null })
      .where(and(eq(jobs.id, jobId), eq(jobs.leaseToken, leaseToken), eq(jobs.state, 'running')))
      .returning();
    if (!job) return false;
    await tx.update(builds).set({ state: 'queued', attempts: job.attempt }).where(eq(builds.id, job.buildId));
    await tx.execute(sql`select pg_notify(${JOBS_CHANNEL}, '')`);
    return true;
  });
}
