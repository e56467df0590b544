import { sql } from 'drizzle-orm';
import { bigint, boolean, customType, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { BUILD_OUTCOMES, type ArtifactRecord, type BuildOutcome, type OptimizeOptions, type StageTiming } from '../../worker/protocol.ts';

/**
 * One schema for PGlite (embedded) and a real PostgreSQL server.
 * Migrations under drizzle/ are generated from this file by drizzle-kit.
 */

const bytea = customType<{ data: Buffer; driverData: Buffer | Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (value) => (Buffer.isBuffer(value) ? value : Buffer.from(value)),
});

/**
 * Millisecond precision: keyset pagination cursors carry a JavaScript Date,
 * and microseconds lost in the cursor would skip rows that share a millisecond.
 */
const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date', precision: 3 }).notNull().defaultNow();

export const owners = pgTable('owners', {
  id: uuid('id').primaryKey(),
  name: text('name').notNull().unique(),
  createdAt: createdAt(),
});

export type TokenKind = 'admin' | 'owner' | 'worker' | 'edge';

export const tokens = pgTable(
  'tokens',
  {
    id: uuid('id').primaryKey(),
    /** null for admin and worker tokens, which belong to the operator. */
    ownerId: uuid('owner_id').references(() => owners.id, { onDelete: 'cascade' }),
    kind: text('kind').$type<TokenKind>().notNull(),
    name: text('name').notNull(),
    /** sha256 of the secret: a leaked database does not leak usable tokens. */
    secretHash: text('secret_hash').notNull().unique(),
    createdAt: createdAt(),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [index('tokens_owner_idx').on(t.ownerId)],
);

export const applications = pgTable(
  'applications',
  {
    id: uuid('id').primaryKey(),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => owners.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    notes: text('notes').notNull().default(''),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('applications_owner_name_idx').on(t.ownerId, t.name), index('applications_owner_created_idx').on(t.ownerId, t.createdAt)],
);

// The shapes a worker reports (optimize options, stage timings, artifact records) are the
// worker protocol's (src/worker/protocol.ts): re-exported for the store's readers.
export type { ArtifactRecord, OptimizeOptions, StageTiming };

export const versions = pgTable(
  'versions',
  {
    id: uuid('id').primaryKey(),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => owners.id, { onDelete: 'cascade' }),
    applicationId: uuid('application_id')
      .notNull()
      .references(() => applications.id, { onDelete: 'cascade' }),
    version: text('version').notNull(),
    language: text('language'),
    kind: text('kind'),
    phases: jsonb('phases').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    config: text('config').notNull().default(''),
    notes: text('notes').notNull().default(''),
    optimize: jsonb('optimize').$type<OptimizeOptions>().notNull(),
    sourceKey: text('source_key').notNull(),
    sourceSha256: text('source_sha256').notNull(),
    sourceSize: bigint('source_size', { mode: 'number' }).notNull(),
    sourceFormat: text('source_format').notNull(),
    createdAt: createdAt(),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('versions_app_version_idx').on(t.applicationId, t.version), index('versions_owner_idx').on(t.ownerId)],
);

export type BuildState = 'queued' | 'running' | BuildOutcome;
export const TERMINAL_BUILD_STATES: readonly BuildState[] = BUILD_OUTCOMES;

export const builds = pgTable(
  'builds',
  {
    id: uuid('id').primaryKey(),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => owners.id, { onDelete: 'cascade' }),
    applicationId: uuid('application_id')
      .notNull()
      .references(() => applications.id, { onDelete: 'cascade' }),
    versionId: uuid('version_id')
      .notNull()
      .references(() => versions.id, { onDelete: 'cascade' }),
    number: integer('number').notNull(),
    state: text('state').$type<BuildState>().notNull(),
    reason: text('reason'),
    language: text('language'),
    kind: text('kind'),
    stages: jsonb('stages').$type<StageTiming[]>().notNull().default(sql`'[]'::jsonb`),
    artifacts: jsonb('artifacts').$type<Record<string, ArtifactRecord>>().notNull().default(sql`'{}'::jsonb`),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default(sql`'{}'::jsonb`),
    attempts: integer('attempts').notNull().default(0),
    cancelRequested: boolean('cancel_requested').notNull().default(false),
    logKey: text('log_key'),
    logBytes: bigint('log_bytes', { mode: 'number' }).notNull().default(0),
    createdAt: createdAt(),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }),
    finishedAt: timestamp('finished_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('builds_version_number_idx').on(t.versionId, t.number),
    index('builds_owner_created_idx').on(t.ownerId, t.createdAt),
    index('builds_state_idx').on(t.state),
  ],
);

