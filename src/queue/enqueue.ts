import { randomUUID } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
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

/** What a new version is created from; what is left out is written as no language or kind, no phases, empty config and notes (statementValues). */
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
    const [row] = await preparedInsertFor(db).execute(statementValues(version, maxAttempts));
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

/** The placeholder values of one new version (the ids of its build and job made here). */
function statementValues(version: QueuedVersionInput, maxAttempts: number) {
  return {
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
  };
}

type ValueName = keyof ReturnType<typeof statementValues>;

/**
 * Each batch member's placeholder names (`versionId_3`…), made once per
 * member index. Building them for every member of every batch (and an
 * object to rename through) was 8 % of the bytes an API allocated under the
 * create load, on a path where garbage collection is a quarter of the CPU.
 */
const memberNames: Array<ReadonlyArray<readonly [ValueName, string]>> = [];

function namesOfMember(index: number, member: Record<ValueName, unknown>): ReadonlyArray<readonly [ValueName, string]> {
  let names = memberNames[index];
  if (!names) {
    names = (Object.keys(member) as ValueName[]).map((name) => [name, `${name}_${index}`] as const);
    memberNames[index] = names;
  }
  return names;
}

/** One member of a batch: a new version and the attempts its job gets. */
export interface QueuedVersionRow {
  version: QueuedVersionInput;
  maxAttempts: number;
}

/**
 * Several new versions, each with its first build and the build's job, and
 * ONE NOTIFY, as one statement (insertVersionWithQueuedBuild for many): all
 * of them or none, since a statement is atomic. Answers in the order given.
 *
 * A constraint that refuses one row (a duplicate version, an application
 * deleted meanwhile) refuses the whole statement with that row's error: the
 * caller that batches unrelated requests decides what to do with it
 * (queued-version-writer.ts runs each member alone then). Two members with
 * the same version are such a case. Errors are the driver's, untranslated.
 */
export async function insertVersionsWithQueuedBuilds(db: Executor, rows: readonly QueuedVersionRow[]): Promise<{ version: Version; build: Build }[]> {
  if (rows.length === 0) return [];
  const values: Record<string, unknown> = {};
  rows.forEach((row, index) => {
    const member = statementValues(row.version, row.maxAttempts);
    for (const [name, placeholder] of namesOfMember(index, member)) values[placeholder] = member[name];
  });
  const answered = await preparedBatchFor(db, rows.length).execute(values);
  const byVersionId = new Map(answered.map((row) => [row.new_version.id, { version: row.new_version, build: row.new_build }]));
  return rows.map((row) => {
    const created = byVersionId.get(row.version.id);
    if (!created) throw new Error(`the batch insert returned no row for version ${row.version.id}`);
    return created;
  });
}

type PreparedBatch = ReturnType<typeof prepareBatch>;
/** Per database handle, one prepared statement per batch size (placeholders are per row). */
const preparedBatches = new WeakMap<Executor, Map<number, PreparedBatch>>();

function preparedBatchFor(db: Executor, size: number): PreparedBatch {
  let bySize = preparedBatches.get(db);
  if (!bySize) {
    bySize = new Map();
    preparedBatches.set(db, bySize);
  }
  let prepared = bySize.get(size);
  if (!prepared) {
    prepared = prepareBatch(db, size);
    bySize.set(size, prepared);
  }
  return prepared;
}

function prepareBatch(db: Executor, size: number) {
  const indexes = Array.from({ length: size }, (_, index) => `_${index}`);
  const newVersion = db.$with('new_version').as(
    db
      .insert(versions)
      .values(
        indexes.map((suffix) => {
          const value = (name: string) => sql.placeholder(`${name}${suffix}`);
          return {
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
          };
        }),
      )
      .returning(),
  );
  const newBuild = db.$with('new_build').as(
    db
      .insert(builds)
      .values(
        indexes.map((suffix) => {
          const value = (name: string) => sql.placeholder(`${name}${suffix}`);
          return { id: value('buildId'), ownerId: value('ownerId'), applicationId: value('applicationId'), versionId: value('versionId'), state: 'queued' as const, number: 1 };
        }),
      )
      .returning(),
  );
  // A data-modifying CTE runs whether or not the query reads it.
  const newJob = db.$with('new_job').as(
    db
      .insert(jobs)
      .values(
        indexes.map((suffix) => {
          const value = (name: string) => sql.placeholder(`${name}${suffix}`);
          return { id: value('jobId'), buildId: value('buildId'), state: 'queued' as const, maxAttempts: value('maxAttempts') };
        }),
      )
      .returning({ jobId: jobs.id }),
  );
  // A plain SELECT in WITH runs only if the query reads it: the join below does (one NOTIFY for the batch).
  const notified = db.$with('notified', { sent: sql<string>`sent`.as('sent') }).as(sql`select pg_notify(${JOBS_CHANNEL}, '') as sent`);
  return db
    .with(newVersion, newBuild, newJob, notified)
    .select({ new_version: newVersion._.selectedFields, new_build: newBuild._.selectedFields })
    .from(newVersion)
    .innerJoin(newBuild, eq(newBuild.versionId, newVersion.id))
    .crossJoin(notified)
    .prepare(`kiln_insert_versions_with_queued_builds_${size}`);
}
