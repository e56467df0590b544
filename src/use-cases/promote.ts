import { conflict, notFound } from '../errors.ts';
import type { Database, Executor } from '../store/metadata/database.ts';
import { SqlBuildRepository, type Build } from '../store/metadata/repositories/builds.ts';
import { SqlDeploymentRepository, type Deployment, type NewDeployment } from '../store/metadata/repositories/deployments.ts';
import { SqlVersionRepository, type Version } from '../store/metadata/repositories/versions.ts';
import type { ArtifactRecord } from '../store/metadata/schema.ts';
import { defaultVariant, type VariantName } from './artifacts.ts';
import type { UseCaseContext } from './context.ts';
import { requireEnvironment } from './environments.ts';

/**
 * Promotion puts a succeeded version in an environment. A rollback is the
 * same operation with an earlier version (the CLI's `kiln rollback` picks it
 * from the history), so it has no use case of its own.
 */
export interface PromoteRequest {
  ownerId: string;
  applicationId: string;
  versionId: string;
  environment: string;
  buildId?: string;
  variant?: VariantName;
}

export interface PromoteResult {
  deployment: Deployment;
  previous: Deployment | undefined;
  /** False when exactly this artifact and configuration was already active (nothing recorded). */
  changed: boolean;
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

/** Same default as downloading the artifact: the optimized binary when there is one. */
function pickArtifact(build: Build, requested: VariantName | undefined): { variant: string; record: ArtifactRecord } {
  const variant = defaultVariant(build, requested);
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
export async function promoteVersion(database: Database, request: PromoteRequest): Promise<PromoteResult> {
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

/** Promotion into a configured environment (the route's entry point). */
export async function promote(context: Pick<UseCaseContext, 'config' | 'database'>, request: PromoteRequest): Promise<PromoteResult> {
  requireEnvironment(context.config.environments, request.environment);
  return promoteVersion(context.database, request);
}
