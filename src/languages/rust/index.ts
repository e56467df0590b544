/**
 * Rust through Debian's cargo/rustc 1.63 targeting wasm32-wasi, offline.
 * Conventions for authors are in ./README.md.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from '../../sandbox/sandbox.ts';
import type { AppKind, BuildContext, BuildStep, Detection, Language } from '../language.ts';
import { PlatformError } from '../../errors.ts';
import { buildFailure } from '../failure.ts';
import { isDirectory, isRegularFile, lstatOrUndefined, removeWithLog } from '../files.ts';
import { BASE_ENV, SANDBOX_PLATFORM_DIR, SANDBOX_SOURCE_DIR } from '../paths.ts';
import { expectedModuleNames, kindOf, readCargoManifest } from './manifest.ts';
import { CARGO_HOME_DIR, writeOfflineSetup, type RegistryLocation } from './offline-registry.ts';
import type { DependencyCaching } from '../../optimize/cache/plan.ts';
import { rustCachePlan } from './dependency-cache.ts';
import { DEFAULT_RUST_SDK_DIR, SANDBOX_RUST_SDK_DIR, type SdkLocation } from './sdk.ts';

export const DEFAULT_CARGO_REGISTRY = '/usr/share/cargo/registry';
const CARGO = '/usr/bin/cargo';
const RUSTC = '/usr/bin/rustc';
const TARGET = 'wasm32-wasi';
/** CARGO_TARGET_DIR lives beside the source, so an uploaded target/ is never reused. */
const TARGET_DIR = 'target';
const RELEASE_DIR = `${TARGET_DIR}/${TARGET}/release`;

export interface RustOptions {
  /** Host path of a cargo directory source (default: Debian's crates). */
  registryDir?: string;
  /** Host directory of Kiln's SDK crates (default: sdk/rust of this checkout); mounted read-only in every build. */
  sdkDir?: string;
}

/** Rust also supports the dependency cache: `target/` is reused across builds (./dependency-cache.ts). */
export function createRust(options: RustOptions = {}): Language & DependencyCaching {
  const registry = registryLocation(options.registryDir ?? DEFAULT_CARGO_REGISTRY);
  const sdk: SdkLocation = { host: options.sdkDir ?? DEFAULT_RUST_SDK_DIR, sandbox: SANDBOX_RUST_SDK_DIR };
  return {
    id: 'rust',
    detect,
    prepare: (context) => prepare(context, registry, sdk),
    mounts: () => [...registryMounts(registry), { host: sdk.host, sandbox: sdk.sandbox }],
    steps,
    locateOutput,
    cachePlan: (context) => rustCachePlan(context, registry, { target: TARGET, profile: 'release', rustc: RUSTC, cargo: CARGO }, context.kind, sdk),
  };
}

async function detect(sourceDir: string): Promise<Detection | undefined> {
  const manifest = await readCargoManifest(sourceDir);
  return manifest === undefined ? undefined : { language: 'rust', kind: kindOf(manifest) };
}

/** /usr is already visible read-only in the sandbox; any other registry gets its own mount. */
function registryLocation(host: string): RegistryLocation {
  return host.startsWith('/usr/') ? { host, sandbox: host } : { host, sandbox: `${SANDBOX_PLATFORM_DIR}/cargo-registry` };
}

function registryMounts(registry: RegistryLocation): Mount[] {
  return registry.host === registry.sandbox ? [] : [{ host: registry.host, sandbox: registry.sandbox }];
}

async function prepare(context: BuildContext, registry: RegistryLocation, sdk: SdkLocation): Promise<void> {
  if (!(await isRegularFile(join(context.sourceDir, 'Cargo.toml')))) {
    throw buildFailure('no Cargo.toml at the root of the upload');
  }
  if (!(await isDirectory(registry.host))) {
    // The operator's registry is platform state: missing means our fault, not the user's.
    throw new PlatformError('cargo_registry_missing', `the cargo registry ${registry.host} does not exist`);
  }
  await removeIgnoredConfig(context);
  if (!(await isDirectory(sdk.host))) {
    throw new PlatformError('rust_sdk_missing', `Kiln's Rust SDK directory ${sdk.host} does not exist`);
  }
  await writeOfflineSetup(context.jobDir, context.sourceDir, registry, context.log, sdk);
}

