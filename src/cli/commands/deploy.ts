import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { KilnApiError, type ApiClient, type Application, type Build, type KindName, type LanguageName, type Version, type VersionMetadata } from '../api-client.ts';
import { artifactLines, buildTimings, detailLines, reportFailure, watchToEnd } from '../build-report.ts';
import { UNDETECTED_REASON } from '../../languages/index.ts';
import { apiCommand, choice, contextFor, type CommonFlags } from '../context.ts';
import { formatBytes, formatDuration, ProgressBar, type Output } from '../output.ts';
import { largestFiles, LARGE_ARCHIVE_BYTES, packProject, type PackedProject } from '../pack-project.ts';
import { memoryCapPages, readProject, SEMVER, WASM_OPT_LEVELS, type Optimize, type Project } from '../project.ts';
import { canPrompt, confirm } from '../prompt.ts';
import { stateText } from '../views.ts';
import { parsePhases } from './versions.ts';
import { LANGUAGE_IDS } from '../../languages/ids.ts';
import { APP_KINDS } from '../../wasm/app-kinds.ts';

const LANGUAGES: readonly LanguageName[] = LANGUAGE_IDS;
const KINDS: readonly KindName[] = APP_KINDS;

interface DeployFlags extends CommonFlags {
  app?: string;
  version?: string;
  language?: LanguageName;
  kind?: KindName;
  phases?: string;
  config?: string;
  configFile?: string;
  notes?: string;
  optimize: boolean;
  strip: boolean;
  wizer: boolean;
  wasmOpt?: Optimize['wasmOpt'];
  memoryCapPages?: number;
  yes?: boolean;
  wait: boolean;
  logs: boolean;
  dryRun?: boolean;
}

const DEPLOY_NOTES = `
What is uploaded: the directory, minus .git/, node_modules/, cargo's target/,
.kiln/ (Kiln's data directory: tokens live there) and whatever .gitignore
and .kilnignore files exclude (those of parent directories up to the git
repository's root too). Symbolic links that leave the directory are refused.

kiln.toml (optional) overrides what is detected:
  name = "hello"            version = "1.2.0"         language = "rust"
  kind = "proxy-wasm"       phases = ["request_headers"]
  config = "{...}"  or  config-file = "filter.json"   notes = "..."
  [optimize]  strip = true   wasm-opt = "Oz"   wizer = false   memory-cap-pages = 256

Without any declared version, a dated pre-release (0.0.0-dev.YYYYMMDDhhmmss) is used.
Exit status: 0 only when the build succeeded (or with --no-wait / --dry-run, when the upload was accepted).`;

export function deployCommand(): Command {
  return apiCommand('deploy', 'Pack a project, upload it as a new version, stream its build log and summarize the result', [
    'kiln deploy                              # the current directory',
    'kiln deploy ./my-filter --yes            # create the application if it does not exist',
    'kiln deploy . --app hello --version 1.2.0 --kind proxy-wasm --phases request_headers',
    'kiln deploy . --dry-run                  # show what would be uploaded, upload nothing',
    'kiln deploy . --json | jq -r .artifact.sha256',
  ], DEPLOY_NOTES)
    .argument('[dir]', 'the project directory', '.')
    .option('--app <name>', 'application name or id (default: kiln.toml name, Cargo.toml or package.json name, else the directory name)')
    .option('--version <semver>', 'the version (default: kiln.toml, Cargo.toml [package] or package.json version)')
    .option('--language <language>', `override detection (${LANGUAGES.join(', ')})`, choice(LANGUAGES))
    .option('--kind <kind>', `override detection (${KINDS.join(', ')})`, choice(KINDS))
    .option('--phases <list>', 'comma-separated proxy-wasm phases the filter handles')
    .option('--config <text>', 'configuration handed to the filter')
    .option('--config-file <file>', 'read the filter configuration from a file')
    .option('--notes <text>', 'notes stored with the version')
    .option('--no-optimize', 'store the raw build: no strip, wasm-opt or Wizer')
    .option('--no-strip', 'keep custom sections (names, debug info)')
    .option('--no-wizer', 'skip Wizer pre-initialization')
    .addOption(new Option('--wasm-opt <level>', 'wasm-opt level').choices(WASM_OPT_LEVELS))
    .option('--memory-cap-pages <n>', 'cap the linear memory at n 64 KiB pages', (value) => memoryCapPages(value, '--memory-cap-pages'))
    .option('-y, --yes', 'create the application without asking (needed without a terminal)')
    .option('--no-wait', 'return once uploaded, without waiting for the build')
    .option('--no-logs', 'do not stream the build log (the summary still comes, and the log tail on failure)')
    .option('--dry-run', 'detect and pack, print what would be uploaded, and stop')
    .action(async (dir: string, flags: DeployFlags) => {
      const { client, output } = contextFor(flags);
      await deploy(client, output, dir, flags);
    });
}

