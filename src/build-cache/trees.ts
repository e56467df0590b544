/**
 * Unpacked dependency cache entries kept on the worker's disk (decision
 * 0038): the last entry each owner restored or saved, as the directory tree
 * a build left, so that the next hit is a host copy into the job's volume
 * instead of a sandbox run that unpacks the tarball.
 *
 *   <root>/trees/<namespace>/<key>/<directory>…   (0700: root only)
 *   <root>/trees/<namespace>/<key>/.manifest.json  (written by the worker)
 *
 * A tree is made only from an entry's own content, at the two moments the
 * job's volume holds exactly that and no sandbox process is alive: right
 * after the sandboxed restore of the entry, and right after the save step
 * packed it. It is the same owner's data as the entry and lives under the
 * same namespace; a build is only ever handed the tree of its own namespace
 * and key, as a copy: nothing a build does reaches the kept tree.
 *
 * The host copies a tree a build wrote, but never interprets it: it copies
 * directories, regular files and links only (a link is recreated, never
 * followed; anything else and the tree is not kept), into directories it
 * has just created, without set-id bits, and rewrites the times with
 * lutimes (a link itself, never its target). The manifest (entries and
 * bytes counted by the worker when it kept the tree) is checked against the
 * copy: a tree damaged on disk, or removed while it was copied, is dropped
 * and the build falls back to the tarball.
 */
