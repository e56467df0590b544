import type { Command } from 'commander';
import { apiCommand, contextFor, type CommonFlags } from '../context.ts';
import { stateText } from '../views.ts';

export function cancelCommand(): Command {
  return apiCommand('cancel', 'Cancel a queued or running build', ['kiln cancel 5d0c…-uuid', 'kiln cancel 5d0c…-uuid --json'])
    .argument('<build>', 'build id')
    .action(async (id: string, flags: CommonFlags) => {
      const { client, output } = contextFor(flags);
      const build = await client.cancelBuild(id);
      if (output.json) return output.printJson(build);
      // A running build stops when its worker next checks in (within about a second).
      if (build.state === 'cancelled') output.line(`Build #${build.number} (${build.id}) is ${stateText(output.out, build.state)}.`);
      else output.line(`Cancel requested for build #${build.number} (${build.id}); it stops within seconds. Watch it: kiln logs ${build.id} --follow`);
    });
}
