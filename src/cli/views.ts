/** How applications, versions and builds look in a terminal (shared by commands). */
import type { Application, Build, BuildState, Version } from './api-client.ts';
import { artifactLines, detailLines } from './build-report.ts';
import { formatBytes, formatDuration, type Column, type Output, type Palette } from './output.ts';

export function stateText(palette: Palette, state: BuildState): string {
  switch (state) {
    case 'succeeded':
      return palette.green(state);
    case 'failed':
    case 'crashed':
      return palette.red(state);
    case 'cancelled':
      return palette.yellow(state);
    case 'queued':
    case 'running':
      return palette.cyan(state);
  }
}

export const applicationColumns = (output: Output): Column<Application>[] => [
  { header: 'ID', value: (app) => app.id },
  { header: 'NAME', value: (app) => app.name },
  { header: 'CREATED', value: (app) => output.time(app.createdAt) },
  { header: 'NOTES', value: (app) => app.notes },
];

export const versionColumns = (output: Output): Column<Version>[] => [
  { header: 'ID', value: (version) => version.id },
  { header: 'VERSION', value: (version) => version.version },
  { header: 'LANGUAGE', value: (version) => version.language ?? '-' },
  { header: 'KIND', value: (version) => version.kind ?? '-' },
  { header: 'SOURCE', value: (version) => formatBytes(version.source.size) },
  { header: 'CREATED', value: (version) => output.time(version.createdAt) },
];

export const buildColumns = (output: Output): Column<Build>[] => [
  { header: 'ID', value: (build) => build.id },
  { header: '#', value: (build) => String(build.number) },
  { header: 'STATE', value: (build) => stateText(output.out, build.state) },
  { header: 'VERSION', value: (build) => build.versionId },
  { header: 'DURATION', value: (build) => formatDuration(build.durationMs) },
  { header: 'CREATED', value: (build) => output.time(build.createdAt) },
];

export function showApplication(output: Output, app: Application): void {
  output.fields([
    ['id', app.id],
    ['name', app.name],
    ['notes', app.notes || '-'],
    ['created', app.createdAt],
    ['updated', app.updatedAt],
  ]);
}

export function showVersion(output: Output, version: Version): void {
  const optimize = version.optimize;
  output.fields([
    ['id', version.id],
    ['application', version.applicationId],
    ['version', version.version],
    ['language', version.language ?? '(detected by the build)'],
    ['kind', version.kind ?? '(detected by the build)'],
    ['phases', version.phases.join(', ') || '-'],
    ['optimize', `strip ${onOff(optimize.strip)} · wasm-opt ${optimize.wasmOpt} · wizer ${onOff(optimize.wizer)} · memory cap ${optimize.memoryCapPages === null ? 'none' : `${optimize.memoryCapPages} pages`}`],
    ['source', `${version.source.format}, ${formatBytes(version.source.size)}, sha256 ${version.source.sha256}`],
    ['config', version.config === '' ? '-' : version.config],
    ['notes', version.notes || '-'],
    ['created', version.createdAt],
  ]);
}

const onOff = (value: boolean): string => (value ? 'on' : 'off');

export function showBuild(output: Output, build: Build): void {
  const pairs: Array<[string, string]> = [
    ['id', build.id],
    ['number', `#${build.number}`],
    ['state', stateText(output.out, build.state) + (build.cancelRequested && build.state === 'running' ? ' (cancel requested)' : '')],
    ['application', build.applicationId],
    ['version', build.versionId],
    ['language', `${build.language ?? '-'} · ${build.kind ?? '-'}`],
    ['attempts', String(build.attempts)],
    ['created', build.createdAt],
    ['started', build.startedAt ?? '-'],
    ['finished', build.finishedAt ?? '-'],
    ['duration', formatDuration(build.durationMs)],
  ];
  if (build.reason) pairs.push(['reason', build.reason]);
  for (const stage of build.stages) pairs.push([`  ${stage.name}`, formatDuration(stage.durationMs)]);
  artifactLines(build).forEach((line, index) => pairs.push([index === 0 ? 'artifacts' : '', line]));
  pairs.push(...detailLines(build));
  pairs.push(['log', `${formatBytes(build.logBytes)} (kiln logs ${build.id})`]);
  output.fields(pairs);
}

/** The last lines of a log: what a failed build's summary shows. */
export function logTail(log: string, lines: number): string {
  const all = log.replace(/\n+$/, '').split('\n');
  return all.slice(-lines).join('\n');
}
