/**
 * Which installed toolchain builds an app, from what the upload says
 * (host side, nothing executed). In order:
 *   1. `rust-toolchain.toml` (`[toolchain] channel`) or a legacy
 *      `rust-toolchain` file: read ONLY to pick among installed toolchains;
 *      `1.63`/`1.63.0` match by prefix, `stable` means the newest; anything
 *      else (nightly, beta, a version not installed) is the user's error;
 *   2. `package.rust-version` (a minimum) and `package.edition` (2024 needs
 *      1.85): the newest installed toolchain that satisfies them;
 *   3. an existing app made for Debian's 1.63: a `Cargo.lock` of version 3 or
 *      older whose every registry package is in the offline registry, and no
 *      vendor/, keeps building on 1.63 (exactly as before);
 *   4. otherwise the newest installed toolchain.
 */
import { join } from 'node:path';
import { buildFailure } from '../../build-kit/failure.ts';
import { isDirectory, readSmallText } from '../files.ts';
import { parseToml, tomlString } from '../toml.ts';
import { compareVersions, type RustToolchain } from './toolchains.ts';

export interface ToolchainChoice {
  toolchain: RustToolchain;
  /** For the build log: what made the choice. */
  reason: string;
}

export interface AppRustFacts {
  /** The channel of rust-toolchain(.toml), and which file said it. */
  channel?: { value: string; file: string };
  rustVersion?: string;
  edition?: string;
  /** `version = N` of Cargo.lock (1 when a lock exists without one); undefined without a lock. */
  lockVersion?: number;
  /** `name-version` of every package Cargo.lock takes from crates.io. */
  lockedRegistryCrates: string[];
  hasVendor: boolean;
}

/** Editions and the first rustc that accepts them. */
const EDITION_MINIMUM: Readonly<Record<string, string>> = { '2015': '1.0.0', '2018': '1.31.0', '2021': '1.56.0', '2024': '1.85.0' };
const MAX_LOCK_BYTES = 16 * 1024 ** 2;

export async function readAppRustFacts(sourceDir: string): Promise<AppRustFacts> {
  const manifest = parseToml((await readSmallText(join(sourceDir, 'Cargo.toml'))) ?? '');
  const lock = await readSmallText(join(sourceDir, 'Cargo.lock'), MAX_LOCK_BYTES);
  return {
    channel: await readChannel(sourceDir),
    rustVersion: tomlString(manifest, 'package.rust-version') ?? tomlString(manifest, 'workspace.package.rust-version'),
    edition: tomlString(manifest, 'package.edition') ?? tomlString(manifest, 'workspace.package.edition'),
    lockVersion: lock === undefined ? undefined : lockVersionOf(lock),
    lockedRegistryCrates: lock === undefined ? [] : registryCratesOf(lock),
    hasVendor: await isDirectory(join(sourceDir, 'vendor')),
  };
}

async function readChannel(sourceDir: string): Promise<AppRustFacts['channel']> {
  const toml = await readSmallText(join(sourceDir, 'rust-toolchain.toml'), 64 * 1024);
  if (toml !== undefined) {
    const channel = tomlString(parseToml(toml), 'toolchain.channel');
    if (channel !== undefined) return { value: channel.trim(), file: 'rust-toolchain.toml' };
  }
  const legacy = await readSmallText(join(sourceDir, 'rust-toolchain'), 64 * 1024);
  if (legacy === undefined) return undefined;
  // The legacy file is either one line naming the channel, or TOML.
  const channel = tomlString(parseToml(legacy), 'toolchain.channel') ?? legacy.trim().split(/\r?\n/)[0]?.trim();
  return channel === undefined || channel === '' ? undefined : { value: channel, file: 'rust-toolchain' };
}

function lockVersionOf(lock: string): number {
  const match = /^version\s*=\s*(\d+)\s*$/m.exec(lock);
  return match?.[1] === undefined ? 1 : Number(match[1]);
}

/** `[[package]]` entries whose source is the crates.io registry, as `name-version`. */
function registryCratesOf(lock: string): string[] {
  const crates: string[] = [];
  for (const block of lock.split(/^\[\[package\]\]\s*$/m).slice(1)) {
    const table = parseToml(block);
    const name = tomlString(table, 'name');
    const version = tomlString(table, 'version');
    const source = tomlString(table, 'source');
    if (name !== undefined && version !== undefined && source?.startsWith('registry+') === true) crates.push(`${name}-${version}`);
  }
  return crates;
}

