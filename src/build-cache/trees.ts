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
 * The host copies a tree a build wrote, but never interprets it: `cp -a` as
 * root never follows a symlink in the source and writes into a destination
 * it has just emptied (as StagedVolume does), and the times are rewritten
 * with lutimes (a link itself, never its target). The manifest (entries and
 * bytes counted by the worker when it kept the tree) is checked against the
 * copy: a tree damaged on disk, or removed while it was copied, is dropped
 * and the build falls back to the tarball.
 */
import { randomBytes } from 'node:crypto';
import { lstat, lutimes, mkdir, readdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.ts';
import { runHost } from '../sandbox/exec.ts';

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
/** Copies are of at most maxTreeBytes into a tmpfs: minutes would mean something is wrong. */
const COPY_TIMEOUT_MS = 2 * 60_000;

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
      const copied = await runHost('/usr/bin/cp', ['-a', '--', ...directories.map((name) => join(tree, name)), `${jobDir}/`], { timeoutMs: COPY_TIMEOUT_MS });
      if (copied.code !== 0) throw new Error(`cp exited with ${copied.code}: ${copied.stderr.trim().slice(0, 300)}`);
      const found = await walkAll(jobDir, directories, (path) => lutimes(path, restoredAt, restoredAt));
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
    const size = await walkAll(jobDir, directories).catch((error: unknown) => error as Error);
    if (size instanceof Error) return { ok: false, reason: `the job holds no complete entry (${size.message})` };
    if (size.bytes > this.options.maxTreeBytes) return { ok: false, reason: `${size.bytes} bytes unpacked, more than the ${this.options.maxTreeBytes}-byte limit` };
    const parent = join(this.options.root, namespace);
    await mkdir(parent, { recursive: true, mode: 0o700 });
    const partial = join(parent, `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(partial, { mode: 0o700 });
      const copied = await runHost('/usr/bin/cp', ['-a', '--', ...directories.map((name) => join(jobDir, name)), `${partial}/`], { timeoutMs: COPY_TIMEOUT_MS });
      if (copied.code !== 0) return { ok: false, reason: `cp exited with ${copied.code}: ${copied.stderr.trim().slice(0, 300)}` };
      // The manifest counts what was copied, which is what a hand-over will find.
      const kept = await walkAll(partial, directories);
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
  for (const name of directories) await rm(join(base, name), { recursive: true, force: true });
}

/**
 * Counts every entry under base/<directory> (each must be a real
 * directory) and the bytes of its regular files, never following a link;
 * `visit` sees each path, the directories themselves included.
 */
async function walkAll(base: string, directories: string[], visit?: (path: string) => Promise<void>): Promise<{ entries: number; bytes: number }> {
  const total = { entries: 0, bytes: 0 };
  for (const name of directories) {
    const top = join(base, name);
    if (!(await lstat(top)).isDirectory()) throw new Error(`${name} is not a directory`);
    await walk(top, total, visit);
  }
  return total;
}

async function walk(directory: string, total: { entries: number; bytes: number }, visit?: (path: string) => Promise<void>): Promise<void> {
  await visit?.(directory);
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    total.entries += 1;
    if (entry.isDirectory()) {
      await walk(path, total, visit);
      continue;
    }
    if (entry.isFile()) total.bytes += (await lstat(path)).size;
    await visit?.(path);
  }
}

/**
 * The upload's files get `now`, keyed source directories (vendor/) `now -
 * 20 s`: the same times as the sandboxed restore, so cargo decides the same.
 */
async function stampSources(jobDir: string, now: Date, times: RestoreTimes): Promise<void> {
  const sourceDir = join(jobDir, 'src');
  const keyed = new Set(times.keyedSourceDirectories.map((name) => join(sourceDir, name)));
  const stamp = (at: Date) => (path: string) => lutimes(path, at, at);
  await walkPruned(sourceDir, keyed, stamp(now));
  const older = new Date(now.getTime() - 20_000);
  for (const directory of keyed) {
    if ((await lstat(directory).catch(() => undefined))?.isDirectory() === true) await walk(directory, { entries: 0, bytes: 0 }, stamp(older));
  }
}

async function walkPruned(directory: string, pruned: ReadonlySet<string>, visit: (path: string) => Promise<void>): Promise<void> {
  await visit(directory);
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (pruned.has(path)) continue;
    if (entry.isDirectory()) await walkPruned(path, pruned, visit);
    else await visit(path);
  }
}
