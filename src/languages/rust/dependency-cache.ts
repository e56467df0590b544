/**
 * The Rust dependency cache key: `target/` is reused by a later build of the
 * same owner when everything the compiled dependencies depend on is the
 * same. See docs/dependency-cache.md for the design and its threat model.
 *
 * Key inputs (all read on the host without running anything from the upload):
 *   - toolchain: `rustc -V` and `cargo -V` of Kiln's own toolchain;
 *   - target (wasm32-wasip1 or wasm32-wasi), profile name (release) and the root manifest's
 *     `[profile.*]` settings, and the kind (`--lib` or `--bins`);
 *   - the lock file: Cargo.lock's bytes, or, without one, every Cargo.toml
 *     (cargo resolves the same way from the same manifests and registry);
 *   - the registry: the names and modification times of its crates
 *     (a Debian upgrade changes them), and the content of Kiln's SDK crates;
 *   - vendored crates: every file under vendor/, path and content (a
 *     hand-made crate may carry no checksums for cargo to verify);
 *   - every build.rs outside vendor/: the workspace's own build scripts run
 *     with the power to write into target/, so changing one starts a fresh
 *     entry instead of building on what the old one left.
 * The user's other sources are deliberately not in the key: that is the
 * one-line change the cache exists for. The restore step makes them newer
 * than every restored file, so cargo always rebuilds the user's crates.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { createHash, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CachePlan } from '../../build-cache/plan.ts';
import type { AppKind, BuildContext } from '../language.ts';
import { listFiles, readSmallText } from '../files.ts';
import { parseToml } from '../toml.ts';
import type { RegistryLocation } from './offline-registry.ts';
import { sdkFingerprint, type SdkLocation } from './sdk.ts';

const run = promisify(execFile);

export interface RustCacheInputs {
  target: string;
  profile: string;
  /** Host paths of the toolchain's binaries, and the environment they need. */
  rustc: string;
  cargo: string;
  env?: Record<string, string>;
}

/** Bumped when the layout of entries or the restore logic changes. */
const KEY_VERSION = 1;
const SKIPPED_DIRECTORIES: ReadonlySet<string> = new Set(['target', 'vendor', '.git']);
const MAX_VENDOR_FILES = 50_000;
const MAX_HASHED_BYTES = 512 * 1024 ** 2;
const REGISTRY_FINGERPRINT_TTL_MS = 60_000;
const HASH_CHUNK_BYTES = 1024 * 1024;

const toolchains = new Map<string, Promise<string>>();

/** `rustc -V` / `cargo -V` of a platform toolchain (trusted binaries, no upload input), once per toolchain and process. */
function toolchainVersion(inputs: RustCacheInputs): Promise<string> {
  const key = `${inputs.rustc}\0${inputs.cargo}`;
  let version = toolchains.get(key);
  if (version === undefined) {
    // The toolchain inherits Kiln's own environment (no setting is read from it; see src/config.ts).
    const options = { env: { ...process.env, ...inputs.env } };
    version = Promise.all([run(inputs.rustc, ['-V'], options), run(inputs.cargo, ['-V'], options)]).then(([rustc, cargo]) => `${rustc.stdout.trim()} / ${cargo.stdout.trim()}`);
    version.catch(() => toolchains.delete(key));
    toolchains.set(key, version);
  }
  return version;
}

export async function rustCachePlan(context: BuildContext, registry: RegistryLocation, inputs: RustCacheInputs, kind: AppKind, sdk?: SdkLocation): Promise<CachePlan | { unavailable: string }> {
  let version: string;
  try {
    version = await toolchainVersion(inputs);
  } catch (error) {
    return { unavailable: `the toolchain version is unknown (${(error as Error).message})` };
  }
  // Nothing to reuse: the save step would cost a sandbox run for no later gain.
  if (!(await mayHaveDependencies(context.sourceDir))) return { unavailable: 'the crate has no dependencies' };
  const vendor = await hashVendor(context.sourceDir);
  if (vendor !== null && typeof vendor === 'object') return vendor;
  const lock = await lockDigest(context.sourceDir);
  const parts = {
    v: KEY_VERSION,
    toolchain: version,
    target: inputs.target,
    profile: inputs.profile,
    profileSettings: await profileSettings(context.sourceDir),
    kind,
    lock,
    registry: await registryFingerprint(registry.host),
    sdk: sdk === undefined ? null : await sdkFingerprint(sdk),
    vendor,
    buildScripts: await hashBuildScripts(context.sourceDir),
  };
  const key = createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 40);
  const describe = `${version}, ${inputs.target}/${inputs.profile}, ${lock.startsWith('lock:') ? 'Cargo.lock' : 'manifests (no Cargo.lock)'} ${lock.slice(lock.indexOf(':') + 1, lock.indexOf(':') + 13)}${vendor === null ? '' : ', vendor/'}`;
  return { key, directories: ['target'], keyedSourceDirectories: vendor === null ? [] : ['vendor'], describe };
}

