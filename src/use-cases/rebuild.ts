import { conflict } from '../errors.ts';
import { enqueueBuild } from '../queue/enqueue.ts';
import { SqlBuildRepository, type Build } from '../store/metadata/repositories/builds.ts';
import type { UseCaseContext } from './context.ts';
import { requireVersion } from './lookups.ts';

/**
 * A new build of a version's stored source. At most one queued or running
 * build per version: the check and the insert share a transaction.
 */
export async function rebuildVersion(context: Pick<UseCaseContext, 'config' | 'database' | 'versions'>, ownerId: string, versionId: string): Promise<Build> {
  const version = await requireVersion(context, ownerId, versionId);
  return context.database.db.transaction(async (tx) => {
    const builds = new SqlBuildRepository(tx);
    if (await builds.hasActiveBuild(version.id)) throw conflict('build_active', `version ${version.id} already has a queued or running build; cancel it first or wait`);
    const created = await builds.createQueued({ ownerId: version.ownerId, applicationId: version.applicationId, versionId: version.id });
    await enqueueBuild(tx, created.id, context.config.queue.maxAttempts);
    return created;
  });
}
