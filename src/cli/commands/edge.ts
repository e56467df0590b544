import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { Manifest } from '../../edge/manifest.ts';
import { runSync, type SyncEvent, type SyncReport } from '../../edge/sync.ts';
import type { ApiClient } from '../api-client.ts';
import { apiCommand, contextFor, examplesText, type CommonFlags } from '../context.ts';
import { formatBytes, formatDuration, type Output } from '../output.ts';

export function edgeCommand(): Command {
  return new Command('edge')
    .description('Feed edge servers: mirror an environment into a directory; manage edge tokens (operators)')
    .addHelpText(
      'after',
      examplesText([
        'kiln edge sync --environment production --dir /var/lib/kiln/production --watch --reload "nginx -s reload"',
        'kiln edge manifest --environment staging',
        'kiln edge token create nginx-eu --token "$KILN_ADMIN_TOKEN"',
      ]),
    )
    .addCommand(syncCommand())
    .addCommand(manifestCommand())
    .addCommand(tokenCommand());
}

interface SyncFlags extends CommonFlags {
  environment: string;
  dir: string;
  watch?: boolean;
  interval: number;
  reload?: string;
  retries: number;
  verify?: boolean;
}

function parseSeconds(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0.1 || parsed > 86_400) throw new InvalidArgumentError('expected a number of seconds between 0.1 and 86400');
  return parsed;
}

function parseCount(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new InvalidArgumentError('expected a whole number of at least 0');
  return parsed;
}

