/**
 * The end of `kiln deploy` and `kiln rebuild`: watch the build to its end,
 * then say what came out — or, when it did not succeed, why, with the end
 * of the log, so the reader need not scroll back through a long build.
 */
import type { ApiClient, Build } from './api-client.ts';
import { followBuild } from './follow.ts';
import { formatBytes, formatDuration, type Output } from './output.ts';
import { logTail, stateText } from './views.ts';

export const TAIL_LINES = 30;

export interface WatchOptions {
  /** Stream the log live (false: only state notes). */
  logs: boolean;
}

export async function watchToEnd(client: ApiClient, output: Output, build: Build, options: WatchOptions): Promise<Build> {
  // With --json, stdout holds the one result document: the live log goes to stderr.
  const stream = output.json ? output.stderr : output.stdout;
  const writeLog = options.logs ? (text: string) => void stream.write(text) : () => undefined;
  const followed = await followBuild(client, output, build, { writeLog, notes: true });
  if (options.logs && !followed.endsWithNewline) stream.write('\n');
  return followed.build;
}

/** Sizes and digests of what the build produced, one line per variant. */
export function artifactLines(build: Build): string[] {
  const original = build.artifacts.original;
  return Object.entries(build.artifacts).map(([variant, artifact]) => {
    const saving = variant !== 'original' && original && original.size > 0 ? ` (${Math.round((1 - artifact.size / original.size) * 100)}% smaller)` : '';
    return `${variant.padEnd(9)} ${formatBytes(artifact.size)}${saving}  sha256 ${artifact.sha256}`;
  });
}

/** Queue wait, build time and each stage, from the build's own timestamps. */
export function buildTimings(build: Build): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  if (build.startedAt) rows.push(['waited', formatDuration(Date.parse(build.startedAt) - Date.parse(build.createdAt))]);
  const stages = build.stages.map((stage) => `${stage.name} ${formatDuration(stage.durationMs)}`).join(' · ');
  rows.push(['built in', `${formatDuration(build.durationMs)}${stages ? ` (${stages})` : ''}`]);
  return rows;
}

/** Facts the build recorded beyond the fixed fields (start-up measurements, warnings…). */
export function detailLines(build: Build): Array<[string, string]> {
  return Object.entries(build.details).map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value)]);
}

/** For a build that did not succeed: the reason and the end of its log (stdout: it is the result). */
export async function reportFailure(client: ApiClient, output: Output, build: Build): Promise<string> {
  const log = await client.getBuildLog(build.id).catch(() => '');
  const tail = logTail(log, TAIL_LINES);
  if (output.json) return tail;
  output.line();
  output.line(`${output.out.red('✖')} Build #${build.number} ${stateText(output.out, build.state)}${build.reason ? `: ${build.reason}` : ''}`);
  if (tail !== '') {
    output.line(output.out.dim(`── last ${Math.min(TAIL_LINES, tail.split('\n').length)} lines of the log (kiln logs ${build.id} shows all) ──`));
    output.line(tail);
  }
  output.line();
  output.line(hint(build));
  return tail;
}

function hint(build: Build): string {
  switch (build.state) {
    case 'failed':
      return 'Your code did not build: fix the error above and deploy a new version.';
    case 'crashed':
      return `The platform failed, not your code: retry with \`kiln rebuild ${build.versionId}\`.`;
    case 'cancelled':
      return `The build was cancelled; \`kiln rebuild ${build.versionId}\` starts it again.`;
    default:
      return `See \`kiln builds show ${build.id}\`.`;
  }
}
