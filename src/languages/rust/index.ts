/**
 * Rust, offline, on one of the installed toolchains (./toolchains.ts): the
 * modern one (rustc 1.85, wasm32-wasip1) or Debian's 1.63 (wasm32-wasi),
 * chosen per app by ./toolchain-choice.ts. Conventions for authors are in
 * ./README.md.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from '../../sandbox/sandbox.ts';
import type { AppKind, BuildContext, BuildStep, DependencyCaching, DependencyFetching, Detection, Language } from '../language.ts';
import { PlatformError } from '../../errors.ts';
import { buildFailure } from '../../build-kit/failure.ts';
import { isDirectory, isRegularFile, lstatOrUndefined, removeWithLog } from '../files.ts';
import { BASE_ENV, SANDBOX_PLATFORM_DIR, SANDBOX_SOURCE_DIR } from '../../build-kit/paths.ts';
import { expectedModuleNames, kindOf, readCargoManifest } from './manifest.ts';
import { CARGO_HOME_DIR, writeOfflineSetup, type RegistryLocation } from './offline-registry.ts';
import { rustCachePlan } from './dependency-cache.ts';
import { cargoFetchPlan } from './cargo-fetch.ts';
import { linkFetchedCrates } from './fetched-crates.ts';
import { DEFAULT_RUST_SDK_DIR, SANDBOX_RUST_SDK_DIR, listSdkCrates, type SdkLocation } from './sdk.ts';
import { DEFAULT_TOOLCHAINS_DIR, installedToolchains, sandboxRootOf, type RustToolchain } from './toolchains.ts';
import { chooseToolchain, readAppRustFacts, type ToolchainChoice } from './toolchain-choice.ts';

export const DEFAULT_CARGO_REGISTRY = '/usr/share/cargo/registry';
/** CARGO_TARGET_DIR lives beside the source, so an uploaded target/ is never reused. */
const TARGET_DIR = 'target';

export interface RustOptions {
  /** Host path of a cargo directory source (default: Debian's crates). */
  registryDir?: string;
  /** Host directory of Kiln's SDK crates (default: sdk/rust of this checkout); mounted read-only in every build. */
  sdkDir?: string;
  /** Where scripts/toolchains/rust-modern.sh put modern toolchains (default: KILN_TOOLCHAINS_DIR, see src/config.ts). */
  toolchainsDir?: string;
}

/** Rust also supports the dependency cache: `target/` is reused across builds (./dependency-cache.ts). */
export function createRust(options: RustOptions = {}): Language & DependencyCaching & DependencyFetching {
  const registry = registryLocation(options.registryDir ?? DEFAULT_CARGO_REGISTRY);
  const sdk: SdkLocation = { host: options.sdkDir ?? DEFAULT_RUST_SDK_DIR, sandbox: SANDBOX_RUST_SDK_DIR };
  const toolchains = options.toolchainsDir ?? DEFAULT_TOOLCHAINS_DIR;
  // The choice is made once, in prepare, and every later call of the same build reads it.
  const choices = new WeakMap<BuildContext, ToolchainChoice>();
  const chosen = (context: BuildContext): RustToolchain => {
    const choice = choices.get(context);
    if (choice === undefined) throw new PlatformError('rust_toolchain_unchosen', 'the Rust toolchain is chosen in prepare, which has not run');
    return choice.toolchain;
  };
  return {
    id: 'rust',
    detect,
    prepare: async (context) => {
      choices.set(context, await prepare(context, registry, sdk, toolchains));
    },
    mounts: (context) => [...registryMounts(registry), { host: sdk.host, sandbox: sdk.sandbox }, ...toolchainMounts(chosen(context))],
    steps: async (context) => {
      await linkFetchedCrates(context);
      return steps(context, chosen(context));
    },
    // Locked crates from the operator's registry mirror, when one is configured (src/fetch/cargo.ts).
    fetchPlan: (context, config) => cargoFetchPlan(context, config),
    locateOutput: (context) => locateOutput(context, chosen(context)),
    cachePlan: (context) => {
      const toolchain = chosen(context);
      const inputs = { target: toolchain.target, profile: 'release', rustc: toolchain.host.rustc, cargo: toolchain.host.cargo, env: toolchain.host.env };
      return rustCachePlan(context, registry, inputs, context.kind, sdk);
    },
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

function toolchainMounts(toolchain: RustToolchain): Mount[] {
  const sandbox = sandboxRootOf(toolchain);
  return toolchain.hostRoot === undefined || sandbox === undefined ? [] : [{ host: toolchain.hostRoot, sandbox }];
}

async function prepare(context: BuildContext, registry: RegistryLocation, sdk: SdkLocation, toolchainsDir: string): Promise<ToolchainChoice> {
  if (!(await isRegularFile(join(context.sourceDir, 'Cargo.toml')))) {
    throw buildFailure('no Cargo.toml at the root of the upload');
  }
  if (!(await isDirectory(registry.host))) {
    // The operator's registry is platform state: missing means our fault, not the user's.
    throw new PlatformError('cargo_registry_missing', `the cargo registry ${registry.host} does not exist`);
  }
  if (!(await isDirectory(sdk.host))) {
    throw new PlatformError('rust_sdk_missing', `Kiln's Rust SDK directory ${sdk.host} does not exist`);
  }
  // Read before removeIgnoredConfig deletes rust-toolchain*: the file only picks among installed toolchains.
  const choice = await chooseFor(context, registry, sdk, toolchainsDir);
  await removeIgnoredConfig(context);
  await writeOfflineSetup(context.jobDir, context.sourceDir, registry, context.log, sdk);
  return choice;
}

async function chooseFor(context: BuildContext, registry: RegistryLocation, sdk: SdkLocation, toolchainsDir: string): Promise<ToolchainChoice> {
  const installed = await installedToolchains(toolchainsDir);
  if (installed.length === 0) throw new PlatformError('rust_toolchain_missing', `no Rust toolchain is installed (Debian's rustc, or ${toolchainsDir}; run scripts/setup.sh)`);
  const offline = new Set([...(await readdir(registry.host)), ...(await listSdkCrates(sdk)).map((crate) => crate.entry)]);
  const choice = chooseToolchain(await readAppRustFacts(context.sourceDir), installed, offline);
  const { toolchain } = choice;
  context.log(`kiln: toolchain ${toolchain.name} (${toolchain.rustcVersion}), target ${toolchain.target}: ${choice.reason}`);
  context.record?.({ toolchain: { name: toolchain.name, rustc: toolchain.rustcVersion, target: toolchain.target, reason: choice.reason } });
  return choice;
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
      await removeWithLog(context.sourceDir, name, 'it was read only to pick among the installed toolchains', context.log);
    }
  }
}

