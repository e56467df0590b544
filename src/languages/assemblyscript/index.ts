/**
 * AssemblyScript through the compiler Kiln ships, run by the host's node
 * inside the sandbox. Conventions for authors are in ./README.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from '../../sandbox/sandbox.ts';
import type { AppKind, BuildContext, BuildStep, DependencyFetching, Detection, Language } from '../language.ts';
import { isCoreKind, type CoreAppKind } from '../../wasm/kind.ts';
import { buildFailure } from '../../build-kit/failure.ts';
import { isRegularFile, listFiles, readSmallText, removeWithLog } from '../files.ts';
import { asAppKind, readKilnToml } from '../kiln-toml.ts';
import { BASE_ENV, KILN_DIR, OUTPUT_RELATIVE_PATH, SANDBOX_OUTPUT_PATH, SANDBOX_SOURCE_DIR } from '../../build-kit/paths.ts';
import { tomlString } from '../toml.ts';
import { ABORT_FUNCTIONS, ABORT_LIBRARY_FILE, ABORT_LIBRARY_SOURCE } from './abort-library.ts';
import { npmFetchPlan } from '../npm-fetch.ts';
import { ENTRY, hasLockFile, pinnedCommand, pinnedCompiler } from './pinned-compiler.ts';
import { AS_SDK_PACKAGE, compilerVersion, DEFAULT_AS_SDK_DIR, SANDBOX_AS_PACKAGES, SANDBOX_NODE_MODULES, compilerMounts, defaultCompilerDir, nodeMounts, sdkMounts } from './toolchain.ts';

const RUNTIMES = ['stub', 'minimal', 'incremental'] as const;
type Runtime = (typeof RUNTIMES)[number];
/**
 * A command runs once, so the bump allocator (`stub`) is enough. A filter
 * lives for many requests: `minimal` frees memory when `__collect` is called,
 * which --exportRuntime exposes to the host.
 */
const DEFAULT_RUNTIME: Record<CoreAppKind, Runtime> = { 'wasi-command': 'stub', 'proxy-wasm': 'minimal' };

export interface AssemblyScriptOptions {
  /** Host directory of the `assemblyscript` package (default: Kiln's own). */
  compilerDir?: string;
  /** Node binary run inside the sandbox (default: the one running Kiln). */
  nodePath?: string;
  /** Host directory of Kiln's AssemblyScript SDK (default: sdk/assemblyscript of this checkout). */
  sdkDir?: string;
}

export function createAssemblyScript(options: AssemblyScriptOptions = {}): Language & DependencyFetching {
  const nodePath = options.nodePath ?? process.execPath;
  let mounts: Mount[] | undefined;
  return {
    id: 'assemblyscript',
    detect,
    prepare,
    // Resolved once, on first use: the compiler's location does not change while Kiln runs.
    mounts: () =>
      (mounts ??= [...compilerMounts(options.compilerDir ?? defaultCompilerDir()), ...nodeMounts(nodePath), ...sdkMounts(options.sdkDir ?? DEFAULT_AS_SDK_DIR)]),
    steps: (context) => steps(context, nodePath, options.compilerDir ?? defaultCompilerDir()),
    locateOutput,
    // npm dependencies from the app's lock file, installed before the offline build (src/fetch).
    fetchPlan: (context, config) => npmFetchPlan(context.sourceDir, config, { nodePath, providedByPlatform: ['assemblyscript'] }),
  };
}

async function detect(sourceDir: string): Promise<Detection | undefined> {
  const isProject =
    (await isRegularFile(join(sourceDir, ENTRY))) ||
    (await isRegularFile(join(sourceDir, 'asconfig.json'))) ||
    (await dependsOnAssemblyScript(sourceDir));
  if (!isProject) return undefined;
  return { language: 'assemblyscript', kind: (await declaredKind(sourceDir)) ?? (await detectKindFromSources(sourceDir)) };
}

async function dependsOnAssemblyScript(sourceDir: string): Promise<boolean> {
  const manifest = parseJsonObject(await readSmallText(join(sourceDir, 'package.json')));
  return ['dependencies', 'devDependencies'].some((field) => {
    const dependencies = manifest?.[field];
    return typeof dependencies === 'object' && dependencies !== null && 'assemblyscript' in dependencies;
  });
}

/** kiln.toml `kind`, else package.json `"kiln": {"kind": ...}`. */
async function declaredKind(sourceDir: string): Promise<AppKind | undefined> {
  const fromToml = asAppKind((await readKilnToml(sourceDir))?.['kind']);
  if (fromToml !== undefined) return fromToml;
  const kiln = parseJsonObject(await readSmallText(join(sourceDir, 'package.json')))?.['kiln'];
  return typeof kiln === 'object' && kiln !== null && 'kind' in kiln ? asAppKind(kiln.kind) : undefined;
}

/** Sources that mention a proxy_on_* callback or import Kiln's Proxy-Wasm SDK are a filter. */
async function detectKindFromSources(sourceDir: string): Promise<AppKind> {
  const sources = await listFiles(join(sourceDir, 'assembly'), { accept: (name) => name.endsWith('.ts'), maxFiles: 200 });
  const sdkImport = new RegExp(`from\\s*["']${AS_SDK_PACKAGE}(/[a-z]+)?["']`);
  for (const source of sources) {
    const text = await readSmallText(join(sourceDir, 'assembly', source));
    if (text !== undefined && (/\bproxy_on_[a-z_]+\b/.test(text) || sdkImport.test(text))) return 'proxy-wasm';
  }
  return 'wasi-command';
}

