import { randomBytes } from 'node:crypto';
import { asc, eq, sql } from 'drizzle-orm';
import type { Database } from '../store/metadata/database.ts';
import { builds, jobs, versions } from '../store/metadata/schema.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';
import { JOBS_CHANNEL, type Job, type QueueSettings } from './jobs.ts';

export interface ClaimedJob {
  job: Job;
  build: Build;
  version: Version;
}

/**
 * Takes the oldest queued job, if any. `FOR UPDATE SKIP LOCKED` lets any
 * number of API instances claim concurrently without handing a job out twice.
 */
export async function claimOnce(database: Database, workerId: string, settings: QueueSettings): Promise<ClaimedJob | undefined> {
  return database.db.transaction(async (tx) => {
    const [candidate] = await tx
      .select({ id: jobs.id })
      .from(jobs)
      .where(eq(jobs.state, 'queued'))
      .orderBy(asc(jobs.createdAt))
      .limit(1)
      .for('update', { skipLocked: true });
    if (!candidate) return undefined;
    const [job] = await tx
      .update(jobs)
      .set({
        state: 'running',
        attempt: sql`${jobs.attempt} + 1`,
        leaseToken: randomBytes(24).toString('base64url'),
        leaseExpiresAt: sql`now() + ${`${settings.leaseMs} milliseconds`}::interval`,
        workerId,
      })
      .where(eq(jobs.id, candidate.id))
      .returning();
    if (!job) return undefined;
    const [build] = await tx
      .update(builds)
      .set({ state: 'running', attempts: job.attempt, startedAt: sql`coalesce(${builds.startedAt}, now())` })
      .where(eq(builds.id, job.buildId))
      .returning();
    if (!build) throw new Error(`job ${job.id} has no build`);
    const [version] = await tx.select().from(versions).where(eq(versions.id, build.versionId));
    if (!version) throw new Error(`build ${build.id} has no version`);
    return { job, build, version };
  });
}

/**
 * Long-poll: claims at once if possible, otherwise waits for a NOTIFY (or a
 * periodic re-check, in case a notification was lost) until `waitMs` passes.
 */
export async function claimWithWait(
  database: Database,
  workerId: string,
  settings: QueueSettings,
  waitMs: number,
  signal?: AbortSignal,
): Promise<ClaimedJob | undefined> {
  const deadline = Date.now() + waitMs;
  let wake: (() => void) | undefined;
  const onWake = () => wake?.();
  const unlisten = await database.notifier.listen(JOBS_CHANNEL, onWake);
  // One listener for the whole wait: adding one per round would pile up on
  // the request's signal during a long poll.
  signal?.addEventListener('abort', onWake);
  try {
    while (true) {
      const claimed = await claimOnce(database, workerId, settings);
      if (claimed) return claimed;
      const remaining = deadline - Date.now();
      if (remaining <= 0 || signal?.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(remaining, 1_000));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    signal?.removeEventListener('abort', onWake);
    await unlisten();
  }
}