/**
 * Cargo reads .cargo/config* from the working directory and its parents and
 * rustup reads rust-toolchain*: an upload could point cargo at a network
 * registry, a custom linker or a rustc wrapper. Only the root matters (cargo
 * is started in /build/src and /build is ours), and vendored crates keep
 * their files so their checksums still match.
 */
async function removeIgnoredConfig(context: BuildContext): Promise<void> {
  const why = 'Kiln uses its own offline cargo configuration';
  const cargoDir = join(context.sourceDir, '.cargo');
  const stats = await lstatOrUndefined(cargoDir);
  if (stats !== undefined && !stats.isDirectory()) {
    // A symlink or a file: the link goes, whatever it points at stays.
    await removeWithLog(context.sourceDir, '.cargo', why, context.log);
  } else if (stats !== undefined) {
    for (const name of await readdir(cargoDir)) {
      if (name.startsWith('config')) await removeWithLog(context.sourceDir, `.cargo/${name}`, why, context.log);
    }
  }
  for (const name of await readdir(context.sourceDir)) {
    if (name.startsWith('rust-toolchain')) {
      await removeWithLog(context.sourceDir, name, 'the toolchain is chosen by Kiln', context.log);
    }
  }
}

async function steps(context: BuildContext): Promise<BuildStep[]> {
  const env = cargoEnv();
  const result: BuildStep[] = [];
  if (await isRegularFile(join(context.sourceDir, 'Cargo.lock'))) {
    result.push({ name: 'resolve dependencies', command: ['/usr/bin/sh', '-c', RESOLVE_SCRIPT], env, cwd: SANDBOX_SOURCE_DIR });
  }
  result.push({ name: 'cargo build', command: buildCommand(context.kind), env, cwd: SANDBOX_SOURCE_DIR });
  return result;
}

/**
 * An uploaded Cargo.lock usually comes from crates.io and may name versions
 * the offline registry lacks. Resolution alone runs no build script, so we
 * try it first and, when it fails, regenerate the lock file against what we
 * have, saying so in the log. A lock that still does not resolve fails the
 * build with cargo's own error.
 */
const RESOLVE_SCRIPT = [
  `if ! ${CARGO} fetch --offline; then`,
  '  echo "kiln: Cargo.lock does not resolve against the offline registry; deleting it and resolving again"',
  '  rm -f Cargo.lock',
  `  ${CARGO} generate-lockfile --offline`,
  'fi',
].join('\n');

function buildCommand(kind: AppKind): string[] {
  // A filter is the library's cdylib; a command is a binary. Building only that target saves time.
  const selection = kind === 'proxy-wasm' ? '--lib' : '--bins';
  return [CARGO, 'build', '--release', '--target', TARGET, '--offline', selection];
}

function cargoEnv(): Record<string, string> {
  return {
    ...BASE_ENV,
    CARGO_HOME: `/build/${CARGO_HOME_DIR}`,
    CARGO_TARGET_DIR: `/build/${TARGET_DIR}`,
    RUSTC,
    CARGO_TERM_COLOR: 'never',
  };
}

async function locateOutput(context: BuildContext): Promise<string> {
  const manifest = await readCargoManifest(context.sourceDir);
  const releaseDir = join(context.jobDir, RELEASE_DIR);
  for (const name of manifest === undefined ? [] : expectedModuleNames(manifest, context.kind)) {
    if (await isRegularFile(join(releaseDir, name))) return `${RELEASE_DIR}/${name}`;
  }
  // Workspaces and unusual layouts: accept the single module cargo produced.
  const modules = await listModules(releaseDir);
  if (modules.length === 1 && modules[0] !== undefined) return `${RELEASE_DIR}/${modules[0]}`;
  const hint =
    context.kind === 'proxy-wasm'
      ? 'a proxy-wasm filter needs [lib] crate-type = ["cdylib"]'
      : 'a wasi-command needs a binary (src/main.rs or [[bin]])';
  const found = modules.length === 0 ? 'none' : modules.join(', ');
  throw buildFailure(`cargo produced no single module under ${RELEASE_DIR} (found: ${found}); ${hint}`);
}

async function listModules(directory: string): Promise<string[]> {
  if (!(await isDirectory(directory))) return [];
  const entries = await readdir(directory, { withFileTypes: true });
  return entries.filter((entry) => entry.isFile() && entry.name.endsWith('.wasm')).map((entry) => entry.name).sort();
}
