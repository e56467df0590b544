import type { Command } from 'commander';
import { apiCommand, contextFor, type CommonFlags } from '../context.ts';
import { deploymentHistory, ENV_HELP, promoteVersion, reportPromotion, type Deployment } from './deployments.ts';

interface RollbackFlags extends CommonFlags {
  env: string;
  to?: string;
}

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

export function rollbackCommand(): Command {
  return apiCommand(
    'rollback',
    "Promote the previous distinct version in an environment's history again",
    ['kiln rollback hello --env production', 'kiln rollback hello --env production --to 1.0.0', 'kiln rollback hello --env staging --json'],
    'The earlier deployment’s exact artifact (same build and variant, same sha256) goes live again;\nthe rollback is recorded as a new deployment, so `kiln deployments <app>` shows it.',
  )
    .argument('<app>', 'application name or id')
    .requiredOption('-e, --env <environment>', ENV_HELP)
    .option('--to <version>', 'roll back to this version (semantic version) from the history, not the previous one')
    .action(async (ref: string, flags: RollbackFlags) => {
      const { client, output } = contextFor(flags);
      const app = await client.resolveApplication(ref);
      const { items, active } = await deploymentHistory(client, app.id, flags.env);
      const target = rollbackTarget(items, active[flags.env], flags.to);
      if (!target?.versionId) {
        const why = flags.to ? `version ${flags.to} was never deployed to ${flags.env} (or was deleted)` : `${flags.env} has no earlier version to go back to`;
        throw new Error(`cannot roll back ${app.name}: ${why}; \`kiln deployments ${app.name} --env ${flags.env}\` shows the history`);
      }
      const result = await promoteVersion(client, app.id, { versionId: target.versionId, environment: flags.env, buildId: target.buildId, variant: target.variant });
      reportPromotion(output, app.name, result, 'Rolled back');
    });
}