/**
 * @param installed newest first
 * @param offlineCrates `name-version` entries of the offline registry and Kiln's SDK
 */
export function chooseToolchain(facts: AppRustFacts, installed: readonly RustToolchain[], offlineCrates: ReadonlySet<string>): ToolchainChoice {
  const newest = installed[0];
  if (newest === undefined) throw buildFailure('no Rust toolchain is installed on this worker');
  if (facts.channel !== undefined) return byChannel(facts.channel, installed);
  const minimum = requiredMinimum(facts);
  if (minimum !== undefined) {
    const fitting = installed.find((toolchain) => compareVersions(toolchain.version, minimum.version) >= 0);
    if (fitting === undefined) {
      throw buildFailure(`${minimum.why} needs rustc ${minimum.version} or newer; installed: ${names(installed)}`);
    }
    return { toolchain: fitting, reason: `${minimum.why} needs rustc ≥ ${minimum.version}` };
  }
  const legacy = installed.find((toolchain) => toolchain.target === 'wasm32-wasi');
  if (legacy !== undefined && madeForLegacy(facts, offlineCrates)) {
    return { toolchain: legacy, reason: `Cargo.lock (version ${facts.lockVersion ?? '?'}) resolves against Debian's registry: an app made for rustc ${legacy.version}` };
  }
  return { toolchain: newest, reason: 'the default (newest installed)' };
}

function byChannel(channel: { value: string; file: string }, installed: readonly RustToolchain[]): ToolchainChoice {
  const value = channel.value;
  const reason = `${channel.file} asks for ${JSON.stringify(value)}`;
  if (value === 'stable' && installed[0] !== undefined) return { toolchain: installed[0], reason };
  // `1.63`, `1.63.0`, and `1.85-x86_64-unknown-linux-gnu`-style host suffixes.
  const version = /^(\d+\.\d+(?:\.\d+)?)(?:-[a-z0-9_-]+)?$/.exec(value)?.[1];
  const matching = version === undefined ? undefined : installed.find((toolchain) => versionMatches(toolchain.version, version));
  if (matching === undefined) {
    throw buildFailure(`${reason}, which is not installed on this worker; installed: ${names(installed)} (or "stable" for the newest)`);
  }
  return { toolchain: matching, reason };
}

/** `1.63` matches 1.63.x; `1.63.0` only itself. */
function versionMatches(installed: string, requested: string): boolean {
  const parts = requested.split('.');
  return installed.split('.').slice(0, parts.length).join('.') === requested;
}

function requiredMinimum(facts: AppRustFacts): { version: string; why: string } | undefined {
  const candidates: { version: string; why: string }[] = [];
  if (facts.rustVersion !== undefined) {
    if (!/^\d+\.\d+(\.\d+)?$/.test(facts.rustVersion)) throw buildFailure(`package.rust-version ${JSON.stringify(facts.rustVersion)} is not a version like "1.85"`);
    candidates.push({ version: facts.rustVersion, why: `rust-version = "${facts.rustVersion}"` });
  }
  if (facts.edition !== undefined) {
    const version = EDITION_MINIMUM[facts.edition];
    if (version === undefined) throw buildFailure(`edition ${JSON.stringify(facts.edition)} is not a Rust edition (2015, 2018, 2021, 2024)`);
    // Editions every installed toolchain accepts do not constrain the choice.
    if (facts.edition === '2024') candidates.push({ version, why: 'edition 2024' });
  }
  return candidates.sort((a, b) => compareVersions(b.version, a.version))[0];
}

function madeForLegacy(facts: AppRustFacts, offlineCrates: ReadonlySet<string>): boolean {
  if (facts.lockVersion === undefined || facts.lockVersion > 3 || facts.hasVendor) return false;
  return facts.lockedRegistryCrates.every((crate) => offlineCrates.has(crate));
}

function names(installed: readonly RustToolchain[]): string {
  return installed.length === 0 ? 'none' : installed.map((toolchain) => `${toolchain.version} (${toolchain.target})`).join(', ');
}
