/**
 * The file-system half of `kiln edge sync`: every write goes to a temp file
 * in the target directory, is flushed to disk, and only then renamed over
 * its target, and the directory itself is flushed after renames, so after a
 * crash or power loss a file is either its complete old or complete new
 * content, never a mix or a torn write.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';

/** Our temp files: recognisable, so a later run can remove what an interrupted one left. */
export const TEMP_PREFIX = '.kiln-tmp-';
const LOCK_FILE = '.kiln-sync.lock';

/** The bytes did not match what the manifest promised: never let them near the target. */
export class IntegrityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IntegrityError';
  }
}

export class SyncLockedError extends Error {
  constructor(dir: string, holder: string) {
    super(`another kiln edge sync (${holder}) is writing ${dir}; run one sync per directory`);
    this.name = 'SyncLockedError';
  }
}

function tempPath(dir: string): string {
  return path.join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
}

/** Renames are only durable once the directory entry is flushed too. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** temp + write + fsync + rename + fsync(dir): readers see the old or the new file, whole. */
export async function writeFileAtomically(file: string, data: string | Buffer): Promise<void> {
  const dir = path.dirname(file);
  const temp = tempPath(dir);
  try {
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(dir);
}

export interface Expected {
  sha256: string;
  size: number;
}

/**
 * Streams `body` into a new temp file in `dir`, hashing as it goes and
 * stopping as soon as it exceeds the expected size. Returns the temp path
 * only when size and sha256 both match and the data is on disk; otherwise
 * removes the temp file and throws IntegrityError.
 */
export async function receiveVerified(dir: string, body: ReadableStream<Uint8Array>, expected: Expected): Promise<string> {
  const temp = tempPath(dir);
  const hash = createHash('sha256');
  let bytes = 0;
  const handle = await open(temp, 'wx', 0o644);
  try {
    for await (const chunk of Readable.fromWeb(body as NodeReadableStream<Uint8Array>)) {
      const data = chunk as Buffer;
      bytes += data.length;
      if (bytes > expected.size) throw new IntegrityError(`the download is larger than the ${expected.size} bytes the manifest lists`);
      hash.update(data);
      await handle.write(data);
    }
    if (bytes !== expected.size) throw new IntegrityError(`the download is truncated: ${bytes} of ${expected.size} bytes`);
    const actual = hash.digest('hex');
    if (actual !== expected.sha256) throw new IntegrityError(`the download is corrupt: sha256 ${actual}, the manifest says ${expected.sha256}`);
    await handle.sync();
    await handle.close();
    return temp;
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
}

/** Hex sha256 of a file, or undefined when it does not exist. */
export async function sha256OfFile(file: string): Promise<string | undefined> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return hash.digest('hex');
}

export interface FileStamp {
  size: number;
  mtimeMs: number;
}

export async function stampOf(file: string): Promise<FileStamp | undefined> {
  try {
    const info = await stat(file);
    return info.isFile() ? { size: info.size, mtimeMs: info.mtimeMs } : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Idempotent: a file that is already gone is fine. */
export async function removeFile(file: string): Promise<void> {
  await rm(file, { force: true });
}

export async function readTextIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Leftovers of an interrupted run (only ours: the prefix is reserved). Call while holding the lock. */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    await rm(path.join(dir, name), { force: true });
    removed++;
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One sync per directory: two writers would remove each other's files and
 * interleave index writes. The lock names its holder (pid and a nonce, so
 * two syncs inside one process also exclude each other); a lock whose
 * process is dead is taken over.
 */
export async function acquireDirLock(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const file = path.join(dir, LOCK_FILE);
  const holder = `${process.pid} ${randomBytes(8).toString('hex')}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o644);
      await handle.writeFile(holder);
      await handle.close();
      return async () => {
        if ((await readTextIfExists(file)) === holder) await unlink(file).catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const current = (await readTextIfExists(file)) ?? '';
      const pid = Number(current.split(' ')[0]);
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) throw new SyncLockedError(dir, `pid ${pid}`);
      await rm(file, { force: true });
    }
  }
  throw new SyncLockedError(dir, 'unknown');
}
