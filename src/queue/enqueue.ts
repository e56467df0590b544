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

/** What a new version is created from; the columns left out take the table's defaults. */
export interface QueuedVersionInput {
  id: string;
  ownerId: string;
  applicationId: string;
  version: string;
  language?: string | null;
  kind?: string | null;
  phases?: string[];
  config?: string;
  notes?: string;
  optimize: NewVersion['optimize'];
  sourceKey: string;
  sourceSha256: string;
  sourceSize: number;
  sourceFormat: string;
}

/**
 * A new version, its first build (queued, number 1: a new version has no
 * other) and the build's job, with the NOTIFY that wakes workers, as ONE
 * statement: one round trip instead of six (BEGIN, three inserts, the
 * notify, COMMIT), and still all or nothing, since a statement is atomic.
 * The foreign keys hold: PostgreSQL checks them at the end of the statement,
 * when the rows of every part exist.
 */
export async function insertVersionWithQueuedBuild(db: Executor, version: QueuedVersionInput, maxAttempts: number): Promise<{ version: Version; build: Build }> {
  try {
    const [row] = await preparedInsertFor(db).execute({
      versionId: version.id,
      ownerId: version.ownerId,
      applicationId: version.applicationId,
      version: version.version,
      language: version.language ?? null,
      kind: version.kind ?? null,
      phases: version.phases ?? [],
      config: version.config ?? '',
      notes: version.notes ?? '',
      optimize: version.optimize,
      sourceKey: version.sourceKey,
      sourceSha256: version.sourceSha256,
      sourceSize: version.sourceSize,
      sourceFormat: version.sourceFormat,
      buildId: randomUUID(),
      jobId: randomUUID(),
      maxAttempts,
    });
    if (!row) throw new Error('insert returned no row');
    return { version: row.new_version, build: row.new_build };
  } catch (error) {
    if (isUniqueViolation(error)) throw duplicateVersion(version.version);
    throw error;
  }
}

type PreparedInsert = ReturnType<typeof prepareInsert>;
/**
 * Building this statement through the query builder cost more CPU than the
 * database spends running it (profiled on the upload path, issue 16), so it
 * is built once per database handle and then only executed with new values;
 * on PostgreSQL it is also a named prepared statement, parsed once per
 * connection. A transaction handle gets its own (kept as long as it is).
 */
const preparedInserts = new WeakMap<Executor, PreparedInsert>();

function preparedInsertFor(db: Executor): PreparedInsert {
  let prepared = preparedInserts.get(db);
  if (!prepared) {
    prepared = prepareInsert(db);
    preparedInserts.set(db, prepared);
  }
  return prepared;
}

function prepareInsert(db: Executor) {
  const value = (name: string) => sql.placeholder(name);
  const newVersion = db.$with('new_version').as(
    db
      .insert(versions)
      .values({
        id: value('versionId'),
        ownerId: value('ownerId'),
        applicationId: value('applicationId'),
        version: value('version'),
        language: value('language'),
        kind: value('kind'),
        phases: value('phases'),
        config: value('config'),
        notes: value('notes'),
        optimize: value('optimize'),
        sourceKey: value('sourceKey'),
        sourceSha256: value('sourceSha256'),
        sourceSize: value('sourceSize'),
        sourceFormat: value('sourceFormat'),
      })
      .returning(),
  );
  const newBuild = db.$with('new_build').as(
    db
      .insert(builds)
      .values({ id: value('buildId'), ownerId: value('ownerId'), applicationId: value('applicationId'), versionId: value('versionId'), state: 'queued', number: 1 })
      .returning(),
  );
  const newJob = db.$with('new_job').as(db.insert(jobs).values({ id: value('jobId'), buildId: value('buildId'), state: 'queued', maxAttempts: value('maxAttempts') }).returning({ jobId: jobs.id }));
  // A plain SELECT in WITH runs only if the query reads it: the join below does.
  const notified = db.$with('notified', { sent: sql<string>`sent`.as('sent') }).as(sql`select pg_notify(${JOBS_CHANNEL}, '') as sent`);
  return db.with(newVersion, newBuild, newJob, notified).select().from(newVersion).crossJoin(newBuild).crossJoin(newJob).crossJoin(notified).prepare('kiln_insert_version_with_queued_build');
}
