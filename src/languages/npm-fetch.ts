/**
 * npm dependencies for the fetch phase: `npm ci --ignore-scripts` against
 * the configured registry installs exactly what package-lock.json names.
 * Language-agnostic: any language whose projects carry a package.json may
 * use it (AssemblyScript today, JS/TS components later).
 *
 * Checked on the host first, so the common mistakes get a clear reason
 * instead of npm's: dependencies but no lock file, a lock file that does
 * not match package.json, a lock file npm ci cannot read.
 */
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { buildFailure } from '../build-kit/failure.ts';
import { isRegularFile, readSmallText } from './files.ts';
import type { FetchConfig } from '../fetch/config.ts';
import { egressTargetOf } from '../fetch/egress-rules.ts';
import { nodePrefixMounts, type FetchPlan } from '../fetch/fetch-phase.ts';

/** Lock files are larger than the usual inspected files; still bounded. */
const MAX_LOCK_BYTES = 16 * 1024 ** 2;
const DEPENDENCY_FIELDS = ['dependencies', 'devDependencies', 'optionalDependencies'] as const;
/** npm's cache goes into the job's capped volume, not the small HOME tmpfs. */
const NPM_CACHE = '/build/tmp/npm-cache';

export interface NpmOptions {
  /** Node binary (default: the one running Kiln); npm is found beside it. */
  nodePath?: string;
  /**
   * Packages the platform provides itself (e.g. the AssemblyScript compiler):
   * a project without a lock file that declares only these is built without
   * a fetch, as before the fetch phase existed.
   */
  providedByPlatform?: readonly string[];
}

type Json = Record<string, unknown>;

/** undefined when the project has no package.json or declares no dependencies. */
export async function npmFetchPlan(sourceDir: string, config: FetchConfig, options: NpmOptions = {}): Promise<FetchPlan | undefined> {
  const manifest = parseObject(await readSmallText(join(sourceDir, 'package.json')), 'package.json');
  if (manifest === undefined) return undefined;
  const declared = declaredDependencies(manifest);
  if (declared.size === 0) return undefined;
  const lockName = (await isRegularFile(join(sourceDir, 'npm-shrinkwrap.json'))) ? 'npm-shrinkwrap.json' : 'package-lock.json';
  const lockText = await readSmallText(join(sourceDir, lockName), MAX_LOCK_BYTES);
  if (lockText === undefined) {
    if ([...declared.keys()].every((name) => options.providedByPlatform?.includes(name))) return undefined;
    throw buildFailure(`package.json declares dependencies (${[...declared.keys()].slice(0, 5).join(', ')}) but there is no package-lock.json: run \`npm install\` and upload the lock file with the project`);
  }
  const lock = parseObject(lockText, lockName);
  checkLockMatches(declared, lock ?? {}, lockName);
  const nodePath = options.nodePath ?? process.execPath;
  const cli = npmCli(nodePath);
  // Without npm the fetch could only fail, and the user would be blamed for it.
  if (!(await isRegularFile(cli))) throw new PlatformError('toolchain_missing', `npm is not installed at ${cli} (it comes with node)`);
  const registry = config.npmRegistry;
  return {
    tool: 'npm',
    allowed: [egressTargetOf(registry)],
    command: [nodePath, cli, 'ci', '--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier', '--foreground-scripts=false', `--registry=${registry.href}`, `--cache=${NPM_CACHE}`],
    env: { PATH: '/usr/bin:/bin', HOME: '/build/home', TMPDIR: '/build/tmp', LANG: 'C.UTF-8' },
    mounts: nodePrefixMounts(nodePath),
    outputs: ['node_modules'],
    cacheKey: createHash('sha256').update(`npm-ci-v1\0${registry.href}\0${process.version}\0${lockName}\0`).update(lockText).digest('hex'),
    failureReason: npmFailureReason,
  };
}

function declaredDependencies(manifest: Json): Map<string, string> {
  const declared = new Map<string, string>();
  for (const field of DEPENDENCY_FIELDS) {
    const entries = manifest[field];
    if (typeof entries !== 'object' || entries === null) continue;
    for (const [name, spec] of Object.entries(entries)) declared.set(name, String(spec));
  }
  return declared;
}

/** The lock's root entry must name the same dependencies with the same ranges (what `npm ci` insists on too). */
function checkLockMatches(declared: Map<string, string>, lock: Json, lockName: string): void {
  const version = lock['lockfileVersion'];
  const packages = lock['packages'];
  if ((version !== 2 && version !== 3) || typeof packages !== 'object' || packages === null) {
    throw buildFailure(`${lockName} has lockfileVersion ${JSON.stringify(version ?? null)}: Kiln needs version 2 or 3 (npm 7 or later); run \`npm install\` with a current npm`);
  }
  const root = (packages as Json)[''];
  const locked = typeof root === 'object' && root !== null ? declaredDependencies(root as Json) : new Map<string, string>();
  const fix = `run \`npm install\` and upload the updated ${lockName}`;
  for (const [name, spec] of declared) {
    const lockedSpec = locked.get(name);
    if (lockedSpec === undefined) throw buildFailure(`${lockName} does not match package.json: ${name} is not in the lock file; ${fix}`);
    if (lockedSpec !== spec) throw buildFailure(`${lockName} does not match package.json: ${name} is ${JSON.stringify(spec)} in package.json but ${JSON.stringify(lockedSpec)} in the lock file; ${fix}`);
  }
  for (const name of locked.keys()) {
    if (!declared.has(name)) throw buildFailure(`${lockName} does not match package.json: the lock file names ${name}, which package.json does not; ${fix}`);
  }
}

/** npm prints `npm error …` (npm ≥ 10) or `npm ERR! …`: the first line that says more than the error code. */
export function npmFailureReason(output: string): string | undefined {
  for (const line of output.split('\n')) {
    const match = /^npm (?:ERR!|error) (.+)$/.exec(line.trim());
    const text = match?.[1]?.trim();
    if (text === undefined || text === '' || /^(code|errno|syscall) \S+$/.test(text) || /^A complete log/.test(text)) continue;
    return text.length > 300 ? `${text.slice(0, 299)}…` : text;
  }
  return undefined;
}

/** npm's CLI as installed with node: <prefix>/lib/node_modules/npm/bin/npm-cli.js. */
function npmCli(nodePath: string): string {
  return join(dirname(dirname(nodePath)), 'lib/node_modules/npm/bin/npm-cli.js');
}

function parseObject(text: string | undefined, name: string): Json | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw buildFailure(`${name} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw buildFailure(`${name} must hold a JSON object`);
  return value as Json;
}
