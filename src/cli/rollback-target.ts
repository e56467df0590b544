// Pure and type-only in its imports: the web UI rolls back by the same rule.
import type { Deployment } from '../api/types.ts';

/**
 * What a rollback promotes: in the environment's history (newest first),
 * the newest deployment older than the current one whose version differs
 * from it and still exists. The current one is the active deployment, or
 * the newest entry when the environment was emptied (its version deleted).
 * Like `cd -`, rolling back twice returns to where you started; `to` picks
 * an explicit version instead.
 */
export function rollbackTarget(history: readonly Deployment[], active: Deployment | undefined, to?: string): Deployment | undefined {
  if (to !== undefined) return history.find((deployment) => deployment.version === to && deployment.versionId !== null);
  const current = active ?? history[0];
  if (!current) return undefined;
  const older = history.filter((deployment) => deployment.number < current.number);
  return older.find((deployment) => deployment.versionId !== null && deployment.versionId !== current.versionId);
}
