/**
 * An app that locks its own `assemblyscript` (an ordinary npm dependency,
 * installed by the fetch phase) is compiled by that compiler, run inside
 * the sandbox like Kiln's own: SDKs such as `@solo-io/proxy-runtime` only
 * compile with the release they were written for (0.14.x). Kiln's bundled
 * compiler is used only when the app pins none.
 *
 * Compiler options changed a lot between releases, so a pinned compiler
 * gets only options every release since 0.14 understands: the entry, Kiln's
 * empty config (the upload's asconfig.json could load transforms),
 * --outFile, --optimize, --noColors, and the abort handler the project
 * names (`abort = "…"` in kiln.toml, else the `--use abort=…` of an asc
 * command in package.json's scripts, as SDK READMEs tell users to write).
 */
import { join } from 'node:path';
import { buildFailure } from '../../build-kit/failure.ts';
import { isRegularFile, lstatOrUndefined, readSmallText } from '../files.ts';
import { readKilnToml } from '../kiln-toml.ts';
import type { BuildContext } from '../language.ts';
import { KILN_DIR, SANDBOX_OUTPUT_PATH, SANDBOX_SOURCE_DIR } from '../../build-kit/paths.ts';
import { tomlString } from '../toml.ts';

export const ENTRY = 'assembly/index.ts';
const LOCK_FILES = ['package-lock.json', 'npm-shrinkwrap.json'];
/** A relative path inside the package: no `..`, no absolute path, no odd characters. */
const SAFE_RELATIVE = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9_][A-Za-z0-9_./-]*$/;
/** An AssemblyScript identifier or library path, e.g. `abort_proc_exit`, `index/abort_proc_exit`, `~lib/x/y`. */
const ABORT_NAME = /^~?[A-Za-z_][A-Za-z0-9_/.]*$/;

export interface PinnedCompiler {
  version: string;
  /** Path of asc's CLI script inside the sandbox. */
  cli: string;
}

export async function hasLockFile(sourceDir: string): Promise<boolean> {
  for (const name of LOCK_FILES) if (await isRegularFile(join(sourceDir, name))) return true;
  return false;
}

/** The `assemblyscript` package the fetch phase installed, if the app locks one. */
export async function pinnedCompiler(sourceDir: string): Promise<PinnedCompiler | undefined> {
  if (!(await hasLockFile(sourceDir))) return undefined;
  const packageDir = join(sourceDir, 'node_modules', 'assemblyscript');
  // npm writes `link: true` packages as symlinks, which would lead the host's reads out of the job dir.
  if (!(await withoutSymlinks(sourceDir, 'node_modules/assemblyscript/package.json'))) {
    if ((await lstatOrUndefined(packageDir)) === undefined) return undefined;
    throw buildFailure('node_modules/assemblyscript is a link, not an installed package: lock a registry release of assemblyscript');
  }
  const text = await readSmallText(join(packageDir, 'package.json'));
  if (text === undefined) return undefined;
  const manifest = parse(text);
  const bin = manifest['bin'];
  const cli = typeof bin === 'string' ? bin : typeof bin === 'object' && bin !== null ? (bin as Record<string, unknown>)['asc'] : undefined;
  const relative = typeof cli === 'string' ? cli.replace(/^\.\//, '') : undefined;
  if (relative === undefined || !SAFE_RELATIVE.test(relative) || !(await withoutSymlinks(packageDir, relative)) || !(await isRegularFile(join(packageDir, relative)))) {
    throw buildFailure('the locked assemblyscript package has no usable asc command (package.json "bin")');
  }
  return { version: typeof manifest['version'] === 'string' ? manifest['version'] : 'unknown', cli: `${SANDBOX_SOURCE_DIR}/node_modules/assemblyscript/${relative}` };
}

export async function pinnedCommand(context: BuildContext, nodePath: string, compiler: PinnedCompiler): Promise<string[]> {
  const abort = await abortHandler(context.sourceDir);
  if (abort === undefined) context.log('kiln: no abort handler named (kiln.toml `abort`, or `--use abort=` in package.json scripts): the module will import env.abort');
  return [
    nodePath,
    '--enable-source-maps',
    compiler.cli,
    ENTRY,
    '--config',
    `../${KILN_DIR}/asconfig.json`,
    '--outFile',
    SANDBOX_OUTPUT_PATH,
    '--optimize',
    '--noColors',
    ...(abort === undefined ? [] : ['--use', `abort=${abort}`]),
  ];
}

async function abortHandler(sourceDir: string): Promise<string | undefined> {
  const table = await readKilnToml(sourceDir);
  const declared = table === undefined ? undefined : tomlString(table, 'abort');
  if (declared !== undefined) {
    if (!ABORT_NAME.test(declared)) throw buildFailure(`kiln.toml: abort must name a function, e.g. "abort_proc_exit"`);
    return declared;
  }
  const scripts = parse((await readSmallText(join(sourceDir, 'package.json'))) ?? '{}')['scripts'];
  if (typeof scripts !== 'object' || scripts === null) return undefined;
  for (const script of Object.values(scripts)) {
    const match = typeof script === 'string' ? /\basc\b.*--use[= ]abort=(\S+)/.exec(script) : null;
    if (match?.[1] !== undefined && ABORT_NAME.test(match[1])) return match[1];
  }
  return undefined;
}

/** Every component of root/relative exists and none is a symlink (the host never follows one out). */
async function withoutSymlinks(root: string, relative: string): Promise<boolean> {
  let current = root;
  for (const part of relative.split('/')) {
    current = join(current, part);
    const stats = await lstatOrUndefined(current);
    if (stats === undefined || stats.isSymbolicLink()) return false;
  }
  return true;
}

function parse(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
