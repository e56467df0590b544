import { conflict, notFound } from '../errors.ts';
import { SqlApplicationRepository } from '../store/metadata/repositories/applications.ts';
import { SqlDeploymentRepository } from '../store/metadata/repositories/deployments.ts';
import type { UseCaseContext } from './context.ts';
import { deleteVersionObjects } from './delete-version.ts';

/**
 * An application with all its versions, builds and stored objects. Refused
 * while one of its versions is active in an environment unless `force`.
 */
export async function deleteApplication(
  context: Pick<UseCaseContext, 'database' | 'versions' | 'objects' | 'logger' | 'finishedBuilds' | 'knownApplications'>,
  ownerId: string,
  applicationId: string,
  force: boolean,
): Promise<void> {
  const versions = await context.versions.listAllForApplication(ownerId, applicationId);
  // Rows go first (one cascade), objects after: a failure in between
  // leaves orphaned objects for the consistency check, never a row
  // that points at nothing.
  const deleted = await context.database.db.transaction(async (tx) => {
    const deployments = new SqlDeploymentRepository(tx);
    if (!(await deployments.lockApplication(ownerId, applicationId))) return false;
    const live = await deployments.activeForApplication(ownerId, applicationId);
    if (live.length > 0 && !force) {
      const where = [...new Set(live.map((deployment) => deployment.environment))].join(', ');
      throw conflict('application_deployed', `this application is active in ${where}; delete with ?force=true to withdraw it from the edge too`);
    }
    return new SqlApplicationRepository(tx).delete(ownerId, applicationId);
  });
  if (!deleted) throw notFound('application', applicationId);
  context.knownApplications.forget(ownerId, applicationId);
  await Promise.all(versions.map((version) => deleteVersionObjects(context, version)));
}
