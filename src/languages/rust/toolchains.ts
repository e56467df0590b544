/**
 * The Rust toolchains a worker has: Debian's rustc 1.63 in /usr (target
 * wasm32-wasi) and any modern toolchain scripts/toolchains/rust-modern.sh
 * set up under the toolchains directory (target wasm32-wasip1), each a
 * `rust-<version>/` prefix with a `kiln-toolchain.json` stamp. Modern
 * toolchains are known from their stamp and layout; Debian's answers
 * `rustc -V` once per process (a platform binary, no upload input).
 */
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isRegularFile, readSmallText } from '../files.ts';
import { SANDBOX_PLATFORM_DIR } from '../../build-kit/paths.ts';

export type RustTarget = 'wasm32-wasi' | 'wasm32-wasip1';

export interface RustToolchain {
  /** `rust-1.85.0`, `rust-1.63.0`: what logs and build records name. */
  name: string;
  /** Semantic version of rustc, `1.85.0`. */
  version: string;
  /** `rustc -V` as recorded at set-up (the system one: its Debian version). */
  rustcVersion: string;
  target: RustTarget;
  /** Host path mounted read-only at `sandboxRoot`; undefined for /usr (always visible). */
  hostRoot?: string;
  /** Sandbox paths of the binaries. */
  rustc: string;
  cargo: string;
  /** Host paths of the binaries and the environment they need (for `-V` in the cache key). */
  host: { rustc: string; cargo: string; env: Record<string, string> };
  /** Added to every step's environment. */
  env: Record<string, string>;
}

/** Where scripts/toolchains/*.sh install machine-wide toolchains unless KILN_TOOLCHAINS_DIR says otherwise. */
export const DEFAULT_TOOLCHAINS_DIR = '/var/cache/kiln/toolchains';
const SYSTEM_RUSTC = '/usr/bin/rustc';
const SYSTEM_CARGO = '/usr/bin/cargo';
const SYSTEM_WASI_STD = '/usr/lib/rustlib/wasm32-wasi/lib';
const run = promisify(execFile);
export const STAMP_FILE = 'kiln-toolchain.json';
/** Where modern toolchains appear inside the sandbox. */
const SANDBOX_TOOLCHAINS_DIR = `${SANDBOX_PLATFORM_DIR}/toolchains`;
const LIBRARY_DIRS = ['usr/lib/x86_64-linux-gnu', 'lib/x86_64-linux-gnu'];

/** Every toolchain installed on this host, newest first. */
export async function installedToolchains(toolchainsDir: string): Promise<RustToolchain[]> {
  const found: RustToolchain[] = [];
  if ((await isRegularFile(SYSTEM_RUSTC)) && (await isRegularFile(SYSTEM_CARGO)) && (await hasStd(SYSTEM_WASI_STD))) {
    const system = await systemToolchain();
    if (system !== undefined) found.push(system);
  }
  for (const name of await readdir(toolchainsDir).catch(() => [] as string[])) {
    if (!/^rust-\d+\.\d+\.\d+$/.test(name)) continue;
    const toolchain = await modernToolchain(join(toolchainsDir, name), name);
    if (toolchain !== undefined) found.push(toolchain);
  }
  return found.sort((a, b) => compareVersions(b.version, a.version));
}

let systemVersion: Promise<string | undefined> | undefined;

/** `rustc 1.63.0` from `/usr/bin/rustc -V`, once per process; undefined when it does not answer. */
function systemRustcVersion(): Promise<string | undefined> {
  systemVersion ??= run(SYSTEM_RUSTC, ['-V'], { timeout: 10_000 }).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
  return systemVersion;
}

async function systemToolchain(): Promise<RustToolchain | undefined> {
  const rustcVersion = await systemRustcVersion();
  const version = rustcVersion === undefined ? undefined : /^rustc (\d+\.\d+\.\d+)/.exec(rustcVersion)?.[1];
  if (rustcVersion === undefined || version === undefined) return undefined;
  return {
    name: `rust-${version}`,
    version,
    rustcVersion,
    target: 'wasm32-wasi',
    rustc: SYSTEM_RUSTC,
    cargo: SYSTEM_CARGO,
    host: { rustc: SYSTEM_RUSTC, cargo: SYSTEM_CARGO, env: {} },
    env: {},
  };
}

interface Stamp {
  rustVersion: string;
  target: RustTarget;
  rustc: string;
}

/** A prefix counts only when its stamp is complete and its std for the target is there. */
async function modernToolchain(prefix: string, name: string): Promise<RustToolchain | undefined> {
  const stamp = parseStamp(await readSmallText(join(prefix, STAMP_FILE)));
  if (stamp === undefined || name !== `rust-${stamp.rustVersion}`) return undefined;
  if (!(await hasStd(join(prefix, 'usr/lib/rustlib', stamp.target, 'lib')))) return undefined;
  const sandboxRoot = `${SANDBOX_TOOLCHAINS_DIR}/${name}`;
  const env = (root: string): Record<string, string> => ({
    LD_LIBRARY_PATH: LIBRARY_DIRS.map((dir) => `${root}/${dir}`).join(':'),
    // rustc would call rust-lld, which only Debian's rustc 1.63 package provides.
    [`CARGO_TARGET_${stamp.target.toUpperCase().replace(/-/g, '_')}_LINKER`]: '/usr/bin/wasm-ld',
  });
  return {
    name,
    version: stamp.rustVersion,
    rustcVersion: stamp.rustc,
    target: stamp.target,
    hostRoot: prefix,
    rustc: `${sandboxRoot}/usr/bin/rustc`,
    cargo: `${sandboxRoot}/usr/bin/cargo`,
    host: { rustc: join(prefix, 'usr/bin/rustc'), cargo: join(prefix, 'usr/bin/cargo'), env: env(prefix) },
    env: env(sandboxRoot),
  };
}

export function sandboxRootOf(toolchain: RustToolchain): string | undefined {
  return toolchain.hostRoot === undefined ? undefined : `${SANDBOX_TOOLCHAINS_DIR}/${toolchain.name}`;
}

function parseStamp(text: string | undefined): Stamp | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const { rustVersion, target, rustc } = value;
    if (typeof rustVersion !== 'string' || !/^\d+\.\d+\.\d+$/.test(rustVersion)) return undefined;
    if (target !== 'wasm32-wasip1' && target !== 'wasm32-wasi') return undefined;
    if (typeof rustc !== 'string') return undefined;
    return { rustVersion, target, rustc };
  } catch {
    return undefined;
  }
}

async function hasStd(libDir: string): Promise<boolean> {
  const names = await readdir(libDir).catch(() => [] as string[]);
  return names.some((name) => name.startsWith('libstd-') && name.endsWith('.rlib'));
}

/** Compares dotted numeric versions (`1.85.0`, `1.63`); missing parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const left = a.split('.').map(Number);
  const right = b.split('.').map(Number);
  for (let index = 0; index < Math.max(left.length, right.length); index++) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}