async function deploy(client: ApiClient, output: Output, dir: string, flags: DeployFlags): Promise<void> {
  const project = await readProject(dir);
  const metadata = await metadataFor(project, flags);
  const appName = flags.app ?? project.name.value;
  describeProject(output, project, metadata, appName, flags);
  const packed = await packProject(project.dir);
  reportPack(output, project, packed);
  if (flags.dryRun) return printDryRun(output, project, metadata, appName, packed);

  const app = await ensureApplication(client, output, appName, flags.yes);
  const uploadStarted = performance.now();
  const { version, build } = await upload(client, output, app, metadata, packed, project);
  const uploadMs = performance.now() - uploadStarted;
  output.note(`Uploaded ${app.name} ${version.version} in ${formatDuration(uploadMs)}: version ${version.id}, build #${build.number} ${build.id}`);
  if (!flags.wait) return printQueued(output, app, version, build);

  const final = await watchToEnd(client, output, build, { logs: flags.logs });
  // Time spent answering the create-application question is not Kiln's: leave it out.
  const timings = { packMs: packed.durationMs, uploadMs, totalMs: packed.durationMs + performance.now() - uploadStarted };
  const tail = final.state === 'succeeded' ? undefined : await reportFailure(client, output, final, flags.logs);
  if (output.json) output.printJson(summaryJson(app, version, final, packed, timings, tail));
  else if (final.state === 'succeeded') printSummary(output, app, version, final, packed, timings);
  if (final.state !== 'succeeded') process.exitCode = 1;
}

/** Flags over kiln.toml over manifests; checked here so a mistake costs no upload. */
async function metadataFor(project: Project, flags: DeployFlags): Promise<VersionMetadata> {
  const version = flags.version ?? project.version.value;
  if (!SEMVER.test(version)) {
    const from = flags.version !== undefined ? '--version' : project.version.from;
    throw new Error(`version ${JSON.stringify(version)} (from ${from}) is not a semantic version like 1.2.3: fix it or pass --version`);
  }
  if (flags.config !== undefined && flags.configFile !== undefined) throw new Error('pass --config or --config-file, not both');
  const config = flags.configFile !== undefined ? await readFile(flags.configFile, 'utf8') : (flags.config ?? project.config);
  const metadata: VersionMetadata = { version };
  const language = flags.language ?? project.language?.value;
  // The build would fail the same way after an upload: say it now.
  if (!language) throw new Error(`${UNDETECTED_REASON} in ${project.dir}; pass --language, or set language in kiln.toml`);
  const kind = flags.kind ?? project.kind?.value;
  const phases = flags.phases !== undefined ? parsePhases(flags.phases) : project.phases;
  const notes = flags.notes ?? project.notes;
  if (language) metadata.language = language;
  if (kind) metadata.kind = kind;
  if (phases) metadata.phases = phases;
  if (config !== undefined) metadata.config = config;
  if (notes !== undefined) metadata.notes = notes;
  const optimize = optimizeFor(project.optimize, flags);
  if (optimize) metadata.optimize = optimize;
  return metadata;
}

function optimizeFor(fromToml: Optimize | undefined, flags: DeployFlags): Optimize | undefined {
  const optimize: Optimize = { ...fromToml };
  if (!flags.optimize) Object.assign(optimize, { strip: false, wasmOpt: 'off', wizer: false });
  // Commander sets negatable flags to true by default: only an explicit --no-x counts.
  if (!flags.strip) optimize.strip = false;
  if (!flags.wizer) optimize.wizer = false;
  if (flags.wasmOpt !== undefined) optimize.wasmOpt = flags.wasmOpt;
  if (flags.memoryCapPages !== undefined) optimize.memoryCapPages = flags.memoryCapPages;
  return Object.keys(optimize).length > 0 ? optimize : undefined;
}

function describeProject(output: Output, project: Project, metadata: VersionMetadata, appName: string, flags: DeployFlags): void {
  const languageFrom = flags.language ? '--language' : project.language?.from;
  const kindFrom = flags.kind ? '--kind' : project.kind?.from;
  const language = metadata.language ? `${metadata.language} (${languageFrom})` : 'left to the build to detect';
  const kind = metadata.kind ? `${metadata.kind} (${kindFrom})` : 'left to the build to detect';
  output.note(`Deploying ${output.err.bold(appName)} ${output.err.bold(metadata.version)} from ${relative(project.dir)}`);
  output.note(output.err.dim(`  version: ${flags.version ? '--version' : project.version.from} · language: ${language} · kind: ${kind}`));
}

function reportPack(output: Output, project: Project, packed: PackedProject): void {
  const ignored = packed.ignored.length > 0 ? `; ${packed.ignored.length} path(s) left out by ignore rules` : '';
  output.note(`Packed ${plural(packed.files.length, 'file')}: ${formatBytes(packed.archive.length)} (${formatBytes(packed.bytes)} unpacked) in ${formatDuration(packed.durationMs)}${ignored}`);
  if (packed.files.length === 0) output.warn('the archive holds no files: is this the right directory?');
  if (packed.archive.length <= LARGE_ARCHIVE_BYTES) return;
  output.warn(`the archive is large (${formatBytes(packed.archive.length)}); the biggest files are:`);
  for (const file of largestFiles(project.dir, packed.files)) output.note(`    ${formatBytes(file.bytes).padStart(9)}  ${file.path}`);
  output.note('  Leave out what the build does not need with .gitignore or .kilnignore.');
}

