import type { Command } from 'commander';
import { artifactLines, buildTimings, reportFailure, watchToEnd } from '../build-report.ts';
import { apiCommand, contextFor, type CommonFlags } from '../context.ts';
import { formatDuration } from '../output.ts';
import { stateText } from '../views.ts';
import { VERSION_REF_HELP } from './versions.ts';

interface RebuildFlags extends CommonFlags {
  wait: boolean;
  logs: boolean;
}

export function rebuildCommand(): Command {
  return apiCommand('rebuild', 'Build a version again from its stored source, and watch the build', [
    'kiln rebuild hello@1.0.0',
    'kiln rebuild 0b7e…-uuid --no-wait --json | jq -r .id',
  ], 'Exit status: 0 only when the build succeeded (with --no-wait: when it was queued).')
    .argument('<version>', VERSION_REF_HELP)
    .option('--no-wait', 'return once the build is queued')
    .option('--no-logs', 'do not stream the build log')
    .action(async (ref: string, flags: RebuildFlags) => {
      const { client, output } = contextFor(flags);
      const version = await client.resolveVersion(ref);
      const queued = await client.rebuild(version.id);
      if (!flags.wait) {
        if (output.json) return output.printJson(queued);
        return output.line(`Build #${queued.number} (${queued.id}) is ${stateText(output.out, queued.state)}. Follow it: kiln logs ${queued.id} --follow`);
      }
      output.note(`Rebuilding ${version.version} (${version.id}): build #${queued.number} ${queued.id}`);
      const build = await watchToEnd(client, output, queued, { logs: flags.logs });
      if (build.state !== 'succeeded') {
        process.exitCode = 1;
        const logTail = await reportFailure(client, output, build, flags.logs);
        if (output.json) output.printJson({ ...build, logTail });
        return;
      }
      if (output.json) return output.printJson(build);
      output.line();
      output.line(`${output.out.green('✔')} Build #${build.number} ${stateText(output.out, build.state)} in ${formatDuration(build.durationMs)}`);
      output.fields([...artifactLines(build).map((line, index): [string, string] => [index === 0 ? 'artifact' : '', line]), ...buildTimings(build)]);
    });
}
