import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import type { Version, VersionPatch } from '../api-client.ts';
import { apiCommand, contextFor, examplesText, parsePositiveInteger, type CommonFlags } from '../context.ts';
import { checkPhase, PHASES, type Phase } from '../project.ts';
import { buildColumns, showVersion, versionColumns } from '../views.ts';
import { confirmDeletion } from './apps.ts';

export const VERSION_REF_HELP = 'version id, or app@version (e.g. hello@1.0.0)';

export function versionsCommand(): Command {
  return new Command('versions')
    .description('List, show, update and delete versions (create them with kiln deploy)')
    .addHelpText('after', examplesText(['kiln versions list hello', 'kiln versions show hello@1.0.0', 'kiln versions update hello@1.0.0 --notes "canary"', 'kiln versions delete hello@1.0.0 --yes']))
    .addCommand(listCommand())
    .addCommand(showCommand())
    .addCommand(updateCommand())
    .addCommand(deleteCommand());
}

function listCommand(): Command {
  return apiCommand('list', "List an application's versions, newest first", ['kiln versions list hello', 'kiln versions list hello --json | jq -r ".[].version"'])
    .alias('ls')
    .argument('<app>', 'application name or id')
    .option('--limit <n>', 'show at most n', parsePositiveInteger)
    .action(async (ref: string, flags: CommonFlags & { limit?: number }) => {
      const { client, output } = contextFor(flags);
      const app = await client.resolveApplication(ref);
      const versions: Version[] = [];
      for await (const version of client.paginate((page) => client.listVersions(app.id, page), flags.limit)) versions.push(version);
      if (output.json) return output.printJson(versions);
      if (versions.length === 0 && output.stdoutIsTty) return output.line(`${app.name} has no versions yet: kiln deploy <dir> --app ${app.name}`);
      output.table(versions, versionColumns(output));
    });
}

function showCommand(): Command {
  return apiCommand('show', 'Show a version and its builds', ['kiln versions show hello@1.0.0', 'kiln versions show 0b7e…-uuid --json'])
    .argument('<version>', VERSION_REF_HELP)
    .action(async (ref: string, flags: CommonFlags) => {
      const { client, output } = contextFor(flags);
      const version = await client.resolveVersion(ref);
      if (output.json) return output.printJson(version);
      showVersion(output, version);
      const builds = await client.listBuilds({ versionId: version.id }, { limit: 10 });
      output.line();
      output.line(output.out.bold('Builds:'));
      output.table(builds.items, buildColumns(output));
    });
}

interface UpdateFlags extends CommonFlags {
  version?: string;
  notes?: string;
  phases?: string;
  config?: string;
  configFile?: string;
}

function updateCommand(): Command {
  return apiCommand('update', "Change a version's semantic version, phases, filter configuration or notes", [
    'kiln versions update hello@1.0.0 --version 1.0.1',
    'kiln versions update hello@1.0.0 --phases request_headers,response_headers',
    'kiln versions update hello@1.0.0 --config-file filter.json',
  ])
    .argument('<version>', VERSION_REF_HELP)
    .option('--version <semver>', 'the new semantic version')
    .option('--notes <text>', 'the new notes')
    .option('--phases <list>', `comma-separated proxy-wasm phases (${PHASES.join(', ')}); "" for none`)
    .option('--config <text>', 'the configuration handed to the filter')
    .option('--config-file <file>', 'read the configuration from a file')
    .action(async (ref: string, flags: UpdateFlags) => {
      const patch = await patchFrom(flags);
      const { client, output } = contextFor(flags);
      const version = await client.resolveVersion(ref);
      const updated = await client.updateVersion(version.id, patch);
      if (output.json) return output.printJson(updated);
      output.line(`Updated version ${updated.version} (${updated.id}).`);
    });
}

async function patchFrom(flags: UpdateFlags): Promise<VersionPatch> {
  if (flags.config !== undefined && flags.configFile !== undefined) throw new Error('pass --config or --config-file, not both');
  const patch: VersionPatch = {};
  if (flags.version !== undefined) patch.version = flags.version;
  if (flags.notes !== undefined) patch.notes = flags.notes;
  if (flags.phases !== undefined) patch.phases = parsePhases(flags.phases);
  if (flags.config !== undefined) patch.config = flags.config;
  if (flags.configFile !== undefined) patch.config = await readFile(flags.configFile, 'utf8');
  if (Object.keys(patch).length === 0) throw new Error('nothing to update: pass --version, --notes, --phases, --config or --config-file');
  return patch;
}

export function parsePhases(list: string): Phase[] {
  return list
    .split(',')
    .map((phase) => phase.trim())
    .filter((phase) => phase !== '')
    .map((phase) => checkPhase(phase, '--phases'));
}

function deleteCommand(): Command {
  return apiCommand('delete', 'Delete a version with its builds, artifacts and logs', ['kiln versions delete hello@1.0.0', 'kiln versions delete 0b7e…-uuid --yes'])
    .alias('rm')
    .argument('<version>', VERSION_REF_HELP)
    .option('-y, --yes', 'do not ask for confirmation (needed without a terminal)')
    .action(async (ref: string, flags: CommonFlags & { yes?: boolean }) => {
      const { client, output } = contextFor(flags);
      const version = await client.resolveVersion(ref);
      await confirmDeletion(`Delete version ${version.version} (${version.id}) with its builds, artifacts and logs?`, flags.yes);
      await client.deleteVersion(version.id);
      if (output.json) return output.printJson({ deleted: true, id: version.id, version: version.version });
      output.line(`Deleted version ${version.version} (${version.id}).`);
    });
}
