/**
 * The worker protocol (`/internal/v1`, docs/worker-protocol.md), declared once.
 *
 * These TypeBox schemas are the single source of the job a worker receives
 * and the result it reports: the internal routes validate with them, the
 * worker client decodes the API's answers with them, and the worker, the
 * evaluator, the queue and the store use the types derived from them. A
 * field added here reaches every side, or the type check fails.
 *
 * This module depends on nothing of the API, the store or the queue, so the
 * build path (worker, optimize, sandbox…) can import it without reaching them.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { ArchiveLimits } from '../archive/limits.ts';
import type { SandboxLimits } from '../sandbox/sandbox.ts';
import { OptimizeOptionsSchema, WasmOptLevelSchema, type OptimizeOptions } from '../optimize/options.ts';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** How a build attempt ended, as the worker reports it and a build keeps it. */
export const BuildOutcomeSchema = Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('crashed'), Type.Literal('cancelled')]);
export type BuildOutcome = Static<typeof BuildOutcomeSchema>;
/** The outcomes in a fixed order: a build in one of these states has ended. */
export const BUILD_OUTCOMES: readonly BuildOutcome[] = BuildOutcomeSchema.anyOf.map((literal) => literal.const);

// Declared beside the optimizer (the build path's lower layer); carried here on the wire.
export { OptimizeOptionsSchema, WasmOptLevelSchema, type OptimizeOptions };

/** One timed stage of a build (download, extract, compile, optimize, upload…). */
export const StageTimingSchema = Type.Object(
  { name: Type.String({ maxLength: 100 }), startedAt: Type.String({ maxLength: 40 }), durationMs: Type.Number({ minimum: 0 }) },
  { additionalProperties: false },
);
export type StageTiming = Static<typeof StageTimingSchema>;

/** An artifact the evaluator accepted: where it is stored and what it hashes to. */
export const ArtifactRecordSchema = Type.Object({ key: Type.String(), sha256: Type.String(), size: Type.Integer({ minimum: 0 }) });
export type ArtifactRecord = Static<typeof ArtifactRecordSchema>;

export const ARTIFACT_VARIANTS = ['original', 'optimized'] as const;
export const ArtifactVariantSchema = Type.Union([Type.Literal('original'), Type.Literal('optimized')]);
export type ArtifactVariant = Static<typeof ArtifactVariantSchema>;

const Count = Type.Integer({ minimum: 1 });

/** The sandbox limits of every step of the job (src/sandbox's SandboxLimits). */
export const SandboxLimitsSchema = Type.Object(
  { wallMs: Count, memoryBytes: Count, pids: Count, diskBytes: Count, logBytes: Count, cpus: Type.Number({ exclusiveMinimum: 0 }) },
  { additionalProperties: false },
);

/** The archive limits the API accepted the upload under (src/archive's ArchiveLimits). */
export const ArchiveLimitsSchema = Type.Object(
  { maxCompressedBytes: Count, maxTotalBytes: Count, maxFileBytes: Count, maxEntries: Count, maxPathLength: Count, maxDepth: Count },
  { additionalProperties: false },
);

/** The job a worker receives from `claim`. */
export const JobSpecSchema = Type.Object({
  id: Type.String({ minLength: 1 }),
  buildId: Type.String({ minLength: 1 }),
  versionId: Type.String({ minLength: 1 }),
  attempt: Type.Integer({ minimum: 1 }),
  leaseToken: Type.String({ minLength: 1 }),
  leaseExpiresAt: Type.String(),
  /** null: the uploader left it out and the worker detects it. */
  language: Nullable(Type.String()),
  kind: Nullable(Type.String()),
  phases: Type.Array(Type.String()),
  config: Type.String(),
  optimize: OptimizeOptionsSchema,
  sourceSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  sourceFormat: Type.String(),
  /** Required: the worker never guesses a limit, it applies the API's. */
  limits: SandboxLimitsSchema,
  archiveLimits: ArchiveLimitsSchema,
  /** Opaque per-owner partition of the dependency cache (a hash, never the owner's id or a token). */
  cacheNamespace: Type.String({ minLength: 1 }),
});
export type JobSpec = Static<typeof JobSpecSchema>;

