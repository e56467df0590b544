import { and, eq } from 'drizzle-orm';
import { conflict, notFound } from '../errors.ts';
import type { Database } from '../store/metadata/database.ts';
import { builds, jobs } from '../store/metadata/schema.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import { endJob } from './lease.ts';

/**
 * A queued build is cancelled at once; a running one is flagged and its
 * worker stops on its next heartbeat (or the lease sweeper ends it).
 */
export async function cancelBuild(database: Database, ownerId: string, buildId: string): Promise<Build> {
  return database.db.transaction(async (tx) => {
    const [build] = await tx
      .select()
      .from(builds)
      .where(and(eq(builds.id, buildId), eq(builds.ownerId, ownerId)))
      .for('update');
    if (!build) throw notFound('build', buildId);
    if (build.state !== 'queued' && build.state !== 'running') {
      throw conflict('build_finished', `build ${buildId} already ended as ${build.state}; nothing to cancel`);
    }
    const [job] = await tx.select().from(jobs).where(eq(jobs.buildId, buildId)).for('update');
    if (build.state === 'queued' && job && job.state === 'queued') {
      await endJob(tx, job, 'cancelled', 'cancelled before it started');
    } else {
      await tx.update(builds).set({ cancelRequested: true }).where(eq(builds.id, buildId));
    }
    const [updated] = await tx.select().from(builds).where(eq(builds.id, buildId));
    if (!updated) throw notFound('build', buildId);
    return updated;
  });
}