function syncCommand(): Command {
  return apiCommand(
    'sync',
    "Mirror an environment's active artifacts into a directory, verified by sha256 and written atomically",
    [
      'kiln edge sync --environment production --dir /var/lib/kiln/production',
      'kiln edge sync -e production --dir ./wasm --watch --interval 5 --reload "nginx -s reload"',
      'KILN_URL=https://kiln.example.com KILN_TOKEN=kiln_edg_… kiln edge sync -e staging --dir /srv/wasm --json',
    ],
    `Needs an edge token (--token or KILN_TOKEN). Files are named <owner>.<application>.wasm;
index.json beside them describes each one (version, sha256, kind, phases, config) and is
written last. A download whose bytes do not match the manifest is rejected and the old
file kept; applications withdrawn from the environment are removed. --reload runs through
sh after any change, with KILN_EDGE_DIR, KILN_EDGE_ENVIRONMENT and KILN_EDGE_CHANGED set.
Without --watch, an unreachable API is retried with backoff (--retries), and the exit
status is 0 only when the directory matches the manifest. With --json: the report on
stdout (one JSON event per line with --watch).`,
  )
    .requiredOption('-e, --environment <name>', 'the environment to mirror (e.g. production)')
    .requiredOption('--dir <dir>', 'the directory the edge server loads artifacts from (created if missing)')
    .option('--watch', 'keep polling (the ETag makes an unchanged poll cheap) until interrupted')
    .option('--interval <seconds>', 'seconds between polls with --watch', parseSeconds, 10)
    .option('--reload <command>', 'shell command to run after a sync that changed files')
    .option('--retries <n>', 'without --watch: attempts after the first when the API is unreachable or a download fails', parseCount, 5)
    .option('--verify', 'check every file by sha256 on start, not only those whose size or mtime changed')
    .action(async (flags: SyncFlags) => {
      const { client, output } = contextFor(flags);
      if (!client.config.token) throw new Error('kiln edge sync needs an edge token: pass --token or set KILN_TOKEN (an operator creates one with `kiln edge token create`)');
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const report = await runSync({
          url: client.url,
          token: client.config.token,
          environment: flags.environment,
          dir: path.resolve(flags.dir),
          watch: flags.watch,
          intervalMs: flags.interval * 1000,
          reload: flags.reload,
          retries: flags.retries,
          verify: flags.verify,
          signal: controller.signal,
          onEvent: (event) => showEvent(output, flags, event),
        });
        if (output.json && !flags.watch && report) output.printJson(report);
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}

function showEvent(output: Output, flags: SyncFlags, event: SyncEvent): void {
  if (output.json) {
    if (flags.watch) output.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`);
    return;
  }
  switch (event.type) {
    case 'synced':
      return output.note(describeReport(flags.dir, event.report));
    case 'retrying':
      return output.warn(`${event.error}; trying again in ${formatDuration(event.delayMs)} (attempt ${event.attempt})`);
    case 'reloaded':
      return output.note(`reloaded: ${event.command} (${formatDuration(event.durationMs)})`);
  }
}

function describeReport(dir: string, report: SyncReport): string {
  if (report.unchanged) return `${report.environment}: unchanged (${report.files} file${report.files === 1 ? '' : 's'} in ${dir})`;
  const parts = [`${report.written.length} written${report.written.length ? ` (${report.written.join(', ')})` : ''}`, `${report.removed.length} removed${report.removed.length ? ` (${report.removed.join(', ')})` : ''}`];
  if (report.failed.length > 0) parts.push(`${report.failed.length} failed, old files kept`);
  return `${report.environment}: ${parts.join(', ')}; ${report.files} file${report.files === 1 ? '' : 's'} in ${dir}`;
}

function manifestCommand(): Command {
  return apiCommand('manifest', 'Print what an environment runs, as an edge server sees it (edge token)', [
    'kiln edge manifest --environment production',
    'kiln edge manifest -e staging --json | jq -r ".applications[].sha256"',
  ])
    .requiredOption('-e, --environment <name>', 'the environment')
    .action(async (flags: CommonFlags & { environment: string }) => {
      const { client, output } = contextFor(flags);
      const manifest = await client.json<Manifest>('GET', '/v1/edge/manifest', { query: { environment: flags.environment } });
      if (output.json) return output.printJson(manifest);
      if (manifest.applications.length === 0 && output.stdoutIsTty) return output.line(`Nothing is active in ${manifest.environment}.`);
      output.table(manifest.applications, [
        { header: 'OWNER', value: (entry) => entry.owner },
        { header: 'APPLICATION', value: (entry) => entry.application },
        { header: 'VERSION', value: (entry) => entry.version },
        { header: 'KIND', value: (entry) => entry.kind ?? '-' },
        { header: 'SIZE', value: (entry) => formatBytes(entry.size) },
        { header: 'SHA256', value: (entry) => entry.sha256 },
      ]);
    });
}

interface EdgeTokenInfo {
  id: string;
  name: string;
  allOwners: boolean;
  owners: string[];
  createdAt: string;
  revokedAt: string | null;
}

const scopeText = (info: EdgeTokenInfo): string => (info.allOwners ? 'all owners' : info.owners.join(', '));

function tokenCommand(): Command {
  return new Command('token')
    .description('Create, list and revoke edge tokens (admin token)')
    .addHelpText('after', examplesText(['kiln edge token create nginx-eu', 'kiln edge token create tenant-a --owner 6f1c…-uuid', 'kiln edge token list', 'kiln edge token revoke 0d3e…-uuid']))
    .addCommand(
      apiCommand('create', 'Create an edge token (read-only: manifests and artifacts); its value is printed once', ['kiln edge token create nginx-eu', 'kiln edge token create tenant-a --owner 6f1c…-uuid --owner 9a2b…-uuid --json'])
        .argument('<name>', 'what it is for, e.g. the edge site')
        .option('--owner <id>', 'limit it to this owner (repeatable; default: every owner)', (value: string, previous: string[] = []) => [...previous, value])
        .action(async (name: string, flags: CommonFlags & { owner?: string[] }) => {
          const { client, output } = contextFor(flags);
          const created = await client.json<{ token: string; info: EdgeTokenInfo }>('POST', '/v1/edge-tokens', { json: { name, owners: flags.owner } });
          if (output.json) return output.printJson(created);
          output.note(`Created edge token ${created.info.name} (${created.info.id}) for ${scopeText(created.info)}. It is shown only now:`);
          output.line(created.token);
        }),
    )
    .addCommand(
      apiCommand('list', 'List edge tokens and what they may read', ['kiln edge token list', 'kiln edge token list --json'])
        .alias('ls')
        .action(async (flags: CommonFlags) => {
          const { client, output } = contextFor(flags);
          const { items } = await client.json<{ items: EdgeTokenInfo[] }>('GET', '/v1/edge-tokens');
          if (output.json) return output.printJson(items);
          output.table(items, [
            { header: 'ID', value: (info) => info.id },
            { header: 'NAME', value: (info) => info.name },
            { header: 'SCOPE', value: scopeText },
            { header: 'CREATED', value: (info) => output.time(info.createdAt) },
            { header: 'REVOKED', value: (info) => (info.revokedAt ? output.time(info.revokedAt) : '-') },
          ]);
        }),
    )
    .addCommand(
      apiCommand('revoke', 'Revoke an edge token', ['kiln edge token revoke 0d3e…-uuid'])
        .argument('<id>', 'the token id (kiln edge token list)')
        .action(async (id: string, flags: CommonFlags) => {
          const { client, output } = contextFor(flags);
          await revokeEdgeToken(client, id);
          if (output.json) return output.printJson({ revoked: true, id });
          output.line(`Revoked edge token ${id}.`);
        }),
    );
}

async function revokeEdgeToken(client: ApiClient, id: string): Promise<void> {
  await client.send('DELETE', `/v1/edge-tokens/${encodeURIComponent(id)}`);
}
