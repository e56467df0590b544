import { notFound, PlatformError } from '../errors.ts';
import { artifactPath, type Manifest, type ManifestEntry } from '../edge/manifest.ts';
import { SqlDeploymentRepository, SqlEdgeTokenRepository, type Deployment, type ManifestRow } from '../store/metadata/repositories/deployments.ts';
import type { UseCaseContext } from './context.ts';
import { requireEnvironment } from './environments.ts';

/**
 * What an edge server reads: the manifest of an environment and the
 * artifacts it lists, limited to the owners the edge token's scope names,
 * and only ever artifacts, never sources.
 */
type EdgeContext = Pick<UseCaseContext, 'config' | 'database'>;

function manifestEntry(row: ManifestRow): ManifestEntry {
  const { deployment } = row;
  // Deletion withdraws a version first, so an active deployment always has one.
  if (!deployment.versionId) throw new PlatformError('deployment_without_version', `active deployment ${deployment.id} has no version`, { kind: 'internal' });
  return {
    applicationId: deployment.applicationId,
    application: row.applicationName,
    ownerId: deployment.ownerId,
    owner: row.ownerName,
    deploymentId: deployment.id,
    versionId: deployment.versionId,
    version: deployment.version,
    buildId: deployment.buildId,
    variant: deployment.variant,
    sha256: deployment.sha256,
    size: deployment.size,
    kind: deployment.kind,
    phases: deployment.phases,
    config: deployment.config,
    deployedAt: deployment.createdAt.toISOString(),
    url: artifactPath(deployment.sha256),
  };
}

export async function readEdgeManifest(context: EdgeContext, edgeTokenId: string, environment: string): Promise<Manifest> {
  requireEnvironment(context.config.environments, environment);
  const scope = await new SqlEdgeTokenRepository(context.database.db).scopeOf(edgeTokenId);
  const rows = await new SqlDeploymentRepository(context.database.db).manifest(environment, scope);
  return { environment, applications: rows.map(manifestEntry) };
}

/** The active deployment whose artifact has this hash, if the token may read it. */
export async function findEdgeArtifact(context: Pick<UseCaseContext, 'database'>, edgeTokenId: string, sha256: string): Promise<Deployment> {
  const scope = await new SqlEdgeTokenRepository(context.database.db).scopeOf(edgeTokenId);
  const deployment = await new SqlDeploymentRepository(context.database.db).findVisibleArtifact(sha256, scope);
  // Not active, or another owner's: the same 404, so a token cannot probe hashes.
  if (!deployment) throw notFound('active artifact', sha256);
  return deployment;
}