/** The answer to a claim that found a job (no job: 204, no body). */
export const ClaimAnswerSchema = Type.Object({ job: JobSpecSchema });
export type ClaimAnswer = Static<typeof ClaimAnswerSchema>;

export const WorkerIdSchema = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._:@-]+$' });
/** The API holds a claim open at most this long (long-poll). */
export const MAX_CLAIM_WAIT_MS = 30_000;
export const ClaimRequestSchema = Type.Object({ workerId: WorkerIdSchema, waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_CLAIM_WAIT_MS })) }, { additionalProperties: false });
export type ClaimRequest = Static<typeof ClaimRequestSchema>;

export const HeartbeatAnswerSchema = Type.Object({ leaseExpiresAt: Type.String(), cancelRequested: Type.Boolean() });
export type HeartbeatAnswer = Static<typeof HeartbeatAnswerSchema>;

export const ArtifactAnswerSchema = Type.Object({ sha256: Type.String(), size: Type.Integer({ minimum: 0 }) });
export type ArtifactAnswer = Static<typeof ArtifactAnswerSchema>;

/** Bounds on a report's free-form details (facts, cache and fetch reports, optimize steps). */
export const DETAILS_LIMITS = { maxKeys: 100, maxDepth: 6, maxStringLength: 65_536, maxItems: 1_000 } as const;

/**
 * A JSON value nested at most `depth` levels: what a report's details may
 * hold. Unrolled to a fixed depth rather than recursive, so the schema needs
 * no `$id` (the API compiles each route's schema on its own) and the depth
 * is bounded by the schema itself.
 */
function jsonValue(depth: number): TSchema {
  const leaves = [Type.Null(), Type.Boolean(), Type.Number(), Type.String({ maxLength: DETAILS_LIMITS.maxStringLength })];
  if (depth === 0) return Type.Union(leaves);
  const inner = jsonValue(depth - 1);
  return Type.Union([...leaves, Type.Array(inner, { maxItems: DETAILS_LIMITS.maxItems }), Type.Record(Type.String({ maxLength: 200 }), inner, { maxProperties: DETAILS_LIMITS.maxKeys })]);
}

/** The result a worker reports for its attempt. */
export const JobResultSchema = Type.Object(
  {
    outcome: BuildOutcomeSchema,
    reason: Type.Optional(Type.String({ maxLength: 4000 })),
    language: Type.Optional(Type.String({ maxLength: 40 })),
    kind: Type.Optional(Type.String({ maxLength: 40 })),
    stages: Type.Array(StageTimingSchema, { maxItems: 50 }),
    details: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), jsonValue(DETAILS_LIMITS.maxDepth), { maxProperties: DETAILS_LIMITS.maxKeys })),
  },
  { additionalProperties: false },
);
export type JobResult = Static<typeof JobResultSchema>;

/**
 * What the worker reads from the answer to its report: the state the
 * evaluator decided, and whether a crash was re-queued. (The API sends the
 * whole public build; the worker relies on no more than this.)
 */
export const ReportAnswerSchema = Type.Object({
  build: Type.Object({ id: Type.String(), state: Type.Union([Type.Literal('queued'), Type.Literal('running'), ...BuildOutcomeSchema.anyOf]) }),
  requeued: Type.Boolean(),
});
export type ReportAnswer = Static<typeof ReportAnswerSchema>;

// The limits are declared by the sandbox and the archive reader; these two
// lines fail the type check the day either side drifts from the other.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const limitsMatch: Same<Static<typeof SandboxLimitsSchema>, SandboxLimits> & Same<Static<typeof ArchiveLimitsSchema>, ArchiveLimits> = true;
void limitsMatch;
