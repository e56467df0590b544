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

/** Sizes and digests of what the build produced, one line per variant; the served one is marked. */
export function artifactLines(build: Build): string[] {
  const original = build.artifacts.original;
  const served = build.artifacts.optimized ? 'optimized' : 'original';
  return Object.entries(build.artifacts).map(([variant, artifact]) => {
    const saving = variant !== 'original' && original && original.size > 0 ? ` (${Math.round((1 - artifact.size / original.size) * 100)}% smaller)` : '';
    const mark = variant === served && Object.keys(build.artifacts).length > 1 ? '  ← served' : '';
    return `${variant.padEnd(9)} ${formatBytes(artifact.size)}${saving}  sha256 ${artifact.sha256}${mark}`;
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

/**
 * Facts the build recorded beyond the fixed fields, in words where the shape
 * is known (cache, optimization steps, start-up per variant); anything else
 * as compact JSON. The details are free-form on the API side, so every
 * field is checked before it is used.
 */
export function detailLines(build: Build): Array<[string, string]> {
  return Object.entries(build.details).map(([key, value]): [string, string] => {
    const described = key === 'cache' ? cacheText(value) : key === 'optimize' ? optimizeText(value) : key === 'variants' ? startupText(value) : undefined;
    return [key === 'variants' ? 'start-up' : key, described ?? compactJson(value)];
  });
}

type Loose = Record<string, unknown>;
const isObject = (value: unknown): value is Loose => typeof value === 'object' && value !== null && !Array.isArray(value);
const num = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);
const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

function compactJson(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
}

function cacheText(value: unknown): string | undefined {
  if (!isObject(value) || typeof value.hit !== 'boolean') return undefined;
  const bytes = num(value.bytes);
  if (value.hit) return `dependency cache hit${bytes !== undefined ? ` (${formatBytes(bytes)})` : ''}`;
  return `dependency cache miss${value.saved === true && bytes !== undefined ? `; saved ${formatBytes(bytes)} for the next build` : ''}`;
}

function optimizeText(value: unknown): string | undefined {
  if (!isObject(value) || !Array.isArray(value.steps)) return undefined;
  const steps = value.steps.filter(isObject).map((step) => {
    const name = str(step.name) ?? '?';
    const status = str(step.status) ?? '?';
    const before = num(step.bytesBefore);
    const after = num(step.bytesAfter);
    if (status === 'applied' && before !== undefined && after !== undefined) return `${name} ${formatBytes(before)} → ${formatBytes(after)}`;
    return `${name} ${status}${str(step.reason) ? ` (${str(step.reason)})` : ''}`;
  });
  const served = str(value.served);
  return `${steps.join(' · ')}${served ? `; serving ${served}` : ''}`;
}

/** Start-up (compile + instantiate + first call) of each variant, and the speed-up. */
function startupText(value: unknown): string | undefined {
  if (!isObject(value)) return undefined;
  const totals = Object.entries(value).flatMap(([variant, data]) => {
    const total = isObject(data) && isObject(data.startup) ? num(data.startup.totalMs) : undefined;
    return total === undefined ? [] : [[variant, total] as const];
  });
  if (totals.length === 0) return undefined;
  const text = totals.map(([variant, total]) => `${variant} ${formatDuration(total)}`).join(' · ');
  const original = totals.find(([variant]) => variant === 'original')?.[1];
  const optimized = totals.find(([variant]) => variant === 'optimized')?.[1];
  const speedup = original !== undefined && optimized !== undefined && optimized > 0 ? ` (${(original / optimized).toFixed(1)}× faster)` : '';
  return `${text}${speedup}`;
}

/**
 * For a build that did not succeed: the reason and the end of its log
 * (stdout: it is the result). When the whole log was just streamed above and
 * fits in the tail, it is not repeated: the reader sees it already.
 */
export async function reportFailure(client: ApiClient, output: Output, build: Build, streamed: boolean): Promise<string> {
  const log = await client.getBuildLog(build.id).catch(() => '');
  const tail = logTail(log, TAIL_LINES);
  if (output.json) return tail;
  const lines = log.replace(/\n+$/, '').split('\n').length;
  output.line();
  output.line(`${output.out.red('✖')} Build #${build.number} ${stateText(output.out, build.state)}${build.reason ? `: ${build.reason}` : ''}`);
  if (tail !== '' && !(streamed && lines <= TAIL_LINES)) {
    output.line(output.out.dim(`── last ${Math.min(TAIL_LINES, lines)} lines of the log (kiln logs ${build.id} shows all) ──`));
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
