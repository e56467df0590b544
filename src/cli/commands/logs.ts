import type { Command } from 'commander';
import type { Build } from '../api-client.ts';
import { apiCommand, contextFor, type CommandContext, type CommonFlags } from '../context.ts';
import { followBuild } from '../follow.ts';
import { stateText } from '../views.ts';

interface LogsFlags extends CommonFlags {
  follow?: boolean;
  exitStatus?: boolean;
}

export function logsCommand(): Command {
  return apiCommand('logs', "Print a build's log; with --follow, stream it live until the build ends", [
    'kiln logs 5d0c…-uuid',
    'kiln logs 5d0c…-uuid --follow',
    'kiln logs 5d0c…-uuid --follow --exit-status && echo built',
  ], 'With --json: {"id","state","log"}; with --follow --json, one JSON object per line as events arrive:\n{"event":"log","data":…}, {"event":"state","build":…}, then {"event":"end","build":…}.')
    .argument('<build>', 'build id')
    .option('-f, --follow', 'stream the log until the build ends')
    .option('--exit-status', 'exit 1 unless the build succeeded (with --follow: once it has ended)')
    .action(async (id: string, flags: LogsFlags) => {
      const context = contextFor(flags);
      const build = flags.follow ? await followLive(context, id) : await printOnce(context, id);
      if (flags.exitStatus && build.state !== 'succeeded') process.exitCode = 1;
    });
}

async function printOnce({ client, output }: CommandContext, id: string): Promise<Build> {
  const [build, log] = await Promise.all([client.getBuild(id), client.getBuildLog(id)]);
  if (output.json) output.printJson({ id: build.id, state: build.state, log });
  else output.stdout.write(log);
  return build;
}

async function followLive({ client, output }: CommandContext, id: string): Promise<Build> {
  const initial = await client.getBuild(id);
  if (output.json) {
    // One event per line, so a script can act on each as it arrives.
    const emit = (value: unknown) => output.stdout.write(`${JSON.stringify(value)}\n`);
    const build = await client.followBuild(id, { onLog: (data) => emit({ event: 'log', data }), onState: (state) => emit({ event: 'state', build: state }) });
    emit({ event: 'end', build });
    return build;
  }
  const { build, endsWithNewline } = await followBuild(client, output, initial, { writeLog: (text) => output.stdout.write(text), notes: true });
  if (!endsWithNewline) output.stdout.write('\n');
  output.note(`── build #${build.number} ${stateText(output.err, build.state)}${build.reason ? `: ${build.reason}` : ''}`);
  return build;
}
