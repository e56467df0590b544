/**
 * Kiln's Rust SDK crates (sdk/rust/<crate>/, e.g. kiln-proxy-wasm): mounted
 * read-only into every Rust build and added to the offline directory source,
 * so an upload's Cargo.toml just says `kiln-proxy-wasm = "0.1"`.
 *
 * Each crate ships a `.cargo-checksum.json` of `{"files":{}}`, like Debian's
 * registry: the crates are platform files on a read-only mount, so cargo has
 * nothing to verify file by file. Their content is part of the dependency
 * cache key (sdkFingerprint), since cargo does not rebuild a registry crate
 * whose version did not change.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDirectory, isRegularFile, listFiles } from '../files.ts';
import { SANDBOX_PLATFORM_DIR } from '../../build-kit/paths.ts';
import { readCargoManifest } from './manifest.ts';

export const DEFAULT_RUST_SDK_DIR = fileURLToPath(new URL('../../../sdk/rust/', import.meta.url)).replace(/\/$/, '');
export const SANDBOX_RUST_SDK_DIR = `${SANDBOX_PLATFORM_DIR}/sdk/rust`;

export interface SdkLocation {
  /** Host directory holding one directory per crate. */
  host: string;
  /** The same directory inside the sandbox (mounted read-only). */
  sandbox: string;
}

export interface SdkCrate {
  /** Directory name under the SDK directory. */
  directory: string;
  /** `name-version`, the entry name in a cargo directory source. */
  entry: string;
}

/** The SDK's crates: directories with a Cargo.toml naming a package and a version. */
export async function listSdkCrates(sdk: SdkLocation): Promise<SdkCrate[]> {
  if (!(await isDirectory(sdk.host))) return [];
  const crates: SdkCrate[] = [];
  for (const entry of await readdir(sdk.host, { withFileTypes: true })) {
    if (!entry.isDirectory() || !(await isRegularFile(join(sdk.host, entry.name, 'Cargo.toml')))) continue;
    const manifest = await readCargoManifest(join(sdk.host, entry.name));
    if (manifest?.packageName === undefined || manifest.packageVersion === undefined) continue;
    crates.push({ directory: entry.name, entry: `${manifest.packageName}-${manifest.packageVersion}` });
  }
  return crates.sort((a, b) => (a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0));
}

const fingerprints = new Map<string, Promise<string>>();

/** sha256 over every SDK file's path and content; computed once per process (the SDK ships with Kiln). */
export function sdkFingerprint(sdk: SdkLocation): Promise<string> {
  let fingerprint = fingerprints.get(sdk.host);
  if (fingerprint === undefined) {
    fingerprint = (async () => {
      const hash = createHash('sha256');
      if (!(await isDirectory(sdk.host))) return 'none';
      for (const file of (await listFiles(sdk.host, { skipDirectories: new Set(['target']) })).sort()) {
        hash.update(`\0${file}\0`).update(await readFile(join(sdk.host, file)));
      }
      return hash.digest('hex');
    })();
    fingerprints.set(sdk.host, fingerprint);
  }
  return fingerprint;
}
