/**
 * Writes small new objects of the filesystem store on threads of their own.
 *
 * A put is a dozen filesystem calls (mkdir, open, write, fsync and close of
 * the data and of the meta file, rename, open, fsync and close of the
 * directory). Through `fs/promises` each is a round trip to libuv's pool of
 * four threads: the event loop paid for a dozen dispatches and completions
 * per upload (about half of the upload path's CPU on the event loop, issue
 * 16), and three fsyncs per upload held the four pool threads, so gunzip of
 * the next uploads and every other file access queued behind them.
 *
 * Here the whole sequence is ONE message to a writer thread, which makes the
 * same calls synchronously, in the same order, with the same flags: the data
 * file is fsynced before the meta file points at it, the meta file before it
 * is renamed into place, the directory after the rename; before the meta
 * file, the parents of the directories the put created (`parentsToSync`: a
 * copy of durable-dirs.ts's, held to the same answers by a test). The answer comes
 * only once all of it is durable. Several writer threads keep several
 * fsyncs in flight (concurrent fsyncs share the filesystem's journal
 * commits) without occupying libuv's pool.
 */
import { Worker } from 'node:worker_threads';
import { PlatformError } from '../../errors.ts';

/** One put of bytes under `dir`: the file names are the store's (see fs-store.ts). */
export interface WriterJob {
  dir: string;
  /** Name of the new data file, unique (it carries a uuid). */
  dataName: string;
  /** Name of the meta file being written, renamed to `metaName` once durable. */
  tmpName: string;
  metaName: string;
  bytes: Uint8Array;
  /** The meta file's content (it names `dataName`). */
  meta: string;
}

export interface WriterResult {
  /** The key's directory did not exist before this put (so neither did the object). */
  createdDir: boolean;
  /** The previous meta file's text, read before the new one replaced it (only when the directory existed). */
  previousMeta?: string;
}

type WriterAnswer = { id: number; ok: true; result: WriterResult } | { id: number; ok: false; error: { message: string; code?: string; errno?: number; syscall?: string; path?: string } };

/** durable-dirs.ts's parentsToSync in plain JavaScript, for the writer thread (uses its `path`). */
export const WRITER_PARENTS_TO_SYNC = `function parentsToSync(firstCreated, dir) {
  if (firstCreated === undefined) return [];
  const top = path.resolve(firstCreated);
  const parents = [];
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const parent = path.dirname(current);
    if (parent === current) return [];
    parents.unshift(parent);
    if (current === top) return parents;
  }
}`;

/**
 * Plain JavaScript run with `eval: true`, like bench/load.ts's generator: the
 * thread needs no TypeScript loader (Kiln runs under tsx, whose loader Node
 * 20 does not pass to worker threads) and starts in a few milliseconds.
 * Every call and its order mirror FsObjectStore's own (writeData, replaceMeta, put).
 */
