/**
 * What a language tells the build runner to get a dependency cache, and the
 * two sandboxed steps that restore and save one. The design and its threat
 * model are in docs/dependency-cache.md.
 *
 * The cache entry is a zstd tarball of build output directories (for Rust:
 * `target/`). It is made *inside* the sandbox by tar from what the build
 * left, and unpacked inside the next build's sandbox: the host never parses
 * an archive whose content a build script chose; it only copies one regular
 * file out (store.ts) and bind-mounts it read-only back in.
 */
import { SANDBOX_PLATFORM_DIR } from '../build-kit/paths.ts';

export interface CachePlan {
  /** Hex digest of everything the cached output depends on besides the user's own sources. */
  key: string;
  /** Directories under /build to cache, e.g. `target`. Plain names only. */
  directories: string[];
  /**
   * Directories under /build/src whose content is part of the key (e.g.
   * `vendor`): restored output is kept fresh against them rather than
   * rebuilt, since any change to them changes the key.
   */
  keyedSourceDirectories: string[];
  /** Human-readable description of the key inputs, for the build log. */
  describe: string;
}

/** What a language answers when asked for a plan: one, or why the cache does not apply. */
export type CachePlanAnswer = CachePlan | { unavailable: string };

/** Where the entry is mounted (read-only) during the restore step. */
export const SANDBOX_CACHE_DIR = `${SANDBOX_PLATFORM_DIR}/dependency-cache`;
export const CACHE_FILE = 'deps.tar.zst';
/** Where the save step writes the new entry, relative to /build. */
export const SAVED_ENTRY = 'kiln/dependency-cache.tar.zst';
/** The restore step's exit code when the entry could not be used. */
export const RESTORE_FAILED_EXIT = 3;

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function checkNames(names: string[]): void {
  for (const name of names) if (!SAFE_NAME.test(name)) throw new Error(`cache directory ${JSON.stringify(name)} is not a plain name`);
}

/**
 * Unpacks the entry (--touch: the archived times are not even applied),
 * then sets modification times so that cargo-style
 * mtime checks decide correctly whatever the entry contains:
 *   - restored files get `now - 10 s`: older than every file of the upload,
 *     so the user's own crates (and build scripts with rerun-if-changed) are
 *     always rebuilt, and a build script that stamped its outputs with a
 *     future date cannot make a changed source look up to date;
 *   - the upload's files get `now`; keyed directories (vendor/) get
 *     `now - 20 s`, older than the output built from them — their content is
 *     in the key, so an entry only ever meets the same content.
 * Registry crates (read-only, dated at packaging) stay older than all of it.
 * Any failure removes what was unpacked and exits RESTORE_FAILED_EXIT: the
 * build then runs from scratch.
 */
export function restoreScript(plan: CachePlan): string {
  checkNames([...plan.directories, ...plan.keyedSourceDirectories]);
  const directories = plan.directories.map((name) => `/build/${name}`).join(' ');
  const prune = plan.keyedSourceDirectories.map((name) => `-path /build/src/${name} -prune -o`).join(' ');
  const keyed = plan.keyedSourceDirectories.map((name) => `  if [ -d /build/src/${name} ]; then find /build/src/${name} -exec touch -h -d "@$((now - 20))" {} + || exit 1; fi`);
  return [
    'set -u',
    'now=$(date +%s)',
    'restore() {',
    `  tar --zstd -x --touch -f ${SANDBOX_CACHE_DIR}/${CACHE_FILE} -C /build --no-same-owner -- ${plan.directories.join(' ')} || exit 1`,
    `  find ${directories} -exec touch -h -d "@$((now - 10))" {} + || exit 1`,
    `  find /build/src ${prune} -exec touch -h -d "@$now" {} + || exit 1`,
    ...keyed,
    '}',
    '(restore) && exit 0',
    `rm -rf ${directories}`,
    'echo "kiln: the dependency cache could not be restored; building from scratch"',
    `exit ${RESTORE_FAILED_EXIT}`,
  ].join('\n');
}

/** Packs the cached directories into /build/SAVED_ENTRY (zstd level 1: fast, ~4× smaller). */
export function saveScript(plan: CachePlan): string {
  checkNames(plan.directories);
  return [
    'set -eu',
    `rm -f /build/${SAVED_ENTRY}`,
    `tar -I 'zstd -1 -q' -cf /build/${SAVED_ENTRY} -C /build -- ${plan.directories.join(' ')}`,
  ].join('\n');
}
