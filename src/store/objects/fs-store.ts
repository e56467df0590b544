import { createHash, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import type { Dirent } from 'node:fs';
import { access, mkdir, open, readFile, readdir, rename, rm, rmdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream';
import type { Readable } from 'node:stream';
import { PlatformError } from '../../errors.ts';
import { asBuffer, isSha256Hex, normalizeSha256, readAll, toReadable, VerifyingStream } from './integrity.ts';
import { assertValidKey, assertValidPrefix, ObjectIntegrityError, ObjectNotFoundError } from './object-store.ts';
import type { ObjectInfo, ObjectStore } from './object-store.ts';
import { parentsToSync } from './durable-dirs.ts';
import { WriterThreads } from './writer-threads.ts';

export interface FsObjectStoreConfig {
  /** Directory holding every object; created on first use. */
  root: string;
  /** Threads that write small objects given as bytes (writer-threads.ts); 0: every put on the event loop. */
  writerThreads?: number;
}

/**
 * Writer threads of a store: four keep as many fsyncs in flight as libuv's
 * own pool did, now without holding that pool (decision 0042).
 */
export const DEFAULT_WRITER_THREADS = 4;
/**
 * Bytes up to which a put goes to a writer thread. The bytes are copied once
 * to reach the thread; for an upload kept in memory (at most 1 MiB by
 * default) that costs far less than the dozen round trips it saves, while a
 * large artifact is better written from where it is.
 */
export const WRITER_THREAD_MAX_BYTES = 1024 * 1024;

/*
 * On-disk layout. Key "a/b/c" lives in directory <root>/a/b as:
 *   c~meta          {"size","sha256","data"}: the object exists iff this file does
 *   c~data-<uuid>   the bytes, named by the meta file
 *   c~tmp-<uuid>    a meta file being written (renamed over c~meta when complete)
 * "~" cannot occur in a key segment, so these names never collide with the
 * directory made for a longer key ("c/d") nor with another key's files.
 * A put writes and fsyncs a fresh data file, then atomically renames a new
 * meta file into place: readers see the old object or the new one, never a
 * mix, and a crash leaves at worst an unreferenced data or tmp file. Once
 * the rename is done the data is never removed by that put, even when the
 * directory's fsync after it fails: the meta file may already name it.
 */
const META = '~meta';
const DATA = '~data-';
const TMP = '~tmp-';

interface MetaFile {
  size: number;
  sha256: string;
  /** File name (in the same directory) of the bytes. */
  data: string;
  contentType?: string;
}

function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? '');
}