async function steps(context: BuildContext, toolchain: RustToolchain): Promise<BuildStep[]> {
  const env = cargoEnv(toolchain);
  const result: BuildStep[] = [];
  if (await isRegularFile(join(context.sourceDir, 'Cargo.lock'))) {
    result.push({ name: 'resolve dependencies', command: ['/usr/bin/sh', '-c', resolveScript(toolchain.cargo)], env, cwd: SANDBOX_SOURCE_DIR });
  }
  result.push({ name: 'cargo build', command: buildCommand(context.kind, toolchain), env, cwd: SANDBOX_SOURCE_DIR });
  return result;
}

/**
 * An uploaded Cargo.lock usually comes from crates.io and may name versions
 * the offline registry lacks. Resolution alone runs no build script, so we
 * try it first and, when it fails, regenerate the lock file against what we
 * have, saying so in the log. A lock that still does not resolve fails the
 * build with cargo's own error.
 */
function resolveScript(cargo: string): string {
  return [
    `if ! ${cargo} fetch --offline; then`,
    '  echo "kiln: Cargo.lock does not resolve against the offline registry; deleting it and resolving again"',
    '  rm -f Cargo.lock',
    `  ${cargo} generate-lockfile --offline`,
    'fi',
  ].join('\n');
}

function buildCommand(kind: AppKind, toolchain: RustToolchain): string[] {
  // A filter is the library's cdylib; a command is a binary. Building only that target saves time.
  const selection = kind === 'proxy-wasm' ? '--lib' : '--bins';
  return [toolchain.cargo, 'build', '--release', '--target', toolchain.target, '--offline', selection];
}

function cargoEnv(toolchain: RustToolchain): Record<string, string> {
  return {
    ...BASE_ENV,
    ...toolchain.env,
    CARGO_HOME: `/build/${CARGO_HOME_DIR}`,
    CARGO_TARGET_DIR: `/build/${TARGET_DIR}`,
    RUSTC: toolchain.rustc,
    CARGO_TERM_COLOR: 'never',
  };
}

async function locateOutput(context: BuildContext, toolchain: RustToolchain): Promise<string> {
  const manifest = await readCargoManifest(context.sourceDir);
  const relativeDir = `${TARGET_DIR}/${toolchain.target}/release`;
  const releaseDir = join(context.jobDir, relativeDir);
  for (const name of manifest === undefined ? [] : expectedModuleNames(manifest, context.kind)) {
    if (await isRegularFile(join(releaseDir, name))) return `${relativeDir}/${name}`;
  }
  // Workspaces and unusual layouts: accept the single module cargo produced.
  const modules = await listModules(releaseDir);
  if (modules.length === 1 && modules[0] !== undefined) return `${relativeDir}/${modules[0]}`;
  const hint =
    context.kind === 'proxy-wasm'
      ? 'a proxy-wasm filter needs [lib] crate-type = ["cdylib"]'
      : 'a wasi-command needs a binary (src/main.rs or [[bin]])';
  const found = modules.length === 0 ? 'none' : modules.join(', ');
  throw buildFailure(`cargo produced no single module under ${relativeDir} (found: ${found}); ${hint}`);
}

async function listModules(directory: string): Promise<string[]> {
  if (!(await isDirectory(directory))) return [];
  const entries = await readdir(directory, { withFileTypes: true });
  return entries.filter((entry) => entry.isFile() && entry.name.endsWith('.wasm')).map((entry) => entry.name).sort();
}