/** From the root manifest alone; anything unclear (a workspace, vendored crates, no readable manifest) counts as yes. */
async function mayHaveDependencies(sourceDir: string): Promise<boolean> {
  if ((await lstat(join(sourceDir, 'vendor')).catch(() => undefined))?.isDirectory() === true) return true;
  const text = await readSmallText(join(sourceDir, 'Cargo.toml'));
  if (text === undefined) return true;
  return declaresDependencies(text);
}

/**
 * A line scan rather than parseToml, which skips inline tables
 * (`serde = { version = "1" }`): any entry in a `[dependencies]`,
 * `[build-dependencies]` or `[target.….dependencies]` table, a
 * `[dependencies.name]` table, a top-level `dependencies.name = …` key or a
 * `[workspace]` says yes. `[dev-dependencies]` are not built by `cargo build`.
 */
export function declaresDependencies(manifest: string): boolean {
  const table = /(^|\.)(build-)?dependencies(\.|$)/;
  let inDependencies = false;
  for (const raw of manifest.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?$/.exec(line)?.[1];
    if (header !== undefined) {
      if (/^workspace(\.|$)/.test(header) || /(^|\.)(build-)?dependencies\./.test(header)) return true;
      inDependencies = table.test(header);
    } else if (inDependencies || /^(build-)?dependencies\s*\./.test(line)) {
      return true;
    }
  }
  return false;
}

async function lockDigest(sourceDir: string): Promise<string> {
  const lock = await readSmallText(join(sourceDir, 'Cargo.lock'), 16 * 1024 ** 2);
  if (lock !== undefined) return `lock:${sha256(lock)}`;
  const hash = createHash('sha256');
  for (const manifest of await listFiles(sourceDir, { skipDirectories: SKIPPED_DIRECTORIES, accept: (name) => name === 'Cargo.toml' })) {
    hash.update(`${manifest}\0${(await readSmallText(join(sourceDir, manifest))) ?? ''}\0`);
  }
  return `manifests:${hash.digest('hex')}`;
}

async function profileSettings(sourceDir: string): Promise<string> {
  const text = await readSmallText(join(sourceDir, 'Cargo.toml'));
  if (text === undefined) return '';
  const table = parseToml(text);
  const entries = Object.entries(table)
    .filter(([key]) => key.startsWith('profile.'))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

let registryCache: { host: string; at: number; fingerprint: Promise<string> } | undefined;

function registryFingerprint(host: string): Promise<string> {
  if (registryCache?.host === host && Date.now() - registryCache.at < REGISTRY_FINGERPRINT_TTL_MS) return registryCache.fingerprint;
  const fingerprint = (async () => {
    const hash = createHash('sha256').update(host);
    for (const name of (await readdir(host)).sort()) {
      const stats = await lstat(join(host, name)).catch(() => undefined);
      hash.update(`\0${name}:${stats?.mtimeMs ?? 0}`);
    }
    return hash.digest('hex');
  })();
  registryCache = { host, at: Date.now(), fingerprint };
  return fingerprint;
}

/** null without vendor/; an unavailable reason when it is too large to hash. */
async function hashVendor(sourceDir: string): Promise<string | null | { unavailable: string }> {
  const vendorDir = join(sourceDir, 'vendor');
  const stats = await lstat(vendorDir).catch(() => undefined);
  if (!stats?.isDirectory()) return null;
  const files = await listFiles(vendorDir, { maxFiles: MAX_VENDOR_FILES + 1 });
  if (files.length > MAX_VENDOR_FILES) return { unavailable: `vendor/ holds more than ${MAX_VENDOR_FILES} files` };
  const hash = createHash('sha256');
  let total = 0;
  for (const file of files) {
    const bytes = hashFile(hash, join(vendorDir, file), file, MAX_HASHED_BYTES - total);
    if (bytes === undefined) return { unavailable: `vendor/ is larger than ${MAX_HASHED_BYTES / 1024 ** 2} MiB` };
    total += bytes;
  }
  return hash.digest('hex');
}

async function hashBuildScripts(sourceDir: string): Promise<string> {
  const hash = createHash('sha256');
  for (const file of await listFiles(sourceDir, { skipDirectories: SKIPPED_DIRECTORIES, accept: (name) => name === 'build.rs' })) {
    hashFile(hash, join(sourceDir, file), file, MAX_HASHED_BYTES);
  }
  return hash.digest('hex');
}

/**
 * Feeds `name`, then the file's content, into hash; answers the bytes read,
 * or undefined past maxBytes. Synchronous: the upload is in the job's volume
 * (a tmpfs), where a read is a memory copy of at most HASH_CHUNK_BYTES, and
 * a vendor/ tree of ~100 files would otherwise take ~400 thread-pool round
 * trips one after the other.
 */
function hashFile(hash: Hash, path: string, name: string, maxBytes: number): number | undefined {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) return 0;
    if (stats.size > maxBytes) return undefined;
    hash.update(`\0${name}\0${stats.size}\0`);
    const buffer = Buffer.alloc(Math.min(stats.size, HASH_CHUNK_BYTES));
    let total = 0;
    while (total < stats.size) {
      const bytesRead = readSync(fd, buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      total += bytesRead;
    }
    return total;
  } finally {
    closeSync(fd);
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