/** AssemblyScript compiles to core modules only; an http-component needs a component toolchain. */
function coreKind(kind: AppKind): CoreAppKind {
  if (!isCoreKind(kind)) throw buildFailure(`AssemblyScript cannot build a ${kind} (a WebAssembly component); use JavaScript or TypeScript for an http-component`);
  return kind;
}

async function prepare(context: BuildContext): Promise<void> {
  coreKind(context.kind);
  if (!(await isRegularFile(join(context.sourceDir, ENTRY)))) {
    throw buildFailure(`no ${ENTRY}: it is the entry file of an AssemblyScript app`);
  }
  if (await hasLockFile(context.sourceDir)) {
    // The fetch phase installs exactly what the lock names; an uploaded tree must not mix in.
    await removeWithLog(context.sourceDir, 'node_modules', 'Kiln installs the locked dependencies itself', context.log);
    // A project .npmrc could name another registry, a git binary or a script shell for npm.
    await removeWithLog(context.sourceDir, '.npmrc', 'Kiln configures npm itself', context.log);
  } else {
    // Library packages (AssemblyScript sources) may stay; nothing there is ever executed.
    const why = 'Kiln compiles with its own AssemblyScript compiler';
    await removeWithLog(context.sourceDir, 'node_modules/assemblyscript', why, context.log);
    await removeWithLog(context.sourceDir, 'node_modules/.bin', why, context.log);
  }
  const kilnDir = join(context.jobDir, KILN_DIR);
  await mkdir(join(kilnDir, 'aslib'), { recursive: true });
  await writeFile(join(kilnDir, 'aslib', ABORT_LIBRARY_FILE), ABORT_LIBRARY_SOURCE);
  // Our own (empty) asconfig replaces the upload's: its transforms would run
  // JavaScript in the compiler and its options could move the output.
  await writeFile(join(kilnDir, 'asconfig.json'), '{}\n');
  if (await isRegularFile(join(context.sourceDir, 'asconfig.json'))) {
    context.log('kiln: asconfig.json is ignored; Kiln passes its own options to asc (see the AssemblyScript conventions)');
  }
}

async function steps(context: BuildContext, nodePath: string, compilerDir: string): Promise<BuildStep[]> {
  const kind = coreKind(context.kind);
  const pinned = await pinnedCompiler(context.sourceDir);
  if (pinned !== undefined) {
    context.log(`kiln: compiling with the app's own assemblyscript ${pinned.version} (from its lock file)`);
    return [{ name: 'asc', command: await pinnedCommand(context, nodePath, pinned), env: { ...BASE_ENV }, cwd: SANDBOX_SOURCE_DIR }];
  }
  context.log(`kiln: compiling with Kiln's assemblyscript ${compilerVersion(compilerDir)}`);
  const runtime = await runtimeFor(context, kind);
  const command = [
    nodePath,
    // asc re-launches node with this flag unless given: one process is enough.
    '--enable-source-maps',
    `${SANDBOX_NODE_MODULES}/assemblyscript/bin/asc.js`,
    ENTRY,
    // Paths relative to the source dir: asc joins --lib with its base dir.
    '--config',
    `../${KILN_DIR}/asconfig.json`,
    '--lib',
    `../${KILN_DIR}/aslib`,
    // Kiln's packages (the kiln-proxy-wasm SDK), after the upload's node_modules.
    '--path',
    SANDBOX_AS_PACKAGES,
    '-O3',
    '--runtime',
    runtime,
    '--use',
    `abort=${ABORT_FUNCTIONS[kind]}`,
    ...kindFlags(kind, runtime),
    '--noColors',
    '--outFile',
    SANDBOX_OUTPUT_PATH,
  ];
  return [{ name: 'asc', command, env: { ...BASE_ENV }, cwd: SANDBOX_SOURCE_DIR }];
}

function kindFlags(kind: CoreAppKind, runtime: Runtime): string[] {
  // Top-level statements become `_start` (the command's body) or `_initialize`
  // (run once by a proxy-wasm host) instead of a Wasm start function, which
  // would run before the host is ready to answer calls.
  const start = kind === 'wasi-command' ? '_start' : '_initialize';
  const runtimeExports = kind === 'proxy-wasm' && runtime !== 'stub' ? ['--exportRuntime'] : [];
  return ['--exportStart', start, ...runtimeExports];
}

/** kiln.toml `runtime = "stub" | "minimal" | "incremental"` overrides the default for the kind. */
async function runtimeFor(context: BuildContext, kind: CoreAppKind): Promise<Runtime> {
  const table = await readKilnToml(context.sourceDir);
  const declared = table === undefined ? undefined : tomlString(table, 'runtime');
  const runtime = RUNTIMES.find((candidate) => candidate === declared);
  if (declared !== undefined && runtime === undefined) {
    throw buildFailure(`kiln.toml: runtime must be one of ${RUNTIMES.join(', ')}`);
  }
  return runtime ?? DEFAULT_RUNTIME[kind];
}

async function locateOutput(context: BuildContext): Promise<string> {
  if (!(await isRegularFile(join(context.jobDir, OUTPUT_RELATIVE_PATH)))) throw buildFailure('asc produced no module');
  return OUTPUT_RELATIVE_PATH;
}

function parseJsonObject(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
