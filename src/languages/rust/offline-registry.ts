/**
 * Cargo runs fully offline: crates.io is replaced by a cargo `directory`
 * source. Cargo accepts exactly one directory per source, so every build
 * gets a merged directory inside the job dir holding one symlink per crate:
 * the upload's vendored crates (`cargo vendor` output in `vendor/`), then
 * Kiln's SDK crates (./sdk.ts, e.g. kiln-proxy-wasm, mounted read-only),
 * then every crate of the operator's registry; an earlier one wins over a
 * later one of the same name and version. The symlinks point at sandbox
 * paths and are only ever resolved inside the sandbox.
 *
 * Each crate of a directory source needs a `.cargo-checksum.json`
 * (`{"files": {...}, "package": "<sha256 of the .crate>"}`). `cargo vendor`
 * writes it; Debian's registry ships it with an empty `files` map. For a
 * hand-made vendored crate without one we write `{"files":{}}` (no file
 * is verified, no package checksum is claimed) and say so in the log.
 */
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildFailure } from '../../build-kit/failure.ts';
import { createNewFile, isDirectory, isRegularFile, lstatOrUndefined } from '../files.ts';
import { readCargoManifest } from './manifest.ts';
import { listSdkCrates, type SdkLocation } from './sdk.ts';

export interface RegistryLocation {
  /** Host path of the operator's registry (cargo directory source). */
  host: string;
  /** The same directory as seen inside the sandbox. */
  sandbox: string;
}

export interface OfflineSetup {
  /** Host path of the job's CARGO_HOME. */
  cargoHome: string;
  /** Sandbox path of the job's CARGO_HOME. */
  sandboxCargoHome: string;
  /** Sandbox path of the directory source cargo uses. */
  sandboxDirectory: string;
  vendoredCrates: number;
}

export const CARGO_HOME_DIR = 'cargo-home';
export const MERGED_REGISTRY_DIR = 'cargo-registry';

/**
 * Writes CARGO_HOME/config.toml and the merged registry. The only config
 * cargo sees is ours: the upload's .cargo/config* has already been removed,
 * and /build itself holds no .cargo directory.
 */
export async function writeOfflineSetup(
  jobDir: string,
  sourceDir: string,
  registry: RegistryLocation,
  log: (line: string) => void,
  sdk?: SdkLocation,
): Promise<OfflineSetup> {
  const cargoHome = join(jobDir, CARGO_HOME_DIR);
  await mkdir(cargoHome, { recursive: true });
  const vendorDir = join(sourceDir, 'vendor');
  const vendored = await isDirectory(vendorDir);
  const vendoredCrates = await buildMergedRegistry(join(jobDir, MERGED_REGISTRY_DIR), vendored ? vendorDir : undefined, registry, sdk, log);
  const sandboxDirectory = `/build/${MERGED_REGISTRY_DIR}`;
  if (vendored) log(`kiln: using ${vendoredCrates} vendored crate(s) from vendor/ together with the offline registry`);
  await writeFile(join(cargoHome, 'config.toml'), cargoConfig(sandboxDirectory));
  return { cargoHome, sandboxCargoHome: `/build/${CARGO_HOME_DIR}`, sandboxDirectory, vendoredCrates };
}

export function cargoConfig(directory: string): string {
  return [
    '# Written by Kiln for this build; the upload cannot change it.',
    '[source.crates-io]',
    'replace-with = "kiln-registry"',
    '',
    '[source.kiln-registry]',
    `directory = ${JSON.stringify(directory)}`,
    '',
    '[net]',
    'offline = true',
    '',
    '[term]',
    'color = "never"',
    'progress.when = "never"',
    '',
  ].join('\n');
}

async function buildMergedRegistry(
  mergedDir: string,
  vendorDir: string | undefined,
  registry: RegistryLocation,
  sdk: SdkLocation | undefined,
  log: (line: string) => void,
): Promise<number> {
  await mkdir(mergedDir, { recursive: true });
  const { covered, count } = vendorDir === undefined ? { covered: new Set<string>(), count: 0 } : await linkVendoredCrates(mergedDir, vendorDir, log);
  // Kiln's SDK crates: a vendored copy of the same version wins; the SDK wins over the registry.
  for (const crate of sdk === undefined ? [] : await listSdkCrates(sdk)) {
    if (covered.has(crate.entry)) continue;
    await symlink(`${sdk?.sandbox ?? ''}/${crate.directory}`, join(mergedDir, crate.entry));
    covered.add(crate.entry);
  }
  for (const entry of await readdir(registry.host, { withFileTypes: true })) {
    // A vendored copy of the same crate and version wins over the registry's.
    if (covered.has(entry.name) || !entry.isDirectory()) continue;
    await symlink(`${registry.sandbox}/${entry.name}`, join(mergedDir, entry.name));
  }
  return count;
}

/**
 * Links each vendored crate; answers how many, and the registry directory
 * names they cover (the vendor dir name and `name-version`).
 */
async function linkVendoredCrates(
  mergedDir: string,
  vendorDir: string,
  log: (line: string) => void,
): Promise<{ covered: Set<string>; count: number }> {
  const covered = new Set<string>();
  let count = 0;
  for (const entry of await readdir(vendorDir, { withFileTypes: true })) {
    const crateDir = join(vendorDir, entry.name);
    // Symlinks and stray files in vendor/ are ignored, never followed.
    if (!entry.isDirectory() || !(await isRegularFile(join(crateDir, 'Cargo.toml')))) continue;
    const manifest = await readCargoManifest(crateDir);
    const checksumFile = join(crateDir, '.cargo-checksum.json');
    const checksum = await lstatOrUndefined(checksumFile);
    if (checksum !== undefined && !checksum.isFile()) {
      throw buildFailure(`vendor/${entry.name}/.cargo-checksum.json is not a regular file`);
    } else if (checksum === undefined) {
      await createNewFile(checksumFile, '{"files":{}}\n');
      log(`kiln: vendor/${entry.name} has no .cargo-checksum.json; wrote an empty one (no file checksums, no package checksum)`);
    }
    await symlink(`/build/src/vendor/${entry.name}`, join(mergedDir, entry.name));
    count++;
    covered.add(entry.name);
    if (manifest?.packageName !== undefined && manifest.packageVersion !== undefined) {
      covered.add(`${manifest.packageName}-${manifest.packageVersion}`);
    }
  }
  return { covered, count };
}
