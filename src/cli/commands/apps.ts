import { Command } from 'commander';
import type { Application } from '../api-client.ts';
import { apiCommand, contextFor, examplesText, parsePositiveInteger, type CommonFlags } from '../context.ts';
import { canPrompt, confirm } from '../prompt.ts';
import { applicationColumns, showApplication, versionColumns } from '../views.ts';

export function appsCommand(): Command {
  return new Command('apps')
    .description('Create, list, show, update and delete applications')
    .addHelpText('after', examplesText(['kiln apps create hello --notes "my first filter"', 'kiln apps list', 'kiln apps show hello', 'kiln apps delete hello --yes']))
    .addCommand(createCommand())
    .addCommand(listCommand())
    .addCommand(showCommand())
    .addCommand(updateCommand())
    .addCommand(deleteCommand());
}

function createCommand(): Command {
  return apiCommand('create', 'Create an application', ['kiln apps create hello', 'kiln apps create hello --notes "adds x-kiln to responses" --json'])
    .argument('<name>', 'lower-case letters, digits and dashes')
    .option('--notes <text>', 'free text')
    .action(async (name: string, flags: CommonFlags & { notes?: string }) => {
      const { client, output } = contextFor(flags);
      const app = await client.createApplication({ name, notes: flags.notes });
      if (output.json) return output.printJson(app);
      output.line(`Created application ${output.out.bold(app.name)} (${app.id}).`);
      output.line(`Deploy to it with: kiln deploy ./${app.name} --app ${app.name}`);
    });
}

function listCommand(): Command {
  return apiCommand('list', 'List your applications, newest first', ['kiln apps list', 'kiln apps list --json | jq -r ".[].name"'])
    .alias('ls')
    .option('--limit <n>', 'show at most n', parsePositiveInteger)
    .action(async (flags: CommonFlags & { limit?: number }) => {
      const { client, output } = contextFor(flags);
      const apps: Application[] = [];
      for await (const app of client.paginate((page) => client.listApplications(page), flags.limit)) apps.push(app);
      if (output.json) return output.printJson(apps);
      if (apps.length === 0 && output.stdoutIsTty) return output.line('No applications yet: create one with `kiln apps create <name>` or `kiln deploy`.');
      output.table(apps, applicationColumns(output));
    });
}

function showCommand(): Command {
  return apiCommand('show', 'Show an application and its latest versions', ['kiln apps show hello', 'kiln apps show 3f1c…-uuid --json'])
    .argument('<app>', 'application name or id')
    .action(async (ref: string, flags: CommonFlags) => {
      const { client, output } = contextFor(flags);
      const app = await client.resolveApplication(ref);
      if (output.json) return output.printJson(app);
      showApplication(output, app);
      const versions = await client.listVersions(app.id, { limit: 10 });
      output.line();
      if (versions.items.length === 0) return output.line('No versions yet: kiln deploy <dir> --app ' + app.name);
      output.line(output.out.bold(`Latest versions${versions.nextCursor ? ' (kiln versions list shows all)' : ''}:`));
      output.table(versions.items, versionColumns(output));
    });
}

function updateCommand(): Command {
  return apiCommand('update', 'Rename an application or change its notes', ['kiln apps update hello --name hello-filter', 'kiln apps update hello --notes ""'])
    .argument('<app>', 'application name or id')
    .option('--name <name>', 'the new name')
    .option('--notes <text>', 'the new notes ("" clears them)')
    .action(async (ref: string, flags: CommonFlags & { name?: string; notes?: string }) => {
      if (flags.name === undefined && flags.notes === undefined) throw new Error('nothing to update: pass --name and/or --notes');
      const { client, output } = contextFor(flags);
      const app = await client.resolveApplication(ref);
      const updated = await client.updateApplication(app.id, { name: flags.name, notes: flags.notes });
      if (output.json) return output.printJson(updated);
      output.line(`Updated application ${updated.name} (${updated.id}).`);
    });
}

function deleteCommand(): Command {
  return apiCommand('delete', 'Delete an application with all its versions, builds and stored files', ['kiln apps delete hello', 'kiln apps delete hello --yes'])
    .alias('rm')
    .argument('<app>', 'application name or id')
    .option('-y, --yes', 'do not ask for confirmation (needed without a terminal)')
    .action(async (ref: string, flags: CommonFlags & { yes?: boolean }) => {
      const { client, output } = contextFor(flags);
      const app = await client.resolveApplication(ref);
      await confirmDeletion(`Delete application ${app.name} with every version, build, artifact and log?`, flags.yes);
      await client.deleteApplication(app.id);
      if (output.json) return output.printJson({ deleted: true, id: app.id, name: app.name });
      output.line(`Deleted application ${app.name} (${app.id}).`);
    });
}

/** Destructive commands ask on a terminal and need --yes elsewhere. */
export async function confirmDeletion(question: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  if (!canPrompt()) throw new Error(`${question.replace(/\?$/, '')}: this cannot be undone; pass --yes to confirm`);
  if (!(await confirm(question, false))) throw new Error('cancelled: nothing was deleted');
}
