import { Option, type Command } from 'commander';
import { apiCommand, contextFor, type CommonFlags } from '../context.ts';
import { ENV_HELP, promoteVersion, reportPromotion } from './deployments.ts';
import { VERSION_REF_HELP } from './versions.ts';

interface PromoteFlags extends CommonFlags {
  env: string;
  build?: string;
  variant?: 'optimized' | 'original';
}

export function promoteCommand(): Command {
  return apiCommand(
    'promote',
    'Promote a succeeded version to an environment; edge servers pick it up on their next sync',
    ['kiln promote hello@1.2.0 --env staging', 'kiln promote hello@1.2.0 --env production --json', 'kiln promote 0b7e…-uuid --env production --variant original'],
    'The deployment records the exact artifact (build, variant, sha256) and the version’s config as they are now.\nPromoting what is already active changes nothing. To go back, see kiln rollback.',
  )
    .argument('<version>', VERSION_REF_HELP)
    .requiredOption('-e, --env <environment>', ENV_HELP)
    .option('--build <id>', 'a specific succeeded build of the version (default: its latest successful build)')
    .addOption(new Option('--variant <variant>', 'optimized (default when there is one) or original').choices(['optimized', 'original']))
    .action(async (ref: string, flags: PromoteFlags) => {
      const { client, output } = contextFor(flags);
      const version = await client.resolveVersion(ref);
      const app = await client.getApplication(version.applicationId);
      const result = await promoteVersion(client, app.id, { versionId: version.id, environment: flags.env, buildId: flags.build, variant: flags.variant });
      reportPromotion(output, app.name, result, 'Promoted');
    });
}
