/**
 * C/C++ through Debian's clang 14 + wasi-libc. The convention authors follow
 * is written in ./README.md; keep the two in step.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppKind, BuildContext, BuildStep, Detection, Language } from '../language.ts';
import { buildFailure } from '../failure.ts';
import { isDirectory, isRegularFile, listFiles, readSmallText } from '../files.ts';
import { BASE_ENV, KILN_DIR, OUTPUT_RELATIVE_PATH, SANDBOX_KILN_DIR, SANDBOX_OUTPUT_PATH, SANDBOX_SOURCE_DIR } from '../paths.ts';
import { PROXY_WASM_CALLBACKS, PROXY_WASM_HOST_FUNCTIONS } from '../proxy-wasm-abi.ts';
import { asAppKind, readKilnToml } from '../kiln-toml.ts';

const CLANG = '/usr/bin/clang';
const SOURCE_EXTENSIONS = ['.c', '.cc', '.cpp', '.cxx'];
/** Beyond this an upload is not a small edge app, and argv would get huge. */
const MAX_SOURCES = 1000;
const IMPORTS_FILE = 'proxy-wasm-imports.txt';
/** Linker flags of a filter, in a response file so the build log stays readable. */
const LINK_FLAGS_FILE = 'proxy-wasm-link.rsp';

export function createC(): Language {
  return { id: 'c', detect, prepare, mounts: () => [], steps, locateOutput };
}

async function detect(sourceDir: string): Promise<Detection | undefined> {
  const sources = await findSources(sourceDir);
  if (sources.length === 0) return undefined;
  return { language: 'c', kind: (await declaredKind(sourceDir)) ?? (await detectKindFromSources(sourceDir, sources)) };
}

/**
 * Sources are every C/C++ file under src/ (recursively); without src/, the
 * files at the root only (a root-level recursive search would sweep up
 * tests and examples).
 */
export async function findSources(sourceDir: string): Promise<string[]> {
  const isSource = (name: string): boolean => SOURCE_EXTENSIONS.some((extension) => name.endsWith(extension));
  if (await isDirectory(join(sourceDir, 'src'))) {
    const found = await listFiles(join(sourceDir, 'src'), { accept: isSource, maxFiles: MAX_SOURCES + 1 });
    return found.map((path) => `src/${path}`);
  }
  const entries = await readdir(sourceDir, { withFileTypes: true });
  return entries.filter((entry) => entry.isFile() && isSource(entry.name)).map((entry) => entry.name).sort();
}

/** `kind = "proxy-wasm"` in kiln.toml, when present and valid. */
async function declaredKind(sourceDir: string): Promise<AppKind | undefined> {
  const table = await readKilnToml(sourceDir);
  return table === undefined ? undefined : asAppKind(table['kind']);
}

/** A source defining or calling a proxy_on_* function is a filter. */
async function detectKindFromSources(sourceDir: string, sources: string[]): Promise<AppKind> {
  for (const source of sources) {
    const text = await readSmallText(join(sourceDir, source));
    if (text !== undefined && /\bproxy_on_[a-z_]+\s*\(/.test(text)) return 'proxy-wasm';
  }
  return 'wasi-command';
}

async function prepare(context: BuildContext): Promise<void> {
  const sources = await findSources(context.sourceDir);
  if (sources.length === 0) throw buildFailure('no C/C++ sources: put *.c, *.cc or *.cpp files under src/ (or at the root)');
  if (sources.length > MAX_SOURCES) throw buildFailure(`too many C/C++ sources (more than ${MAX_SOURCES})`);
  if (context.kind === 'proxy-wasm') await writeFilterLinkFlags(context.jobDir);
  context.log(`kiln: compiling ${sources.length} source file(s) as a ${context.kind}`);
}

async function steps(context: BuildContext): Promise<BuildStep[]> {
  const sources = await findSources(context.sourceDir);
  const includes = (await isDirectory(join(context.sourceDir, 'include'))) ? ['-Iinclude'] : [];
  const command = [
    CLANG,
    '--target=wasm32-wasi',
    '-O2',
    ...includes,
    ...kindFlags(context.kind),
    '-o',
    SANDBOX_OUTPUT_PATH,
    // Relative paths from the upload, prefixed so none can read as an option.
    ...sources.map((source) => `./${source}`),
  ];
  return [{ name: 'clang', command, env: { ...BASE_ENV }, cwd: SANDBOX_SOURCE_DIR }];
}

/**
 * Every ABI callback the sources define is exported (so authors need no
 * attributes), and every ABI host function may stay undefined: it becomes an
 * import from module `env`. Anything else undefined is still a link error.
 */
async function writeFilterLinkFlags(jobDir: string): Promise<void> {
  const kilnDir = join(jobDir, KILN_DIR);
  await writeFile(join(kilnDir, IMPORTS_FILE), PROXY_WASM_HOST_FUNCTIONS.join('\n') + '\n');
  const flags = [
    ...PROXY_WASM_CALLBACKS.map((name) => `--export-if-defined=${name}`),
    `--allow-undefined-file=${SANDBOX_KILN_DIR}/${IMPORTS_FILE}`,
  ];
  await writeFile(join(kilnDir, LINK_FLAGS_FILE), flags.join('\n') + '\n');
}

function kindFlags(kind: AppKind): string[] {
  if (kind === 'wasi-command') return [];
  // A reactor: no _start, an _initialize that runs constructors once.
  return ['-mexec-model=reactor', `-Wl,@${SANDBOX_KILN_DIR}/${LINK_FLAGS_FILE}`];
}

async function locateOutput(context: BuildContext): Promise<string> {
  if (!(await isRegularFile(join(context.jobDir, OUTPUT_RELATIVE_PATH)))) throw buildFailure('clang produced no module');
  return OUTPUT_RELATIVE_PATH;
}
