/**
 * Extraction of an untrusted archive into a directory.
 *
 * Nothing from a previous inspection is trusted: the archive is validated
 * again, entry by entry, as it is written. Only regular files and directories
 * are created, every file with O_CREAT|O_EXCL|O_NOFOLLOW (never onto or
 * through something that already exists), every directory of every path is
 * checked with lstat before anything goes under it, and modes are reduced to
 * 0644/0755. On rejection the error propagates and whatever was written
 * stays in destDir for the caller to delete.
 *
 * Residual assumption: no other process modifies destDir while we extract
 * (Node has no openat(), so a concurrent swap of a checked directory for a
 * symlink cannot be excluded). The upload itself cannot do it: we never
 * create links.
 *
 * The file system calls per entry are synchronous. The destination is the
 * job's volume, a tmpfs in the worker, where each of them is a memory
 * operation of microseconds, while the same call through the thread pool
 * costs a round trip and, on a loaded machine, a wait to be scheduled again:
 * an upload with a vendor/ tree of ~100 files made ~600 such calls. No call
 * copies more than one decompressed chunk (DECOMPRESS_CHUNK_BYTES), and the
 * event loop runs between chunks, since decompression is asynchronous.
 */
import { chmodSync, closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { lstat, mkdir, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { PlatformError } from '../errors.ts';
import { displayName, DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './limits.ts';
import { walkArchive, type ArchiveEntry, type ArchiveSummary } from './walk.ts';

export const FILE_MODE = 0o644;
export const EXECUTABLE_MODE = 0o755;
export const DIRECTORY_MODE = 0o755;

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export async function extractArchive(archivePath: string, destDir: string, limits: Readonly<ArchiveLimits> = DEFAULT_ARCHIVE_LIMITS): Promise<ArchiveSummary> {
  const root = await prepareRoot(destDir);
  const directories = new DirectoryMaker(root);
  return walkArchive(archivePath, limits, async (entry) => {
    if (entry.kind === 'directory') {
      directories.ensure(entry.segments, entry.name);
      return;
    }
    directories.ensure(entry.segments.slice(0, -1), entry.name);
    await writeFile(root, entry);
  });
}

/** destDir is the caller's choice: created if missing, then used through its real path. */
async function prepareRoot(destDir: string): Promise<string> {
  await mkdir(destDir, { recursive: true, mode: DIRECTORY_MODE });
  const root = await realpath(destDir);
  if (!(await lstat(root)).isDirectory()) throw unsafeDestination(undefined, destDir, 'is not a directory');
  return root;
}

/** Creates directories one component at a time, refusing any that exists as something else. */
class DirectoryMaker {
  private readonly checked = new Set<string>();

  constructor(private readonly root: string) {}

  ensure(segments: readonly string[], entryName: string): void {
    for (let depth = 1; depth <= segments.length; depth += 1) {
      const relative = segments.slice(0, depth).join('/');
      if (this.checked.has(relative)) continue;
      this.makeOne(inside(this.root, relative), relative, entryName);
      this.checked.add(relative);
    }
  }

  private makeOne(absolute: string, relative: string, entryName: string): void {
    try {
      mkdirSync(absolute, { mode: DIRECTORY_MODE });
      // mkdir's mode is filtered by the umask; the result must not depend on it.
      chmodSync(absolute, DIRECTORY_MODE);
      return;
    } catch (error) {
      if (!hasCode(error, 'EEXIST')) throw error;
    }
    // It existed before: only a real directory is acceptable, never a symlink to one.
    const stats = lstatSync(absolute);
    if (stats.isSymbolicLink()) throw unsafeDestination(entryName, relative, 'is a symbolic link in the destination');
    if (!stats.isDirectory()) throw unsafeDestination(entryName, relative, 'exists in the destination and is not a directory');
  }
}

async function writeFile(root: string, entry: ArchiveEntry): Promise<void> {
  const absolute = inside(root, entry.path);
  const mode = entry.executable ? EXECUTABLE_MODE : FILE_MODE;
  let fd: number;
  try {
    fd = openSync(absolute, CREATE_FLAGS, mode);
  } catch (error) {
    if (hasCode(error, 'EEXIST') || hasCode(error, 'ELOOP')) throw unsafeDestination(entry.name, entry.path, 'already exists in the destination');
    throw error;
  }
  try {
    for await (const chunk of entry.content) writeAll(fd, chunk);
    // Explicit, so neither the umask nor anything in the archive decides.
    fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, chunk: Buffer): void {
  let offset = 0;
  while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
}

/** Validated paths cannot escape; this re-checks it where the path meets the file system. */
function inside(root: string, relative: string): string {
  const absolute = join(root, relative);
  if (!absolute.startsWith(root + sep)) {
    throw new PlatformError('archive_path_escape', `refusing to write ${JSON.stringify(displayName(relative))} outside ${root}`);
  }
  return absolute;
}

/**
 * The destination held something in the way (a symlink, a file). The archive
 * cannot have put it there (we never create links), so it is the caller's
 * fault, reported as a platform error rather than blamed on the upload.
 */
function unsafeDestination(entryName: string | undefined, path: string, why: string): PlatformError {
  const subject = entryName === undefined ? '' : `entry ${JSON.stringify(displayName(entryName))}: `;
  return new PlatformError('archive_unsafe_destination', `${subject}"${displayName(path)}" ${why}; nothing was written through it`);
}

function hasCode(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
