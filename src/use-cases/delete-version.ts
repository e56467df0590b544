import { conflict, notFound } from '../errors.ts';
import type { Database } from '../store/metadata/database.ts';
import { SqlDeploymentRepository } from '../store/metadata/repositories/deployments.ts';
import { SqlVersionRepository, type Version } from '../store/metadata/repositories/versions.ts';
import { versionPrefix } from '../store/objects/keys.ts';
import type { UseCaseContext } from './context.ts';
import { requireVersion } from './lookups.ts';

type ObjectsContext = Pick<UseCaseContext, 'objects' | 'logger' | 'finishedBuilds'>;

/**
 * Removes everything a deleted version stored. Called after its rows are
 * gone: a failure here leaves orphans for the consistency check, never a row
 * pointing at nothing, so it is logged rather than thrown.
 */
export async function deleteVersionObjects(context: ObjectsContext, version: Pick<Version, 'ownerId' | 'id'>): Promise<void> {
  context.finishedBuilds.clear();
  try {
    await context.objects.deletePrefix(versionPrefix(version));
  } catch (error) {
    context.logger.warn({ err: error, versionId: version.id }, 'could not delete the objects of a deleted version; the consistency check will find them');
  }
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

/** A version with its builds and stored objects; edge servers run deployed artifacts, so that takes `force` (decision 0004). */
export async function deleteVersion(context: ObjectsContext & Pick<UseCaseContext, 'database' | 'versions'>, ownerId: string, versionId: string, force: boolean): Promise<void> {
  const version = await requireVersion(context, ownerId, versionId);
  if (!(await deleteVersionUnlessDeployed(context.database, version, force))) throw notFound('version', version.id);
  await deleteVersionObjects(context, version);
}
