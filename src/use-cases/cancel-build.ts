import { cancelBuild as cancelInQueue } from '../queue/cancel.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { UseCaseContext } from './context.ts';

/**
 * Cancels a queued or running build. A queued one ends now, so its log is
 * finalized here (no worker will); a running one stops at its worker's next
 * heartbeat. Either way log followers are woken to see the new state.
 */
export async function cancelBuild(context: Pick<UseCaseContext, 'database' | 'logs'>, ownerId: string, buildId: string): Promise<Build> {
  const build = await cancelInQueue(context.database, ownerId, buildId);
  if (build.state === 'cancelled') await context.logs.finalize(build.id);
  context.logs.touch(build.id);
  return build;
}