async function writeAll(handle: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

/** Creates `file` (which must not exist), streams `source` into it, hashing as it goes, and fsyncs it. */
async function writeDurably(file: string, source: Readable): Promise<{ size: number; sha256: string }> {
  const handle = await open(file, 'wx', 0o644);
  try {
    const hash = createHash('sha256');
    let size = 0;
    // Awaiting each write applies backpressure: memory stays flat for any size.
    for await (const chunk of source) {
      const bytes = asBuffer(chunk);
      hash.update(bytes);
      size += bytes.length;
      await writeAll(handle, bytes);
    }
    await handle.sync();
    return { size, sha256: hash.digest('hex') };
  } finally {
    await handle.close();
  }
}

/** writeDurably for bytes already in memory: one write, no stream in between. */
async function writeBufferDurably(file: string, bytes: Buffer): Promise<{ size: number; sha256: string }> {
  const handle = await open(file, 'wx', 0o644);
  try {
    await writeAll(handle, bytes);
    await handle.sync();
    return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  } finally {
    await handle.close();
  }
}

/** A rename is only durable once the directory entry itself is flushed. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class FsObjectStore implements ObjectStore {
  readonly kind = 'fs' as const;
  private readonly root: string;
  private readonly writers: WriterThreads | undefined;

  constructor(config: FsObjectStoreConfig) {
    this.root = path.resolve(config.root);
    const threads = config.writerThreads ?? DEFAULT_WRITER_THREADS;
    this.writers = threads > 0 ? new WriterThreads(threads) : undefined;
  }

  async put(key: string, body: Readable | Buffer, options: { expectedSha256?: string; contentType?: string } = {}): Promise<ObjectInfo> {
    assertValidKey(key);
    const expected = normalizeSha256(options.expectedSha256);
    const { dir, name } = this.locate(key);
    const dataName = `${name}${DATA}${randomUUID()}`;
    if (this.writers && Buffer.isBuffer(body) && body.length <= WRITER_THREAD_MAX_BYTES) {
      return this.putOnWriterThread(this.writers, key, { dir, name, dataName }, body, { expected, contentType: options.contentType });
    }
    const { written, createdDir, firstCreated } = await this.writeData(dir, dataName, body);
    let previous: MetaFile | undefined;
    try {
      if (expected !== undefined && written.sha256 !== expected) throw new ObjectIntegrityError(key, expected, written.sha256);
      // An unreadable old meta file must not block replacing the object. In
      // a directory this put created there is none (every new version's
      // source lands in a new directory): no read that can only fail.
      previous = createdDir ? undefined : await this.readMeta(key).catch(() => undefined);
      const meta: MetaFile = { size: written.size, sha256: written.sha256, data: dataName, contentType: options.contentType };
      // The new directories' entries first: a failure there must leave no meta file pointing at removed data.
      for (const parent of parentsToSync(firstCreated, dir)) await syncDir(parent);
      await this.replaceMeta(dir, name, meta);
    } catch (error) {
      await rm(path.join(dir, dataName), { force: true });
      throw error;
    }
    // Renamed: the meta file names the data now, so a failure from here on must leave the data in place.
    await syncDir(dir);
    // The new object is visible and durable; the old bytes are now garbage.
    if (previous && previous.data !== dataName) await rm(path.join(dir, previous.data), { force: true });
    return { key, size: written.size, sha256: written.sha256 };
  }

  /** Stops the writer threads (idle ones never keep the process alive; this is for an orderly close). */
  async close(): Promise<void> {
    await this.writers?.close();
  }

  /**
   * put() of bytes in memory: the same files, calls and order as the path
   * below, made by a writer thread in one round trip. The digest is known
   * before anything is written, so a wrong expected digest writes nothing.
   */
  private async putOnWriterThread(
    writers: WriterThreads,
    key: string,
    at: { dir: string; name: string; dataName: string },
    bytes: Buffer,
    options: { expected: string | undefined; contentType: string | undefined },
  ): Promise<ObjectInfo> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (options.expected !== undefined && sha256 !== options.expected) throw new ObjectIntegrityError(key, options.expected, sha256);
    const meta: MetaFile = { size: bytes.length, sha256, data: at.dataName, contentType: options.contentType };
    const written = await writers.put({
      dir: at.dir,
      dataName: at.dataName,
      tmpName: `${at.name}${TMP}${randomUUID()}`,
      metaName: `${at.name}${META}`,
      bytes,
      meta: JSON.stringify(meta),
    });
    // An unreadable old meta file must not block replacing the object.
    const previous = written.previousMeta === undefined ? undefined : this.parseMetaOrUndefined(key, at.name, written.previousMeta);
    // The new object is visible and durable; the old bytes are now garbage.
    if (previous && previous.data !== at.dataName) await rm(path.join(at.dir, previous.data), { force: true });
    return { key, size: bytes.length, sha256 };
  }

  private parseMetaOrUndefined(key: string, name: string, text: string): MetaFile | undefined {
    try {
      return this.parseMeta(key, name, text);
    } catch {
      return undefined;
    }
  }

  async get(key: string): Promise<{ info: ObjectInfo; body: Readable }> {
    assertValidKey(key);
    const { dir } = this.locate(key);
    // A concurrent put may replace the object and delete its old data file
    // between reading the meta file and opening the data: read again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const meta = await this.readMeta(key);
      if (!meta) throw new ObjectNotFoundError(key);
      let handle: FileHandle;
      try {
        handle = await open(path.join(dir, meta.data), 'r');
      } catch (error) {
        if (isErrno(error, 'ENOENT')) continue;
        throw error;
      }
      const info: ObjectInfo = { key, size: meta.size, sha256: meta.sha256 };
      const verifier = new VerifyingStream(key, meta.sha256, meta.size);
      // pipeline forwards read errors to the verifier and closes the file
      // if the consumer destroys the stream early.
      pipeline(handle.createReadStream(), verifier, () => {});
      return { info, body: verifier };
    }
    throw new PlatformError('object_store_busy', `object ${key} kept changing while being opened`);
  }

  async getBuffer(key: string): Promise<{ info: ObjectInfo; body: Buffer }> {
    const { info, body } = await this.get(key);
    return { info, body: await readAll(body) };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    const meta = await this.readMeta(key);
    return meta && { key, size: meta.size, sha256: meta.sha256 };
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    const { dir, name } = this.locate(key);
    // Even an object with unreadable metadata must be deletable.
    const data = (await this.readMeta(key).catch(() => undefined))?.data;
    // Removing the meta file first makes the object disappear atomically.
    await rm(path.join(dir, `${name}${META}`), { force: true });
    if (data) await rm(path.join(dir, data), { force: true });
    await this.pruneEmptyDirs(dir);
  }

  async deletePrefix(prefix: string): Promise<void> {
    assertValidPrefix(prefix);
    const keys: string[] = [];
    for await (const key of this.keys(prefix)) keys.push(key);
    for (const key of keys) await this.delete(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    for await (const key of this.keys(prefix)) {
      const meta = await this.readMeta(key);
      // Deleted since the directory was read: it is simply not listed.
      if (meta) yield { key, size: meta.size, sha256: meta.sha256 };
    }
  }

  async ping(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await access(this.root, constants.R_OK | constants.W_OK | constants.X_OK);
  }

  private keys(prefix: string): AsyncGenerator<string> {
    // Only the complete segments of the prefix name a directory to walk.
    return this.walk(prefix.slice(0, prefix.lastIndexOf('/') + 1), prefix);
  }

  /** Walks `<root>/<base>` depth-first in key order, yielding keys starting with `prefix`. */
  private async *walk(base: string, prefix: string): AsyncGenerator<string> {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(this.root, base), { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return;
      throw error;
    }
    for (const entry of this.orderedEntries(entries, base)) {
      if (entry.isDir) {
        const sub = `${entry.key}/`;
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) yield* this.walk(sub, prefix);
      } else if (entry.key.startsWith(prefix)) {
        yield entry.key;
      }
    }
  }

  /**
   * Sorting a directory's objects by name and its subdirectories by name
   * plus "/" makes a depth-first walk produce keys in byte order ("a-b" <
   * "a/b" < "ab"), the order S3 lists in.
   */
  private orderedEntries(entries: Dirent[], base: string): { key: string; isDir: boolean; sortKey: string }[] {
    const result: { key: string; isDir: boolean; sortKey: string }[] = [];
    for (const entry of entries) {
      if (entry.isDirectory()) result.push({ key: base + entry.name, isDir: true, sortKey: `${entry.name}/` });
      else if (entry.isFile() && entry.name.endsWith(META)) {
        const name = entry.name.slice(0, -META.length);
        result.push({ key: base + name, isDir: false, sortKey: name });
      }
    }
    return result.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
  }

  private locate(key: string): { dir: string; name: string } {
    const segments = key.split('/');
    const name = segments.pop() ?? '';
    return { dir: path.join(this.root, ...segments), name };
  }

  /** Writes the data file; `createdDir`: the key's directory did not exist before (so neither did the object). */
  private async writeData(dir: string, dataName: string, body: Readable | Buffer): Promise<{ written: { size: number; sha256: string }; createdDir: boolean; firstCreated?: string }> {
    const file = path.join(dir, dataName);
    const source = toReadable(body);
    let firstCreated: string | undefined;
    // A concurrent delete may prune the directory between mkdir and open.
    for (let attempt = 0; ; attempt++) {
      // recursive mkdir names the first directory it created, if any; keep the shallowest over the attempts.
      const created = await mkdir(dir, { recursive: true });
      if (created !== undefined && (firstCreated === undefined || created.length < firstCreated.length)) firstCreated = created;
      try {
        const written = Buffer.isBuffer(body) ? await writeBufferDurably(file, body) : await writeDurably(file, source);
        return firstCreated === undefined ? { written, createdDir: false } : { written, createdDir: true, firstCreated };
      } catch (error) {
        await rm(file, { force: true });
        if (!isErrno(error, 'ENOENT') || attempt >= 3 || source.readableDidRead) throw error;
      }
    }
  }

  /** Writes the meta file beside the data and renames it into place (the caller makes the rename durable). */
  private async replaceMeta(dir: string, name: string, meta: MetaFile): Promise<void> {
    const tmp = path.join(dir, `${name}${TMP}${randomUUID()}`);
    try {
      const handle = await open(tmp, 'wx', 0o644);
      try {
        await writeAll(handle, Buffer.from(JSON.stringify(meta)));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path.join(dir, `${name}${META}`));
    } catch (error) {
      await rm(tmp, { force: true });
      throw error;
    }
  }

  private async readMeta(key: string): Promise<MetaFile | undefined> {
    const { dir, name } = this.locate(key);
    let text: string;
    try {
      text = await readFile(path.join(dir, `${name}${META}`), 'utf8');
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
      throw error;
    }
    return this.parseMeta(key, name, text);
  }

  private parseMeta(key: string, name: string, text: string): MetaFile {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    const meta = value as Partial<MetaFile> | undefined;
    const valid =
      typeof meta === 'object' &&
      meta !== null &&
      Number.isSafeInteger(meta.size) &&
      isSha256Hex(meta.sha256) &&
      typeof meta.data === 'string' &&
      meta.data.startsWith(`${name}${DATA}`) &&
      !meta.data.includes('/');
    if (!valid) throw new PlatformError('object_store_corrupt', `the metadata of object ${key} is unreadable`);
    return meta as MetaFile;
  }

  /** Removes directories left empty, up to (not including) the root. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    let current = dir;
    while (current.startsWith(this.root + path.sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (or already gone): stop climbing
      }
      current = path.dirname(current);
    }
  }
}
