/**
 * Host-side file helpers for reading an untrusted upload. The archive
 * extractor should already have refused links and devices, but these helpers
 * never follow a symlink anyway: a language module must not be tricked into
 * reading or deleting something outside the job directory.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

/** Manifests and sources we inspect are small; bigger files are not read. */
export const MAX_INSPECTED_FILE_BYTES = 1024 * 1024;

export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

export async function isRegularFile(path: string): Promise<boolean> {
  return (await lstatOrUndefined(path))?.isFile() ?? false;
}

export async function isDirectory(path: string): Promise<boolean> {
  return (await lstatOrUndefined(path))?.isDirectory() ?? false;
}

/**
 * Reads a regular file as UTF-8 without following a final symlink;
 * undefined when it is missing, not a regular file, or larger than maxBytes.
 */
export async function readSmallText(path: string, maxBytes = MAX_INSPECTED_FILE_BYTES): Promise<string | undefined> {
  const stats = await lstatOrUndefined(path);
  if (!stats?.isFile() || stats.size > maxBytes) return undefined;
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const buffer = Buffer.alloc(Math.min(stats.size, maxBytes));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

export interface WalkOptions {
  /** Directory names not descended into (e.g. `target`, `node_modules`). */
  skipDirectories?: ReadonlySet<string>;
  /** Stop after this many files: uploads can hold huge trees. */
  maxFiles?: number;
  /** Keep only files for which this answers true. */
  accept?: (name: string) => boolean;
}

/** Lists regular files under root (relative paths, sorted), never following symlinks. */
export async function listFiles(root: string, options: WalkOptions = {}): Promise<string[]> {
  // readdir would follow a symlinked root; its entries are safe (Dirent types never follow).
  if (!(await isDirectory(root))) return [];
  const found: string[] = [];
  const maxFiles = options.maxFiles ?? 10_000;
  const pending = [root];
  while (pending.length > 0 && found.length < maxFiles) {
    const directory = pending.shift() ?? root;
    const entries = await readdir(directory, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = join(directory, entry.name);
      // Dirent types come from lstat semantics: a symlink is neither a file nor a directory here.
      if (entry.isDirectory() && !options.skipDirectories?.has(entry.name)) pending.push(path);
      else if (entry.isFile() && (options.accept?.(entry.name) ?? true)) found.push(relative(root, path));
      if (found.length >= maxFiles) break;
    }
  }
  return found.sort();
}

/**
 * Removes `root/relativePath` (a file, directory or symlink: the link, never
 * its target) if it exists, and says so in the build log. Every component
 * before the last must be a real directory: with `node_modules` a symlink to
 * `/`, removing `node_modules/x` must not delete the host's `/x`.
 */
export async function removeWithLog(root: string, relativePath: string, why: string, log: (line: string) => void): Promise<boolean> {
  const parts = relativePath.split('/');
  let parent = root;
  for (const part of parts.slice(0, -1)) {
    parent = join(parent, part);
    if (!(await isDirectory(parent))) return false;
  }
  const path = join(parent, parts[parts.length - 1] ?? '');
  if ((await lstatOrUndefined(path)) === undefined) return false;
  await rm(path, { recursive: true, force: true });
  log(`kiln: removed ${relativePath} from the upload (${why})`);
  return true;
}

/**
 * Creates a file that must not exist yet. O_EXCL with O_CREAT never follows
 * a symlink, so a planted link cannot redirect the write.
 */
export async function createNewFile(path: string, content: string): Promise<void> {
  await writeFile(path, content, { flag: 'wx' });
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