export type JobState = 'queued' | 'running' | 'done';

export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey(),
    buildId: uuid('build_id')
      .notNull()
      .unique()
      .references(() => builds.id, { onDelete: 'cascade' }),
    state: text('state').$type<JobState>().notNull(),
    attempt: integer('attempt').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    leaseToken: text('lease_token'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true, mode: 'date' }),
    workerId: text('worker_id'),
    createdAt: createdAt(),
  },
  (t) => [index('jobs_state_created_idx').on(t.state, t.createdAt), index('jobs_lease_idx').on(t.state, t.leaseExpiresAt)],
);

/**
 * Log chunks of a build while it runs; on completion they are joined into one
 * object in the object store and deleted here.
 */
export const logChunks = pgTable(
  'log_chunks',
  {
    buildId: uuid('build_id')
      .notNull()
      .references(() => builds.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    data: bytea('data').notNull(),
  },
  (t) => [uniqueIndex('log_chunks_build_seq_idx').on(t.buildId, t.seq)],
);

/**
 * Deployments (decision 0004): one immutable row per promotion, recording the
 * exact artifact that went live, so history and rollback never depend on
 * what a version's latest build happens to be later. The semantic version
 * and the artifact are copied in: the row stays readable after its version
 * is (forcibly) deleted, when `version_id` becomes null.
 */
export const deployments = pgTable(
  'deployments',
  {
    id: uuid('id').primaryKey(),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => owners.id, { onDelete: 'cascade' }),
    applicationId: uuid('application_id')
      .notNull()
      .references(() => applications.id, { onDelete: 'cascade' }),
    environment: text('environment').notNull(),
    /** Increases per application: orders history strictly where timestamps could tie. */
    number: integer('number').notNull(),
    versionId: uuid('version_id').references(() => versions.id, { onDelete: 'set null' }),
    version: text('version').notNull(),
    /** No foreign key: the record must outlive the build row (versions cascade to builds). */
    buildId: uuid('build_id').notNull(),
    variant: text('variant').notNull(),
    artifactKey: text('artifact_key').notNull(),
    sha256: text('sha256').notNull(),
    size: bigint('size', { mode: 'number' }).notNull(),
    kind: text('kind'),
    phases: jsonb('phases').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    config: text('config').notNull().default(''),
    /** Set when the deployment stopped being active without a successor (its version was deleted). */
    withdrawnAt: timestamp('withdrawn_at', { withTimezone: true, mode: 'date' }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('deployments_app_number_idx').on(t.applicationId, t.number),
    index('deployments_version_idx').on(t.versionId),
    index('deployments_sha256_idx').on(t.sha256),
  ],
);

/**
 * What is live: at most one deployment per application and environment.
 * Promotion replaces the row; withdrawal deletes it. The edge manifest is a
 * join over this table.
 */
export const activeDeployments = pgTable(
  'active_deployments',
  {
    applicationId: uuid('application_id')
      .notNull()
      .references(() => applications.id, { onDelete: 'cascade' }),
    environment: text('environment').notNull(),
    deploymentId: uuid('deployment_id')
      .notNull()
      .references(() => deployments.id, { onDelete: 'cascade' }),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => owners.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.applicationId, t.environment] }), index('active_deployments_env_idx').on(t.environment, t.ownerId)],
);

/**
 * Which owners an edge token may read. A separate row, not a nullable
 * column, so that the default is no access: an edge token without a scope
 * row sees nothing, and deleting an owner can never widen a token to "all".
 */
export const edgeTokenScopes = pgTable('edge_token_scopes', {
  tokenId: uuid('token_id')
    .primaryKey()
    .references(() => tokens.id, { onDelete: 'cascade' }),
  allOwners: boolean('all_owners').notNull(),
  ownerIds: jsonb('owner_ids').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
});

export const schema = { owners, tokens, applications, versions, builds, jobs, logChunks, deployments, activeDeployments, edgeTokenScopes };
export type Schema = typeof schema;