const WRITER_SOURCE = `
const fs = require('node:fs');
const path = require('node:path');
const { parentPort } = require('node:worker_threads');
function writeAll(fd, bytes) {
  let offset = 0;
  while (offset < bytes.length) offset += fs.writeSync(fd, bytes, offset, bytes.length - offset);
}
function writeDurably(file, bytes) {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    writeAll(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
function syncDir(dir) {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
${WRITER_PARENTS_TO_SYNC}
function writeData(dir, file, bytes) {
  let firstCreated;
  // A concurrent delete may prune the directory between mkdir and open.
  for (let attempt = 0; ; attempt++) {
    const created = fs.mkdirSync(dir, { recursive: true });
    if (created !== undefined && (firstCreated === undefined || created.length < firstCreated.length)) firstCreated = created;
    try {
      writeDurably(file, bytes);
      return firstCreated;
    } catch (error) {
      fs.rmSync(file, { force: true });
      if (error.code !== 'ENOENT' || attempt >= 3) throw error;
    }
  }
}
function readPrevious(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
function put(job) {
  const data = path.join(job.dir, job.dataName);
  const firstCreated = writeData(job.dir, data, job.bytes);
  const createdDir = firstCreated !== undefined;
  const meta = path.join(job.dir, job.metaName);
  let previousMeta;
  try {
    // The new directories' entries first: a failure there must leave no meta file pointing at removed data.
    for (const parent of parentsToSync(firstCreated, job.dir)) syncDir(parent);
    // In a directory this put created there is no previous meta file to read.
    previousMeta = createdDir ? undefined : readPrevious(meta);
    const tmp = path.join(job.dir, job.tmpName);
    try {
      writeDurably(tmp, Buffer.from(job.meta));
      fs.renameSync(tmp, meta);
    } catch (error) {
      fs.rmSync(tmp, { force: true });
      throw error;
    }
  } catch (error) {
    fs.rmSync(data, { force: true });
    throw error;
  }
  // Renamed: the meta file names the data now, so a failure from here on must leave the data in place.
  syncDir(job.dir);
  return previousMeta === undefined ? { createdDir } : { createdDir, previousMeta };
}
parentPort.on('message', (job) => {
  try {
    parentPort.postMessage({ id: job.id, ok: true, result: put(job) });
  } catch (error) {
    const { message, code, errno, syscall, path: file } = error;
    parentPort.postMessage({ id: job.id, ok: false, error: { message: String(message), code, errno, syscall, path: file } });
  }
});
`;

interface Pending {
  resolve: (result: WriterResult) => void;
  reject: (error: Error) => void;
}

/** One writer thread and the puts it has been given, answered in order. */
class WriterThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed = false;

  constructor(onExit: (thread: WriterThread) => void) {
    this.worker = new Worker(WRITER_SOURCE, { eval: true });
    // An idle writer must not keep the process alive; a busy one does (see put).
    this.worker.unref();
    this.worker.on('message', (answer: WriterAnswer) => this.answer(answer));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => {
      this.fail(new Error(`object writer thread exited with code ${code}`));
      onExit(this);
    });
  }

  get load(): number {
    return this.pending.size;
  }

  put(job: WriterJob): Promise<WriterResult> {
    const id = this.nextId++;
    return new Promise<WriterResult>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      // A copy of exactly these bytes, moved (not copied again) to the thread.
      const bytes = new Uint8Array(job.bytes);
      this.worker.postMessage({ ...job, bytes, id }, [bytes.buffer]);
    });
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }

  private answer(answer: WriterAnswer): void {
    const waiting = this.pending.get(answer.id);
    if (!waiting) return;
    this.pending.delete(answer.id);
    if (this.pending.size === 0) this.worker.unref();
    if (answer.ok) waiting.resolve(answer.result);
    else waiting.reject(Object.assign(new Error(answer.error.message), answer.error));
  }

  /** The thread is gone: every put it held fails (none was acknowledged, so none is lost). */
  private fail(cause: Error): void {
    if (this.failed) return;
    this.failed = true;
    for (const waiting of this.pending.values()) waiting.reject(new PlatformError('object_writer_failed', `the object writer thread failed: ${cause.message}`));
    this.pending.clear();
  }
}

/** A fixed number of writer threads, started on first use; each put goes to the least busy one. */
export class WriterThreads {
  private readonly threads: WriterThread[] = [];

  constructor(private readonly size: number) {}

  put(job: WriterJob): Promise<WriterResult> {
    return this.leastBusy().put(job);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.splice(0).map((thread) => thread.terminate()));
  }

  private leastBusy(): WriterThread {
    let chosen: WriterThread | undefined;
    for (const thread of this.threads) if (!chosen || thread.load < chosen.load) chosen = thread;
    // Another thread is started only when every running one is busy.
    if (chosen && (chosen.load === 0 || this.threads.length >= this.size)) return chosen;
    const started = new WriterThread((gone) => this.forget(gone));
    this.threads.push(started);
    return started;
  }

  /** A thread that exited is replaced on a later put. */
  private forget(gone: WriterThread): void {
    const index = this.threads.indexOf(gone);
    if (index >= 0) this.threads.splice(index, 1);
  }
}
