import { Command } from 'commander';
import { BUILD_STATES, type Build, type BuildFilters, type BuildState } from '../api-client.ts';
import { apiCommand, choice, contextFor, examplesText, parsePositiveInteger, type CommonFlags } from '../context.ts';
import { buildColumns, showBuild } from '../views.ts';

export function buildsCommand(): Command {
  return new Command('builds')
    .description('List builds and show one (state, stages, timings, sizes, reason)')
    .addHelpText('after', examplesText(['kiln builds list --app hello --state failed', 'kiln builds show 5d0c…-uuid']))
    .addCommand(listCommand())
    .addCommand(showCommand());
}

interface ListFlags extends CommonFlags {
  app?: string;
  version?: string;
  state?: BuildState;
  limit?: number;
}

function listCommand(): Command {
  return apiCommand('list', 'List builds, newest first', [
    'kiln builds list',
    'kiln builds list --app hello --state failed',
    'kiln builds list --version hello@1.0.0 --json | jq -r ".[0].state"',
  ])
    .alias('ls')
    .option('--app <app>', 'only this application (name or id)')
    .option('--version <version>', 'only this version (id or app@version)')
    .option('--state <state>', `only builds in this state (${BUILD_STATES.join(', ')})`, choice(BUILD_STATES))
    .option('--limit <n>', 'show at most n (default 20)', parsePositiveInteger)
    .action(async (flags: ListFlags) => {
      const { client, output } = contextFor(flags);
      const filters: BuildFilters = { state: flags.state };
      if (flags.app !== undefined) filters.applicationId = (await client.resolveApplication(flags.app)).id;
      if (flags.version !== undefined) filters.versionId = (await client.resolveVersion(flags.version)).id;
      const builds: Build[] = [];
      for await (const build of client.paginate((page) => client.listBuilds(filters, page), flags.limit ?? 20)) builds.push(build);
      if (output.json) return output.printJson(builds);
      if (builds.length === 0 && output.stdoutIsTty) return output.line('No builds match.');
      output.table(builds, buildColumns(output));
    });
}

function showCommand(): Command {
  return apiCommand('show', 'Show a build: state, reason, stages with timings, artifacts with sizes and sha256', ['kiln builds show 5d0c…-uuid', 'kiln builds show 5d0c…-uuid --json | jq .artifacts'])
    .argument('<build>', 'build id')
    .action(async (id: string, flags: CommonFlags) => {
      const { client, output } = contextFor(flags);
      const build = await client.getBuild(id);
      if (output.json) return output.printJson(build);
      showBuild(output, build);
    });
}
