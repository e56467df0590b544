import { join } from 'node:path';
import type { AppKind } from '../language.ts';
import { APP_KINDS } from '../language.ts';
import { readSmallText } from '../files.ts';
import { parseToml, tomlString, tomlStrings, type TomlTable } from '../toml.ts';

/** The facts Kiln needs from a Cargo.toml, read on the host without running cargo. */
export interface CargoManifest {
  packageName?: string;
  packageVersion?: string;
  /** `[lib] name`, else the package name with `-` turned into `_` (what rustc names the cdylib). */
  libName?: string;
  crateTypes: string[];
  binNames: string[];
  defaultRun?: string;
  /** `[package.metadata.kiln] kind`, when valid. */
  declaredKind?: AppKind;
  /** `[package.metadata.kiln] bin`: which binary is the function when there are several. */
  declaredBin?: string;
}

export async function readCargoManifest(directory: string): Promise<CargoManifest | undefined> {
  const text = await readSmallText(join(directory, 'Cargo.toml'));
  return text === undefined ? undefined : manifestFromToml(parseToml(text));
}

export function manifestFromToml(table: TomlTable): CargoManifest {
  const packageName = tomlString(table, 'package.name');
  const libName = tomlString(table, 'lib.name') ?? packageName?.replace(/-/g, '_');
  const declared = tomlString(table, 'package.metadata.kiln.kind');
  return {
    packageName,
    packageVersion: tomlString(table, 'package.version'),
    libName,
    crateTypes: tomlStrings(table, 'lib.crate-type') ?? [],
    binNames: binNames(table),
    defaultRun: tomlString(table, 'package.default-run'),
    declaredKind: APP_KINDS.find((kind) => kind === declared),
    declaredBin: tomlString(table, 'package.metadata.kiln.bin'),
  };
}

/** An explicit `[package.metadata.kiln] kind` wins; a cdylib is a filter; anything else a command. */
export function kindOf(manifest: CargoManifest): AppKind {
  if (manifest.declaredKind !== undefined) return manifest.declaredKind;
  return manifest.crateTypes.includes('cdylib') ? 'proxy-wasm' : 'wasi-command';
}

/** File names (without directory) the build may produce for this kind, most likely first. */
export function expectedModuleNames(manifest: CargoManifest, kind: AppKind): string[] {
  const names =
    kind === 'proxy-wasm'
      ? [manifest.libName]
      : [manifest.declaredBin, manifest.defaultRun, manifest.packageName, ...manifest.binNames];
  // Names come from the user's Cargo.toml and become paths: anything but a
  // plain crate/target name (no slashes, no dots) is ignored, never joined.
  return [...new Set(names.filter((name): name is string => name !== undefined && CARGO_TARGET_NAME.test(name)))].map((name) => `${name}.wasm`);
}

const CARGO_TARGET_NAME = /^[A-Za-z0-9_-]{1,128}$/;

function binNames(table: TomlTable): string[] {
  const names: string[] = [];
  for (let index = 0; ; index++) {
    const name = tomlString(table, `bin.${index}.name`);
    if (name === undefined) break;
    names.push(name);
  }
  return names;
}
