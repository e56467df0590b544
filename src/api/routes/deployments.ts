import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ENVIRONMENT_PATTERN } from '../../edge/environments.ts';
import { badRequest, conflict, notFound } from '../../errors.ts';
import type { Database, Executor } from '../../store/metadata/database.ts';
import { SqlBuildRepository, type Build } from '../../store/metadata/repositories/builds.ts';
import { SqlDeploymentRepository, type Deployment, type NewDeployment } from '../../store/metadata/repositories/deployments.ts';
import { SqlVersionRepository, type Version } from '../../store/metadata/repositories/versions.ts';
import type { ArtifactRecord } from '../../store/metadata/schema.ts';
import { ownerOf } from '../auth.ts';
import { errorResponses, Nullable, Timestamp, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';

const AppParams = Type.Object({ applicationId: Uuid });
const Variant = Type.Union([Type.Literal('optimized'), Type.Literal('original')]);

export const EnvironmentName = Type.String({
  pattern: ENVIRONMENT_PATTERN,
  description: 'staging, production, or a name the operator added with KILN_ENVIRONMENTS',
});

export const DeploymentSchema = Type.Object({
  id: Uuid,
  applicationId: Uuid,
  environment: Type.String(),
  number: Type.Integer({ description: 'increases with every deployment of the application' }),
  versionId: Nullable(Uuid),
  version: Type.String({ description: 'the semantic version, kept after the version is deleted' }),
  buildId: Uuid,
  variant: Type.String(),
  artifact: Type.Object({ sha256: Type.String(), size: Type.Integer() }),
  kind: Nullable(Type.String()),
  phases: Type.Array(Type.String()),
  config: Type.String(),
  active: Type.Boolean({ description: 'whether this is what its environment runs now' }),
  withdrawnAt: Nullable(Timestamp),
  createdAt: Timestamp,
});
export type DeploymentJson = Static<typeof DeploymentSchema>;

export const PromoteResult = Type.Object({
  deployment: DeploymentSchema,
  previous: Nullable(DeploymentSchema),
  changed: Type.Boolean({ description: 'false when exactly this artifact and configuration was already active (nothing recorded)' }),
});
export type PromoteResultJson = Static<typeof PromoteResult>;

export const DeploymentHistory = Type.Object({
  items: Type.Array(DeploymentSchema),
  nextCursor: Type.Optional(Type.String()),
  active: Type.Record(Type.String(), DeploymentSchema, { description: 'environment → its active deployment' }),
});
export type DeploymentHistoryJson = Static<typeof DeploymentHistory>;

export function deploymentJson(deployment: Deployment, active: boolean): DeploymentJson {
  return {
    id: deployment.id,
    applicationId: deployment.applicationId,
    environment: deployment.environment,
    number: deployment.number,
    versionId: deployment.versionId,
    version: deployment.version,
    buildId: deployment.buildId,
    variant: deployment.variant,
    artifact: { sha256: deployment.sha256, size: deployment.size },
    kind: deployment.kind,
    phases: deployment.phases,
    config: deployment.config,
    active,
    withdrawnAt: deployment.withdrawnAt ? deployment.withdrawnAt.toISOString() : null,
    createdAt: deployment.createdAt.toISOString(),
  };
}

export function requireEnvironment(allowed: readonly string[], environment: string): void {
  if (!allowed.includes(environment)) {
    throw badRequest('unknown_environment', `environment ${JSON.stringify(environment)} is not configured; use one of ${allowed.join(', ')} (operators add more with KILN_ENVIRONMENTS)`);
  }
}

interface PromoteRequest {
  ownerId: string;
  applicationId: string;
  versionId: string;
  environment: string;
  buildId?: string;
  variant?: 'optimized' | 'original';
}

/** The succeeded build to deploy: the one asked for, or the version's latest success. */
async function pickBuild(tx: Executor, ownerId: string, version: Version, buildId: string | undefined): Promise<Build> {
  const builds = new SqlBuildRepository(tx);
  if (buildId === undefined) {
    const latest = await builds.latestSucceeded(version.id);
    if (!latest) throw conflict('not_succeeded', `version ${version.version} has no successful build; only succeeded versions can be promoted (see GET /v1/builds?versionId=${version.id})`);
    return latest;
  }
  const build = await builds.get(ownerId, buildId);
  if (!build || build.versionId !== version.id) throw notFound('build', `${buildId} of version ${version.version}`);
  if (build.state !== 'succeeded') throw conflict('not_succeeded', `build ${build.id} is ${build.state}; only succeeded builds can be promoted`);
  return build;
}

/** Same default as GET …/artifact: the optimized binary when there is one. */
function pickArtifact(build: Build, requested: 'optimized' | 'original' | undefined): { variant: string; record: ArtifactRecord } {
  const variant = requested ?? (build.artifacts.optimized ? 'optimized' : 'original');
  const record = build.artifacts[variant];
  if (!record) throw conflict('no_artifact', `build ${build.id} has no ${variant} artifact`);
  return { variant, record };
}

/** Everything the edge will run, copied from the version and build now: later edits do not leak into production. */
function snapshot(request: PromoteRequest, version: Version, build: Build, artifact: { variant: string; record: ArtifactRecord }): NewDeployment {
  return {
    ownerId: request.ownerId,
    applicationId: request.applicationId,
    environment: request.environment,
    versionId: version.id,
    version: version.version,
    buildId: build.id,
    variant: artifact.variant,
    artifactKey: artifact.record.key,
    sha256: artifact.record.sha256,
    size: artifact.record.size,
    kind: build.kind ?? version.kind,
    phases: version.phases,
    config: version.config,
  };
}

function sameDeployment(current: Deployment, next: NewDeployment): boolean {
  return (
    current.versionId === next.versionId &&
    current.buildId === next.buildId &&
    current.variant === next.variant &&
    current.kind === next.kind &&
    current.config === next.config &&
    JSON.stringify(current.phases) === JSON.stringify(next.phases)
  );
}

/**
 * One transaction with the application row locked: the new row and the
 * active pointer change together, and concurrent promotions of the same
 * application are ordered (the later one wins and has the higher number).
 */
export async function promoteVersion(database: Database, request: PromoteRequest): Promise<{ deployment: Deployment; previous: Deployment | undefined; changed: boolean }> {
  return database.db.transaction(async (tx) => {
    const deployments = new SqlDeploymentRepository(tx);
    if (!(await deployments.lockApplication(request.ownerId, request.applicationId))) throw notFound('application', request.applicationId);
    const version = await new SqlVersionRepository(tx).get(request.ownerId, request.versionId);
    if (!version || version.applicationId !== request.applicationId) throw notFound('version', request.versionId);
    const build = await pickBuild(tx, request.ownerId, version, request.buildId);
    const next = snapshot(request, version, build, pickArtifact(build, request.variant));
    const current = await deployments.activeIn(request.ownerId, request.applicationId, request.environment);
    // Promoting what already runs is a no-op, so a retried CI step records nothing twice.
    if (current && sameDeployment(current, next)) return { deployment: current, previous: undefined, changed: false };
    return { deployment: await deployments.promote(next), previous: current, changed: true };
  });
}

/**
 * Deletes a version's rows unless it is live somewhere. With `force`, it is
 * first withdrawn from every environment where it is active (those
 * environments then run nothing for the application; edge servers remove
 * the file): its artifact is about to disappear, and an edge must never be
 * pointed at bytes that no longer exist. False when the version is gone.
 */
export async function deleteVersionUnlessDeployed(database: Database, version: Pick<Version, 'ownerId' | 'applicationId' | 'id' | 'version'>, force: boolean): Promise<boolean> {
  return database.db.transaction(async (tx) => {
    const deployments = new SqlDeploymentRepository(tx);
    if (!(await deployments.lockApplication(version.ownerId, version.applicationId))) return false;
    const live = await deployments.activeForVersion(version.ownerId, version.id);
    if (live.length > 0 && !force) {
      const where = live.map((deployment) => deployment.environment).join(', ');
      throw conflict('version_deployed', `version ${version.version} is active in ${where}; promote another version there first, or delete with ?force=true to withdraw it`);
    }
    await deployments.withdraw(
      version.ownerId,
      live.map((deployment) => deployment.id),
    );
    return new SqlVersionRepository(tx).delete(version.ownerId, version.id);
  });
}

export function deploymentRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const repository = new SqlDeploymentRepository(services.database.db);

    app.post(
      '/v1/applications/:applicationId/deployments',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['deployments'],
          summary: 'Promote a succeeded version to an environment (a rollback is the promotion of an earlier version)',
          description:
            'Records the exact artifact (build, variant, sha256) and the version’s kind, phases and config as they are now. `buildId` pins a specific succeeded build (default: the latest); `variant` defaults to optimized when there is one. Promoting what is already active answers 200 with `changed: false`.',
          params: AppParams,
          body: Type.Object(
            { versionId: Uuid, environment: EnvironmentName, buildId: Type.Optional(Uuid), variant: Type.Optional(Variant) },
            { additionalProperties: false },
          ),
          response: { 200: PromoteResult, 201: PromoteResult, ...errorResponses },
        },
      },
      async (request, reply) => {
        requireEnvironment(services.config.environments, request.body.environment);
        const result = await promoteVersion(services.database, { ownerId: ownerOf(request), applicationId: request.params.applicationId, ...request.body });
        request.log.info({ deploymentId: result.deployment.id, environment: result.deployment.environment, changed: result.changed }, 'promoted');
        return reply.status(result.changed ? 201 : 200).send({
          deployment: deploymentJson(result.deployment, true),
          previous: result.previous ? deploymentJson(result.previous, false) : null,
          changed: result.changed,
        });
      },
    );

    app.get(
      '/v1/applications/:applicationId/deployments',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['deployments'],
          summary: 'Deployment history, newest first, with the active deployment of every environment',
          params: AppParams,
          querystring: Type.Object(
            {
              environment: Type.Optional(EnvironmentName),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
              cursor: Type.Optional(Type.String({ maxLength: 200 })),
            },
            { additionalProperties: false },
          ),
          response: { 200: DeploymentHistory, ...errorResponses },
        },
      },
      async (request) => {
        const ownerId = ownerOf(request);
        const { applicationId } = request.params;
        if (!(await services.applications.get(ownerId, applicationId))) throw notFound('application', applicationId);
        const { environment, limit, cursor } = request.query;
        const page = await repository.history(ownerId, applicationId, { environment }, { limit: limit ?? 50, cursor });
        const live = await repository.activeForApplication(ownerId, applicationId);
        const liveIds = new Set(live.map((deployment) => deployment.id));
        return {
          items: page.items.map((deployment) => deploymentJson(deployment, liveIds.has(deployment.id))),
          nextCursor: page.nextCursor,
          active: Object.fromEntries(live.map((deployment) => [deployment.environment, deploymentJson(deployment, true)])),
        };
      },
    );
  };
}
