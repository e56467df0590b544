/**
 * JavaScript and TypeScript edge functions, built into WASI 0.2 HTTP
 * components (kind http-component): one folder, two language ids, because
 * the only difference is that TypeScript is type-stripped by the bundler.
 *
 *   esbuild (bundle + strip types; syntax errors name the user's file:line)
 *   → componentize-js (StarlingMonkey; runs the bundle's top level once,
 *     inside Wasm, and snapshots it)
 *
 * Both run inside the build sandbox, offline, with Kiln's pinned toolchain
 * mounted read-only. Author conventions are in ./README.md.
 */
import { join, normalize } from 'node:path';
import type { BuildContext, BuildStep, Detection, Language, LanguageId } from '../language.ts';
import { buildFailure } from '../../build-kit/failure.ts';
import { isRegularFile, readSmallText } from '../files.ts';
import { BASE_ENV, KILN_DIR, OUTPUT_RELATIVE_PATH, SANDBOX_KILN_DIR, SANDBOX_OUTPUT_PATH, SANDBOX_SOURCE_DIR } from '../../build-kit/paths.ts';
import { refuseDependencies } from './dependencies.ts';
import { COMPONENT_WORLD, SANDBOX_JS_SCRIPTS, SANDBOX_JS_WIT, toolchainDir, toolchainMounts } from './toolchain.ts';

export type ScriptLanguageId = Extract<LanguageId, 'javascript' | 'typescript'>;

const DEFAULT_ENTRIES = ['src/index.ts', 'src/index.js'];
const ENTRY_EXTENSIONS = ['.js', '.mjs', '.ts', '.mts'];
const TYPESCRIPT_EXTENSIONS = ['.ts', '.mts'];
const BUNDLE_FILE = 'bundle.js';

export interface JavaScriptOptions {
  /** Host prefix of the toolchain (default KILN_JS_TOOLCHAIN_DIR, else toolchains/js). */
  toolchainDir?: string;
  /** Node binary run inside the sandbox (default: the one running Kiln). */
  nodePath?: string;
}

export function createJavaScript(id: ScriptLanguageId, options: JavaScriptOptions = {}): Language {
  const nodePath = options.nodePath ?? process.execPath;
  const prefix = options.toolchainDir ?? toolchainDir();
  return {
    id,
    detect: (sourceDir) => detect(sourceDir, id),
    prepare,
    mounts: () => [...toolchainMounts(prefix), ...nodeMounts(nodePath)],
    steps: (context) => steps(context, nodePath),
    locateOutput,
  };
}

/**
 * A project is JavaScript or TypeScript when its entry exists; the entry's
 * extension says which (so each id only claims its own projects).
 */
async function detect(sourceDir: string, id: ScriptLanguageId): Promise<Detection | undefined> {
  const entry = await findEntry(sourceDir).catch(() => undefined);
  if (entry === undefined || languageOfEntry(entry) !== id) return undefined;
  return { language: id, kind: 'http-component' };
}

export function languageOfEntry(entry: string): ScriptLanguageId {
  return TYPESCRIPT_EXTENSIONS.some((extension) => entry.endsWith(extension)) ? 'typescript' : 'javascript';
}

/** package.json `main` (must exist), else src/index.ts, else src/index.js. */
export async function findEntry(sourceDir: string): Promise<string | undefined> {
  const main = (await readManifest(sourceDir))?.['main'];
  if (main !== undefined) {
    const entry = checkedMain(main);
    if (!(await isRegularFile(join(sourceDir, entry)))) throw buildFailure(`package.json main is ${JSON.stringify(main)}, but there is no such file in the upload`);
    return entry;
  }
  for (const candidate of DEFAULT_ENTRIES) {
    if (await isRegularFile(join(sourceDir, candidate))) return candidate;
  }
  return undefined;
}

function checkedMain(main: unknown): string {
  if (typeof main !== 'string' || main === '') throw buildFailure('package.json main must be a non-empty string naming the entry module');
  const entry = normalize(main).replace(/^\.\//, '');
  if (entry.startsWith('/') || entry === '..' || entry.startsWith('../')) throw buildFailure(`package.json main ${JSON.stringify(main)} points outside the upload`);
  if (!ENTRY_EXTENSIONS.some((extension) => entry.endsWith(extension))) {
    throw buildFailure(`package.json main ${JSON.stringify(main)} must be a ${ENTRY_EXTENSIONS.join(', ')} file`);
  }
  return entry;
}

async function readManifest(sourceDir: string): Promise<Record<string, unknown> | undefined> {
  const text = await readSmallText(join(sourceDir, 'package.json'));
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw buildFailure(`package.json is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw buildFailure('package.json must hold a JSON object');
  return value as Record<string, unknown>;
}

async function prepare(context: BuildContext): Promise<void> {
  if (context.kind !== 'http-component') {
    throw buildFailure(`JavaScript and TypeScript build only the http-component kind (a wasi:http component), not ${context.kind}`);
  }
  refuseDependencies(await readManifest(context.sourceDir));
  if ((await findEntry(context.sourceDir)) === undefined) {
    throw buildFailure(`no entry module: set "main" in package.json or add ${DEFAULT_ENTRIES.join(' or ')}`);
  }
}

async function steps(context: BuildContext, nodePath: string): Promise<BuildStep[]> {
  const entry = (await findEntry(context.sourceDir)) ?? 'src/index.js';
  const bundle = `${SANDBOX_KILN_DIR}/${BUNDLE_FILE}`;
  const esbuild: string[] = [nodePath, `${SANDBOX_JS_SCRIPTS}/bundle.mjs`, entry, bundle];
  const componentize: string[] = [nodePath, `${SANDBOX_JS_SCRIPTS}/componentize.mjs`, bundle, SANDBOX_JS_WIT, COMPONENT_WORLD, SANDBOX_OUTPUT_PATH];
  return [
    { name: 'esbuild', command: esbuild, env: { ...BASE_ENV }, cwd: SANDBOX_SOURCE_DIR },
    { name: 'componentize-js', command: componentize, env: { ...BASE_ENV }, cwd: `${SANDBOX_KILN_DIR}` },
  ];
}

async function locateOutput(context: BuildContext): Promise<string> {
  if (!(await isRegularFile(join(context.jobDir, OUTPUT_RELATIVE_PATH)))) throw buildFailure('componentize-js produced no component');
  return OUTPUT_RELATIVE_PATH;
}

/** Node must be visible in the sandbox; anything outside /usr is mounted at its own path. */
function nodeMounts(nodePath: string): { host: string; sandbox: string }[] {
  if (nodePath.startsWith('/usr/')) return [];
  const prefix = normalize(join(nodePath, '..', '..'));
  return [{ host: prefix, sandbox: prefix }];
}

export { KILN_DIR };
