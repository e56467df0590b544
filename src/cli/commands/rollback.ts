import type { Command } from 'commander';
import { apiCommand, contextFor, type CommonFlags } from '../context.ts';
import { deploymentHistory, ENV_HELP, promoteVersion, reportPromotion } from './deployments.ts';
import { rollbackTarget } from '../rollback-target.ts';

export { rollbackTarget };

interface RollbackFlags extends CommonFlags {
  env: string;
  to?: string;
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
