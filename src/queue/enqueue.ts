import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Executor } from '../store/metadata/database.ts';
import { isUniqueViolation } from '../store/metadata/errors.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import { duplicateVersion, type NewVersion, type Version } from '../store/metadata/repositories/versions.ts';
import { builds, jobs, versions } from '../store/metadata/schema.ts';
import { JOBS_CHANNEL, type Job } from './jobs.ts';

/**
 * Enqueues the job of a queued build. Call inside the transaction that
 * created the build so the build and its job exist together or not at all;
 * the NOTIFY is delivered only when that transaction commits.
 */
export async function enqueueBuild(tx: Executor, buildId: string, maxAttempts: number): Promise<Job> {
  const [job] = await tx.insert(jobs).values({ id: randomUUID(), buildId, state: 'queued', maxAttempts }).returning();
  if (!job) throw new Error('insert returned no row');
  await tx.execute(sql`select pg_notify(${JOBS_CHANNEL}, '')`);
  return job;
}

/**
 * A new version, its first build (queued, number 1: a new version has no
 * other) and the build's job, with the NOTIFY that wakes workers, as ONE
 * statement: one round trip instead of six (BEGIN, three inserts, the
 * notify, COMMIT), and still all or nothing, since a statement is atomic.
 * The foreign keys hold: PostgreSQL checks them at the end of the statement,
 * when the rows of every part exist.
 */
export async function insertVersionWithQueuedBuild(db: Executor, version: NewVersion & { id: string }, maxAttempts: number): Promise<{ version: Version; build: Build }> {
  const buildId = randomUUID();
  const newVersion = db.$with('new_version').as(db.insert(versions).values(version).returning());
  const newBuild = db.$with('new_build').as(
    db.insert(builds).values({ id: buildId, ownerId: version.ownerId, applicationId: version.applicationId, versionId: version.id, state: 'queued', number: 1 }).returning(),
  );
  const newJob = db.$with('new_job').as(db.insert(jobs).values({ id: randomUUID(), buildId, state: 'queued', maxAttempts }).returning({ jobId: jobs.id }));
  // A plain SELECT in WITH runs only if the query reads it: the join below does.
  const notified = db.$with('notified', { sent: sql<string>`sent`.as('sent') }).as(sql`select pg_notify(${JOBS_CHANNEL}, '') as sent`);
  try {
    const [row] = await db
      .with(newVersion, newBuild, newJob, notified)
      .select()
      .from(newVersion)
      .crossJoin(newBuild)
      .crossJoin(newJob)
      .crossJoin(notified);
    if (!row) throw new Error('insert returned no row');
    return { version: row.new_version, build: row.new_build };
  } catch (error) {
    if (isUniqueViolation(error)) throw duplicateVersion(version.version);
    throw error;
  }
}
