import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { LANGUAGE_IDS } from '../languages/ids.ts';
import { APP_KINDS } from '../wasm/app-kinds.ts';
import { BuildOutcomeSchema, OptimizeOptionsSchema, StageTimingSchema } from '../worker/protocol.ts';

/** Shared TypeBox schemas: they validate requests and document /openapi.json. */

export const Uuid = Type.String({ format: 'uuid', description: 'a UUID' });
export const Timestamp = Type.String({ format: 'date-time' });
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

export const ErrorBody = Type.Object(
  { error: Type.Object({ code: Type.String(), message: Type.String() }) },
  { $id: 'Error', description: 'Every 4xx and 5xx answer has this shape' },
);

export const Language = Type.Union(LANGUAGE_IDS.map((id) => Type.Literal(id)));
export const Kind = Type.Union(APP_KINDS.map((kind) => Type.Literal(kind)));
export const Phase = Type.Union([Type.Literal('request_headers'), Type.Literal('request_body'), Type.Literal('response_headers'), Type.Literal('response_body'), Type.Literal('log')]);
/** A build is queued, running, or ended with one of the worker protocol's outcomes. */
export const BuildStateSchema = Type.Union([Type.Literal('queued'), Type.Literal('running'), ...BuildOutcomeSchema.anyOf]);

export const ApplicationName = Type.String({ minLength: 1, maxLength: 100, pattern: '^[a-z0-9][a-z0-9-]*$', description: 'lower-case letters, digits and dashes' });
export const Notes = Type.String({ maxLength: 10_000 });

/** Semantic Versioning 2.0.0 (the official grammar, as a regular expression). */
export const SEMVER_PATTERN =
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$';
export const SemVer = Type.String({ maxLength: 128, pattern: SEMVER_PATTERN, description: 'a semantic version, e.g. 1.2.3' });

/** What an upload may ask for: any of the job's optimize options; the rest take their defaults. */
export const OptimizeSchema = Type.Partial(OptimizeOptionsSchema, { additionalProperties: false });

export const VersionMetadata = Type.Object(
  {
    version: SemVer,
    language: Type.Optional(Language),
    kind: Type.Optional(Kind),
    phases: Type.Optional(Type.Array(Phase, { maxItems: 5, uniqueItems: true })),
    config: Type.Optional(Type.String({ maxLength: 64 * 1024, description: 'plugin configuration handed to the filter' })),
    notes: Type.Optional(Notes),
    optimize: Type.Optional(OptimizeSchema),
  },
  { additionalProperties: false },
);
export type VersionMetadata = Static<typeof VersionMetadata>;

export const Application = Type.Object(
  { id: Uuid, name: Type.String(), notes: Type.String(), createdAt: Timestamp, updatedAt: Timestamp },
  { $id: 'Application' },
);

export const Artifact = Type.Object({ sha256: Type.String(), size: Type.Integer() });

export const Build = Type.Object(
  {
    id: Uuid,
    applicationId: Uuid,
    versionId: Uuid,
    number: Type.Integer(),
    state: BuildStateSchema,
    reason: Nullable(Type.String()),
    language: Nullable(Type.String()),
    kind: Nullable(Type.String()),
    attempts: Type.Integer(),
    cancelRequested: Type.Boolean(),
    stages: Type.Array(StageTimingSchema),
    artifacts: Type.Record(Type.String(), Artifact),
    details: Type.Record(Type.String(), Type.Unknown()),
    logBytes: Type.Integer(),
    createdAt: Timestamp,
    startedAt: Nullable(Timestamp),
    finishedAt: Nullable(Timestamp),
    durationMs: Nullable(Type.Number()),
  },
  { $id: 'Build' },
);

export const Version = Type.Object(
  {
    id: Uuid,
    applicationId: Uuid,
    version: Type.String(),
    language: Nullable(Type.String()),
    kind: Nullable(Type.String()),
    phases: Type.Array(Type.String()),
    config: Type.String(),
    notes: Type.String(),
    optimize: Type.Object({ strip: Type.Boolean(), wasmOpt: Type.String(), wizer: Type.Boolean(), memoryCapPages: Nullable(Type.Integer()) }),
    source: Type.Object({ sha256: Type.String(), size: Type.Integer(), format: Type.String() }),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { $id: 'Version' },
);

export const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const pageOf = <T extends TSchema>(item: T) => Type.Object({ items: Type.Array(item), nextCursor: Type.Optional(Type.String()) });

/** No body at all: a serialized `null` would announce four bytes that a 304 never carries. */
export const NotModified = Type.Unsafe<undefined>({ description: 'not modified (If-None-Match matched): no body' });

/**
 * Binary or text bodies (artifacts, archives, logs): OpenAPI's binary string.
 * Never serialized: Fastify sends Buffers, streams and strings with a non-JSON
 * content type as they are.
 */
export const BinaryBody = Type.Unsafe<Uint8Array | string>({ type: 'string', format: 'binary', description: 'binary or text content' });

export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  413: ErrorBody,
  422: ErrorBody,
} as const;
