/**
 * C/C++ through Debian's clang 14 + wasi-libc, and libc++/libc++abi for
 * wasm32 when there are C++ sources. The convention authors follow is
 * written in ./README.md; keep the two in step.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AppKind, BuildContext, BuildStep, Detection, Language } from '../language.ts';
import { buildFailure } from '../../build-kit/failure.ts';
import { isDirectory, isRegularFile, listFiles, readSmallText } from '../files.ts';
import { BASE_ENV, KILN_DIR, OUTPUT_RELATIVE_PATH, SANDBOX_KILN_DIR, SANDBOX_OUTPUT_PATH, SANDBOX_SOURCE_DIR } from '../../build-kit/paths.ts';
import { PROXY_WASM_CALLBACKS, PROXY_WASM_HOST_FUNCTIONS } from '../../wasm/proxy-wasm-abi.ts';
import { asAppKind, readKilnToml } from '../kiln-toml.ts';

const CLANG = '/usr/bin/clang';
const CLANGXX = '/usr/bin/clang++';
const C_EXTENSIONS = ['.c'];
const CXX_EXTENSIONS = ['.cc', '.cpp', '.cxx'];
const SOURCE_EXTENSIONS = [...C_EXTENSIONS, ...CXX_EXTENSIONS];
/** Clang 14 defaults to C++14; C++17 is what today's code expects. */
export const DEFAULT_CXX_STANDARD = 'c++17';
const CXX_STANDARDS = /^(c|gnu)\+\+(11|14|17|20|2a|2b)$/;
/** Debian's wasm32 libc++abi is built without exception support: a throw could not link. */
const CXX_FLAGS = ['-fno-exceptions'];
/** C objects of a mixed C/C++ upload, compiled apart so C keeps C's rules. */
const OBJECTS_DIR = 'objects';
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
  const cxx = sources.filter((source) => !isC(source)).length;
  if (cxx > 0) {
    await mkdir(join(context.jobDir, KILN_DIR, OBJECTS_DIR), { recursive: true });
    context.log(`kiln: C++ (${await cxxStandard(context.sourceDir)}, -fno-exceptions, libc++): ${cxx} C++ and ${sources.length - cxx} C source file(s), linked as C++`);
  }
  context.log(`kiln: compiling ${sources.length} source file(s) as a ${context.kind}`);
}

async function steps(context: BuildContext): Promise<BuildStep[]> {
  const sources = await findSources(context.sourceDir);
  const includes = (await isDirectory(join(context.sourceDir, 'include'))) ? ['-Iinclude'] : [];
  const common = ['--target=wasm32-wasi', '-O2', ...includes];
  // Relative paths from the upload, prefixed so none can read as an option.
  const cSources = sources.filter(isC).map((source) => `./${source}`);
  const cxxSources = sources.filter((source) => !isC(source)).map((source) => `./${source}`);
  if (cxxSources.length === 0) {
    return [{ name: 'clang', command: [CLANG, ...common, ...kindFlags(context.kind), '-o', SANDBOX_OUTPUT_PATH, ...cSources], env: { ...BASE_ENV }, cwd: SANDBOX_SOURCE_DIR }];
  }
  // C++: linked by clang++ (libc++, libc++abi); C sources beside it are compiled as C first.
  const standard = await cxxStandard(context.sourceDir);
  const objects = cSources.map((_, index) => `${SANDBOX_KILN_DIR}/${OBJECTS_DIR}/c${index}.o`);
  const cSteps: BuildStep[] = cSources.map((source, index) => ({
    name: `clang ${source}`,
    command: [CLANG, ...common, '-c', '-o', objects[index] ?? '', source],
    env: { ...BASE_ENV },
    cwd: SANDBOX_SOURCE_DIR,
  }));
  const link = [CLANGXX, ...common, `-std=${standard}`, ...CXX_FLAGS, ...kindFlags(context.kind), '-o', SANDBOX_OUTPUT_PATH, ...cxxSources, ...objects];
  return [...cSteps, { name: 'clang++', command: link, env: { ...BASE_ENV }, cwd: SANDBOX_SOURCE_DIR }];
}

function isC(source: string): boolean {
  return C_EXTENSIONS.some((extension) => source.endsWith(extension));
}

/** `cxx-standard = "c++20"` in kiln.toml, else C++17; anything but a known standard is the user's error. */
async function cxxStandard(sourceDir: string): Promise<string> {
  const declared = (await readKilnToml(sourceDir))?.['cxx-standard'];
  if (declared === undefined) return DEFAULT_CXX_STANDARD;
  if (typeof declared !== 'string' || !CXX_STANDARDS.test(declared)) {
    throw buildFailure(`kiln.toml: cxx-standard must be one of c++11, c++14, c++17, c++20, c++2b (or gnu++…), got ${JSON.stringify(declared)}`);
  }
  return declared;
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