import { randomBytes } from 'node:crypto';
import { constants, lutimesSync, readdirSync } from 'node:fs';
import { chmod, copyFile, lstat, lutimes, mkdir, readdir, readFile, readlink, rename, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';

export interface TreeOptions {
  /** Host directory holding the trees (created 0700). */
  root: string;
  /** All trees together; least recently used ones go first past it. */
  maxBytes: number;
  /** A tree larger than this is not kept. */
  maxTreeBytes: number;
  /** Trees unused for this long are dropped. */
  maxAgeMs: number;
}

export interface TreeManifest {
  directories: string[];
  entries: number;
  bytes: number;
}

/** Times the restore gives, like the sandboxed restore script (plan.ts): see its comment. */
export interface RestoreTimes {
  /** Directories under /build/src whose content is in the key (older than the restored output). */
  keyedSourceDirectories: string[];
}

export type TreeOutcome = { ok: true; bytes: number } | { ok: false; reason: string };

/** handOver's reason when the worker simply has no copy (not worth a log line). */
export const NO_TREE = 'no unpacked copy on this worker';
const MANIFEST = '.manifest.json';
const PARTIAL_PREFIX = '.partial-';
const HEX = /^[0-9a-f]{16,128}$/;
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** A keep takes seconds: a partial copy this old was left by a killed worker. */
const STALE_PARTIAL_MS = 3600_000;

export class RestoredTrees {
  /** Keeps and evictions of one process run one at a time (the copies into jobs do not wait). */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: TreeOptions) {}

  /**
   * Copies the tree of (namespace, key) into `jobDir` and sets the times the
   * sandboxed restore would. Not ok (with the reason) when there is no tree
   * or it does not match its manifest; then nothing of it is left in jobDir.
   * Every sandbox process of the job must be gone.
   */
  async handOver(namespace: string, key: string, jobDir: string, directories: string[], times: RestoreTimes): Promise<TreeOutcome> {
    checkNames(directories);
    const tree = this.treePath(namespace, key);
    const manifest = await readManifest(tree);
    if (manifest === undefined) return { ok: false, reason: NO_TREE };
    if (!sameList(manifest.directories, directories)) return { ok: false, reason: 'the unpacked copy holds other directories' };
    const now = new Date();
    await utimes(tree, now, now).catch(() => undefined);
    const restoredAt = new Date(now.getTime() - 10_000);
    try {
      await removeAll(jobDir, directories);
      const found = await copyDirectories(tree, directories, jobDir, { maxBytes: manifest.bytes, stampAt: restoredAt });
      if (found.entries !== manifest.entries || found.bytes !== manifest.bytes) {
        throw new Error(`the copy holds ${found.entries} entries and ${found.bytes} bytes, its manifest ${manifest.entries} and ${manifest.bytes}`);
      }
      await stampSources(jobDir, now, times);
      return { ok: true, bytes: manifest.bytes };
    } catch (error) {
      await removeAll(jobDir, directories).catch(() => undefined);
      // A tree that does not copy faithfully is of no use to anyone: the tarball makes a new one.
      await this.serialize(() => rm(tree, { recursive: true, force: true }));
      return { ok: false, reason: `the unpacked copy was unusable (${errorMessage(error)})` };
    }
  }

  /**
   * Keeps a copy of `directories` of jobDir as the namespace's tree for
   * `key`, replacing the namespace's earlier one. Only call it when jobDir
   * holds exactly the entry's content and no sandbox process is alive.
   */
  keep(namespace: string, key: string, jobDir: string, directories: string[]): Promise<TreeOutcome> {
    return this.serialize(() => this.keepNow(namespace, key, jobDir, directories));
  }

  private async keepNow(namespace: string, key: string, jobDir: string, directories: string[]): Promise<TreeOutcome> {
    checkNames(directories);
    const tree = this.treePath(namespace, key);
    const parent = join(this.options.root, namespace);
    await mkdir(parent, { recursive: true, mode: 0o700 });
    const partial = join(parent, `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(partial, { mode: 0o700 });
      // The manifest counts what was copied, which is what a hand-over must find again.
      const kept = await copyDirectories(jobDir, directories, partial, { maxBytes: this.options.maxTreeBytes }).catch((error: unknown) => error as Error);
      if (kept instanceof Error) return { ok: false, reason: kept.message };
      const manifest: TreeManifest = { directories, entries: kept.entries, bytes: kept.bytes };
      await writeFile(join(partial, MANIFEST), JSON.stringify(manifest), { mode: 0o600 });
      // One tree per owner: the earlier one (any key) goes before this one is put in place.
      for (const name of await readdir(parent)) if (!name.startsWith(PARTIAL_PREFIX)) await rm(join(parent, name), { recursive: true, force: true });
      await rename(partial, tree);
      await this.evictNow();
      return { ok: true, bytes: kept.bytes };
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }

  /** Bytes of every kept tree, per namespace (from the manifests). */
  async usage(): Promise<Record<string, number>> {
    const usage: Record<string, number> = {};
    for (const tree of await this.listTrees()) usage[tree.namespace] = (usage[tree.namespace] ?? 0) + tree.bytes;
    return usage;
  }

  private treePath(namespace: string, key: string): string {
    // The store checks these too; here they become directory names, so again.
    if (!HEX.test(namespace) || !HEX.test(key)) throw new Error('invalid cache namespace or key');
    return join(this.options.root, namespace, key);
  }

  private serialize<T>(work: () => Promise<T>): Promise<T> {
    const run = this.writing.then(work);
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async evictNow(): Promise<void> {
    const trees = (await this.listTrees()).sort((a, b) => a.usedAt - b.usedAt);
    let total = trees.reduce((sum, tree) => sum + tree.bytes, 0);
    const now = Date.now();
    for (const tree of trees) {
      if (total <= this.options.maxBytes && now - tree.usedAt <= this.options.maxAgeMs) continue;
      await rm(tree.path, { recursive: true, force: true });
      total -= tree.bytes;
    }
  }

  private async listTrees(): Promise<Array<{ path: string; namespace: string; bytes: number; usedAt: number }>> {
    const found: Array<{ path: string; namespace: string; bytes: number; usedAt: number }> = [];
    await mkdir(this.options.root, { recursive: true, mode: 0o700 });
    for (const namespace of await readdir(this.options.root)) {
      for (const name of await readdir(join(this.options.root, namespace)).catch(() => [] as string[])) {
        const path = join(this.options.root, namespace, name);
        const stats = await lstat(path).catch(() => undefined);
        if (stats === undefined) continue;
        if (name.startsWith(PARTIAL_PREFIX)) {
          if (Date.now() - stats.mtimeMs > STALE_PARTIAL_MS) await rm(path, { recursive: true, force: true });
          continue;
        }
        const manifest = await readManifest(path);
        // Without a manifest a tree is never handed over: it only takes space.
        if (manifest === undefined) await rm(path, { recursive: true, force: true });
        else found.push({ path, namespace, bytes: manifest.bytes, usedAt: stats.mtimeMs });
      }
    }
    return found;
  }
}

async function readManifest(tree: string): Promise<TreeManifest | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(tree, MANIFEST), 'utf8')) as Partial<TreeManifest>;
    const { directories, entries, bytes } = parsed;
    if (!Array.isArray(directories) || !directories.every((name) => typeof name === 'string')) return undefined;
    if (typeof entries !== 'number' || typeof bytes !== 'number') return undefined;
    return { directories, entries, bytes };
  } catch {
    return undefined;
  }
}

/** Plain names only, never starting with a dot (so never the manifest's name). */
function checkNames(directories: readonly string[]): void {
  for (const name of directories) if (!PLAIN_NAME.test(name)) throw new Error(`cache directory ${JSON.stringify(name)} is not a plain name`);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

async function removeAll(base: string, directories: string[]): Promise<void> {
  for (const name of directories) {
    const path = join(base, name);
    // Usually absent: one lstat instead of rm's walk.
    if ((await lstat(path).catch(() => undefined)) !== undefined) await rm(path, { recursive: true, force: true });
  }
}

interface Tally {
  entries: number;
  bytes: number;
}

/**
 * Copies base/<directory> for each directory (each must be a real
 * directory) into `destination`, which must not hold them, in one parallel
 * pass: no process to start, and each entry is read once. Copies hold
 * directories, regular files and symbolic links only (a link is recreated,
 * never followed); anything else is refused. Files lose set-id bits; when
 * `stampAt` is given every copied entry gets that time. Counts the entries
 * below each directory and the bytes of the regular files; throws past maxBytes.
 */
async function copyDirectories(base: string, directories: string[], destination: string, options: { maxBytes: number; stampAt?: Date }): Promise<Tally> {
  const tally: Tally = { entries: 0, bytes: 0 };
  for (const name of directories) {
    const source = join(base, name);
    const stats = await lstat(source);
    if (!stats.isDirectory()) throw new Error(`${name} is not a directory`);
    const target = join(destination, name);
    await mkdir(target, { mode: stats.mode & 0o777 });
    await copyChildren(source, target, tally, options);
    if (options.stampAt) await lutimes(target, options.stampAt, options.stampAt);
  }
  return tally;
}

async function copyChildren(from: string, to: string, tally: Tally, options: { maxBytes: number; stampAt?: Date }): Promise<void> {
  const entries = await readdir(from, { withFileTypes: true });
  await settleAll(
    entries.map(async (entry) => {
      const source = join(from, entry.name);
      const target = join(to, entry.name);
      tally.entries += 1;
      if (entry.isSymbolicLink()) {
        await symlink(await readlink(source), target);
      } else if (entry.isDirectory()) {
        await mkdir(target, { mode: (await lstat(source)).mode & 0o777 });
        await copyChildren(source, target, tally, options);
      } else if (entry.isFile()) {
        const stats = await lstat(source);
        tally.bytes += stats.size;
        if (tally.bytes > options.maxBytes) throw new Error(`more than ${options.maxBytes} bytes`);
        await copyFile(source, target, constants.COPYFILE_EXCL);
        // copyFile keeps the mode; a set-id bit has no business in a copy made by root.
        if ((stats.mode & 0o7000) !== 0) await chmod(target, stats.mode & 0o777);
      } else {
        throw new Error(`${JSON.stringify(entry.name)} is neither a directory, a regular file nor a symbolic link`);
      }
      // Only a hand-over stamps, and its destination is the job's volume (a tmpfs): a memory operation, no thread-pool round trip.
      if (options.stampAt) lutimesSync(target, options.stampAt, options.stampAt);
    }),
  );
}

/** Like Promise.all, but returns (or throws the first error) only once every copy has stopped: nothing is left writing when the caller cleans up. */
async function settleAll(work: Array<Promise<void>>): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * The upload's files get `now`, keyed source directories (vendor/) `now -
 * 20 s`: the same times as the sandboxed restore, so cargo decides the same.
 * Synchronous: the upload is in the job's volume (a tmpfs), where these are
 * memory operations, and a vendor/ tree means hundreds of them.
 */
async function stampSources(jobDir: string, now: Date, times: RestoreTimes): Promise<void> {
  const sourceDir = join(jobDir, 'src');
  const keyed = new Set(times.keyedSourceDirectories.map((name) => join(sourceDir, name)));
  stampTree(sourceDir, now, keyed);
  const older = new Date(now.getTime() - 20_000);
  for (const directory of keyed) {
    if ((await lstat(directory).catch(() => undefined))?.isDirectory() === true) stampTree(directory, older, new Set());
  }
}

/** lutimes on `directory` and everything below it but `pruned`, never following a link. */
function stampTree(directory: string, at: Date, pruned: ReadonlySet<string>): void {
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (pruned.has(path)) continue;
    if (entry.isDirectory()) stampTree(path, at, pruned);
    else lutimesSync(path, at, at);
  }
  lutimesSync(directory, at, at);
}