function printDryRun(output: Output, project: Project, metadata: VersionMetadata, appName: string, packed: PackedProject): void {
  const archive = { bytes: packed.archive.length, unpackedBytes: packed.bytes, sha256: packed.sha256, files: packed.files, ignored: packed.ignored };
  if (output.json) return output.printJson({ dryRun: true, application: appName, directory: project.dir, metadata, archive });
  output.line(`Dry run: nothing was uploaded. Would upload to application ${appName}:`);
  output.line(`  metadata  ${JSON.stringify(metadata)}`);
  output.line(`  archive   ${formatBytes(packed.archive.length)}, sha256 ${packed.sha256}`);
  for (const file of packed.files) output.line(`    ${file}`);
  for (const ignored of packed.ignored) output.line(output.out.dim(`    ${ignored} (ignored)`));
}

/** By name (or id); created on request: asked on a terminal, --yes otherwise. */
async function ensureApplication(client: ApiClient, output: Output, ref: string, yes: boolean | undefined): Promise<Application> {
  const found = await client.findApplication(ref);
  if (found) return found;
  if (!yes) {
    if (!canPrompt()) throw new Error(`application ${JSON.stringify(ref)} does not exist. Pass --yes to create it, or create it first: kiln apps create ${ref}`);
    if (!(await confirm(`Application ${ref} does not exist on ${client.url}. Create it?`, true))) throw new Error('nothing deployed: the application was not created');
  }
  const created = await client.createApplication({ name: ref });
  output.note(`Created application ${created.name} (${created.id})`);
  return created;
}

async function upload(client: ApiClient, output: Output, app: Application, metadata: VersionMetadata, packed: PackedProject, project: Project): Promise<{ version: Version; build: Build }> {
  const bar = new ProgressBar(output, 'Uploading', packed.archive.length);
  try {
    return await client.createVersion(app.id, metadata, packed.archive, (sent) => bar.update(Math.min(sent, packed.archive.length)));
  } catch (error) {
    if (error instanceof KilnApiError && error.code === 'version_exists') {
      throw new KilnApiError(error.status, error.code, `${app.name} already has version ${metadata.version} (from ${project.version.from}): bump it there, or pass --version`);
    }
    throw error;
  } finally {
    bar.finish();
  }
}

function printQueued(output: Output, app: Application, version: Version, build: Build): void {
  if (output.json) return output.printJson({ application: app, version, build });
  output.line(`Build #${build.number} is ${stateText(output.out, build.state)}. Follow it: kiln logs ${build.id} --follow`);
}

interface Timings {
  packMs: number;
  uploadMs: number;
  totalMs: number;
}

function summaryJson(app: Application, version: Version, build: Build, packed: PackedProject, timings: Timings, logTail: string | undefined) {
  const variant = build.artifacts.optimized ? 'optimized' : 'original';
  const artifact = build.artifacts[variant];
  return {
    application: app,
    version,
    build,
    archive: { bytes: packed.archive.length, unpackedBytes: packed.bytes, files: packed.files.length, sha256: packed.sha256 },
    artifact: artifact ? { variant, ...artifact } : null,
    timings: { packMs: Math.round(timings.packMs), uploadMs: Math.round(timings.uploadMs), buildMs: build.durationMs, totalMs: Math.round(timings.totalMs) },
    ...(logTail !== undefined ? { logTail } : {}),
  };
}

function printSummary(output: Output, app: Application, version: Version, build: Build, packed: PackedProject, timings: Timings): void {
  const { out } = output;
  output.line();
  output.line(`${out.green('✔')} Deployed ${out.bold(app.name)} ${out.bold(version.version)}: build #${build.number} ${stateText(out, build.state)} in ${formatDuration(build.durationMs)}`);
  const artifacts = artifactLines(build);
  output.fields([
    ['version', `${version.version} (${version.id})`],
    ['build', `#${build.number} ${build.id}`],
    ['language', `${build.language ?? version.language ?? '-'} · ${build.kind ?? version.kind ?? '-'}`],
    ['source', `${plural(packed.files.length, 'file')}, ${formatBytes(packed.archive.length)} packed (${formatBytes(packed.bytes)} unpacked)`],
    ...artifacts.map((line, index): [string, string] => [index === 0 ? 'artifact' : '', line]),
    ['packed in', formatDuration(timings.packMs)],
    ['uploaded in', formatDuration(timings.uploadMs)],
    ...buildTimings(build),
    ...detailLines(build),
    ['total', formatDuration(timings.totalMs)],
  ]);
  output.line();
  output.line(out.dim(`Download it: kiln download ${version.id}`));
}

function relative(dir: string): string {
  const rel = path.relative(process.cwd(), dir);
  return rel === '' ? '.' : rel.startsWith('..') ? dir : `./${rel}`;
}

const plural = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? '' : 's'}`;
