/**
 * Locates the AssemblyScript compiler Kiln itself ships (its own
 * node_modules) and the packages it needs at run time, so they can be
 * mounted read-only into the sandbox. An upload's node_modules never
 * provides the compiler.
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Mount } from '../../sandbox/sandbox.ts';
import { PlatformError } from '../../errors.ts';
import { SANDBOX_PLATFORM_DIR } from '../../build-kit/paths.ts';

export const SANDBOX_NODE_MODULES = `${SANDBOX_PLATFORM_DIR}/node_modules`;

/**
 * AssemblyScript packages Kiln provides to every build, found through
 * `asc --path`: an import of "kiln-proxy-wasm" reads
 * /opt/kiln/aslib-packages/kiln-proxy-wasm/index.ts. An upload's own
 * node_modules/<package> is searched first (like a vendored crate).
 */
export const SANDBOX_AS_PACKAGES = `${SANDBOX_PLATFORM_DIR}/aslib-packages`;
export const AS_SDK_PACKAGE = 'kiln-proxy-wasm';

/** Host directory of Kiln's AssemblyScript SDK (sdk/assemblyscript of this checkout). */
export const DEFAULT_AS_SDK_DIR = fileURLToPath(new URL('../../../sdk/assemblyscript/', import.meta.url)).replace(/\/$/, '');

/** The SDK, mounted read-only as a package on asc's --path. */
export function sdkMounts(sdkDir: string): Mount[] {
  return [{ host: sdkDir, sandbox: `${SANDBOX_AS_PACKAGES}/${AS_SDK_PACKAGE}` }];
}

/** Version of a compiler package (for the build log). */
export function compilerVersion(compilerDir: string): string {
  const manifest: unknown = JSON.parse(readFileSync(join(compilerDir, 'package.json'), 'utf8'));
  return typeof manifest === 'object' && manifest !== null && 'version' in manifest ? String(manifest.version) : 'unknown';
}

/** Host directory of Kiln's own `assemblyscript` package. */
export function defaultCompilerDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('assemblyscript/package.json'));
}

/**
 * The compiler package and its dependencies, transitively, each mounted at
 * /opt/kiln/node_modules/<name>: a flat layout Node's resolution finds from
 * the compiler's own files. Synchronous because it runs once, when the
 * language is created, and Language.mounts() is synchronous.
 */
export function compilerMounts(compilerDir: string): Mount[] {
  const found = new Map<string, string>();
  collectPackage('assemblyscript', compilerDir, found);
  return [...found].map(([name, host]) => ({ host, sandbox: `${SANDBOX_NODE_MODULES}/${name}` }));
}

function collectPackage(name: string, directory: string, found: Map<string, string>): void {
  if (found.has(name)) return;
  found.set(name, directory);
  for (const dependency of dependenciesOf(directory)) {
    collectPackage(dependency, locatePackage(dependency, directory), found);
  }
}

function dependenciesOf(packageDir: string): string[] {
  const manifest: unknown = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  if (typeof manifest !== 'object' || manifest === null || !('dependencies' in manifest)) return [];
  const dependencies = manifest.dependencies;
  return typeof dependencies === 'object' && dependencies !== null ? Object.keys(dependencies) : [];
}

/** Node's lookup: <dir>/node_modules/<name>, then each parent's. */
function locatePackage(name: string, fromDir: string): string {
  for (let directory = fromDir; ; directory = dirname(directory)) {
    const candidate = join(directory, 'node_modules', name);
    // Kiln's own install is trusted: following a pnpm-style symlink here is fine.
    if (statSync(candidate, { throwIfNoEntry: false })?.isDirectory() === true) return candidate;
    if (dirname(directory) === directory) break;
  }
  throw new PlatformError('toolchain_missing', `the AssemblyScript compiler's dependency ${name} is not installed`);
}

/** Node must be visible in the sandbox; anything outside /usr is mounted at its own path. */
export function nodeMounts(nodePath: string): Mount[] {
  if (nodePath.startsWith('/usr/')) return [];
  const prefix = dirname(dirname(nodePath));
  return [{ host: prefix, sandbox: prefix }];
}
