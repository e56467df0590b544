/**
 * The worker-local store of dependency cache entries: one file per
 * (namespace, key), bounded in size, evicted least-recently-used first.
 *
 *   <root>/entries/<namespace>/<key>.tar.zst   (0700 directories: root only)
 *   <root>/checkouts/<random>/deps.tar.zst     (a hard link, mounted read-only
 *                                               into one build's sandbox)
 *   <root>/trees/<namespace>/<key>/…           (an entry unpacked: trees.ts)
 *
 * The namespace is an opaque per-owner hash the API puts in the job; a build
 * only ever sees the one entry checked out for it, never a directory of
 * entries, so another owner's entries are not reachable from its sandbox.
 * Checkouts are hard links: an eviction while a build restores does not pull
 * the file from under it.
 *
 * Access time is the entry's mtime, set on every checkout and unpacked hit (atime is not
 * reliable under relatime). Entries are immutable once written: a build
 * saves only after a miss, and a save replaces by rename.
 */
import { constants } from 'node:fs';
import { chmod, link, lstat, mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CACHE_FILE } from './plan.ts';
import { RestoredTrees } from './trees.ts';

/** The store's bounds (settings `KILN_DEPENDENCY_CACHE_*`, src/config.ts); every one is optional in DependencyCacheOptions. */
export interface DependencyCacheLimits {
  maxBytes: number;
  maxBytesPerNamespace: number;
  maxEntryBytes: number;
  maxAgeMs: number;
  maxUnpackedBytes: number;
  maxUnpackedTreeBytes: number;
}

const GiB = 1024 ** 3;
const DAY_MS = 24 * 3600_000;

export const DEFAULT_DEPENDENCY_CACHE_LIMITS: Readonly<DependencyCacheLimits> = {
  maxBytes: 8 * GiB,
  maxBytesPerNamespace: 2 * GiB,
  maxEntryBytes: GiB,
  maxAgeMs: 14 * DAY_MS,
  maxUnpackedBytes: 4 * GiB,
  maxUnpackedTreeBytes: GiB,
};

export interface DependencyCacheOptions {
  /** Host directory of the store; created if missing. Must be traversable by sandbox uids (checkouts are bind-mounted). */
  root: string;
  /** All namespaces together (default 8 GiB). */
  maxBytes?: number;
  /** One owner's share, so one owner cannot evict everyone else (default 2 GiB). */
  maxBytesPerNamespace?: number;
  /** A single entry larger than this is not kept (default 1 GiB). */
  maxEntryBytes?: number;
  /** Entries unused for this long are dropped (default 14 days). */
  maxAgeMs?: number;
  /**
   * Keep each owner's last restored or saved entry unpacked too (trees.ts,
   * decision 0038), so the next hit is a host copy, not a sandboxed unpack
   * (default true).
   */
  keepUnpacked?: boolean;
  /** All unpacked trees together (default 4 GiB); they count apart from the entries' bounds. */
  maxUnpackedBytes?: number;
  /** A single tree larger than this is not kept unpacked (default 1 GiB). */
  maxUnpackedTreeBytes?: number;
}

export interface Checkout {
  /** Host directory holding CACHE_FILE, to mount read-only. */
  directory: string;
  bytes: number;
  release(): Promise<void>;
}

export type SaveResult = { saved: true; bytes: number } | { saved: false; reason: string };

interface EntryInfo {
  path: string;
  namespace: string;
  bytes: number;
  usedAt: number;
}

const NAMESPACE = /^[0-9a-f]{16,128}$/;
const KEY = /^[0-9a-f]{16,128}$/;
const STALE_CHECKOUT_MS = 24 * 3600_000;

export class DependencyCacheStore {
  readonly root: string;
  private readonly maxBytes: number;
  private readonly maxBytesPerNamespace: number;
  readonly maxEntryBytes: number;
  private readonly maxAgeMs: number;
  /** Evictions of one process run one at a time. */
  private evicting: Promise<void> = Promise.resolve();
  /** Unpacked copies of entries (undefined when turned off). */
  readonly trees?: RestoredTrees;

  constructor(options: DependencyCacheOptions) {
    this.root = options.root;
    const defaults = DEFAULT_DEPENDENCY_CACHE_LIMITS;
    this.maxBytes = options.maxBytes ?? defaults.maxBytes;
    this.maxBytesPerNamespace = options.maxBytesPerNamespace ?? defaults.maxBytesPerNamespace;
    this.maxEntryBytes = options.maxEntryBytes ?? defaults.maxEntryBytes;
    this.maxAgeMs = options.maxAgeMs ?? defaults.maxAgeMs;
    // A bound of 0 keeps no tree: no store for them at all.
    if (options.keepUnpacked !== false && (options.maxUnpackedBytes ?? defaults.maxUnpackedBytes) > 0) {
      this.trees = new RestoredTrees({
        root: join(this.root, 'trees'),
        maxBytes: options.maxUnpackedBytes ?? defaults.maxUnpackedBytes,
        maxTreeBytes: options.maxUnpackedTreeBytes ?? defaults.maxUnpackedTreeBytes,
        maxAgeMs: this.maxAgeMs,
      });
    }
  }

  static isNamespace(value: unknown): value is string {
    return typeof value === 'string' && NAMESPACE.test(value);
  }

  /** A read-only view of the entry for one build, or undefined on a miss. */
  async checkout(namespace: string, key: string): Promise<Checkout | undefined> {
    const entry = this.entryPath(namespace, key);
    const stats = await lstat(entry).catch(() => undefined);
    if (!stats?.isFile()) return undefined;
    await this.prepare();
    const directory = join(this.root, 'checkouts', randomBytes(8).toString('hex'));
    await mkdir(directory, { mode: 0o755 });
    try {
      await link(entry, join(directory, CACHE_FILE));
    } catch {
      // Evicted between lstat and link: a miss like any other.
      await rm(directory, { recursive: true, force: true });
      return undefined;
    }
    const now = new Date();
    await utimes(entry, now, now).catch(() => undefined);
    return { directory, bytes: stats.size, release: () => rm(directory, { recursive: true, force: true }) };
  }

  /** Records a use of the entry that did not check it out (its unpacked copy was used): LRU eviction counts it. */
  async markUsed(namespace: string, key: string): Promise<void> {
    const now = new Date();
    await utimes(this.entryPath(namespace, key), now, now).catch(() => undefined);
  }

  /**
   * Copies `file` (a path inside a finished build's volume, which no sandbox
   * process can touch any more) into the store. The path is not trusted: no
   * component may be a symlink, the file must be regular and at most
   * maxEntryBytes; it is streamed to a temporary name and renamed in place.
   */
  async save(namespace: string, key: string, volume: string, relativePath: string): Promise<SaveResult> {
    await this.prepare();
    const directory = join(this.root, 'entries', namespace);
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const temporary = join(directory, `.${key}.${randomBytes(6).toString('hex')}.partial`);
    try {
      const copied = await copyRegularFile(volume, relativePath, temporary, this.maxEntryBytes);
      if (!copied.ok) return { saved: false, reason: copied.reason };
      // Hard-linked into checkouts, which the sandbox uid must read.
      await chmod(temporary, 0o644);
      await rename(temporary, this.entryPath(namespace, key));
      await this.evict();
      return { saved: true, bytes: copied.bytes };
    } finally {
      await rm(temporary, { force: true });
    }
  }

  /** Drops expired entries, then least-recently-used ones until every bound holds. */
  evict(): Promise<void> {
    const run = this.evicting.then(() => this.evictNow());
    this.evicting = run.catch(() => undefined);
    return run;
  }

  async usage(): Promise<{ bytes: number; entries: number; perNamespace: Record<string, number> }> {
    const entries = await this.listEntries();
    const perNamespace: Record<string, number> = {};
    for (const entry of entries) perNamespace[entry.namespace] = (perNamespace[entry.namespace] ?? 0) + entry.bytes;
    return { bytes: entries.reduce((sum, entry) => sum + entry.bytes, 0), entries: entries.length, perNamespace };
  }

  private entryPath(namespace: string, key: string): string {
    if (!NAMESPACE.test(namespace)) throw new Error('invalid cache namespace');
    if (!KEY.test(key)) throw new Error('invalid cache key');
    return join(this.root, 'entries', namespace, `${key}.tar.zst`);
  }

  /** Creates the store's directories with their modes (before anything is kept in them). */
  async prepare(): Promise<void> {
    // 0711: sandbox uids may pass through to a checkout they are given, never list the store.
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    await mkdir(join(this.root, 'entries'), { recursive: true, mode: 0o700 });
    await mkdir(join(this.root, 'checkouts'), { recursive: true, mode: 0o711 });
    await mkdir(join(this.root, 'trees'), { recursive: true, mode: 0o700 });
    await chmod(this.root, 0o711);
  }

  private async evictNow(): Promise<void> {
    await this.sweepCheckouts();
    const entries = (await this.listEntries()).sort((a, b) => a.usedAt - b.usedAt);
    const now = Date.now();
    const perNamespace = new Map<string, number>();
    let total = 0;
    for (const entry of entries) {
      total += entry.bytes;
      perNamespace.set(entry.namespace, (perNamespace.get(entry.namespace) ?? 0) + entry.bytes);
    }
    for (const entry of entries) {
      const namespaceBytes = perNamespace.get(entry.namespace) ?? 0;
      const expired = now - entry.usedAt > this.maxAgeMs;
      if (!expired && total <= this.maxBytes && namespaceBytes <= this.maxBytesPerNamespace) continue;
      await rm(entry.path, { force: true });
      total -= entry.bytes;
      perNamespace.set(entry.namespace, namespaceBytes - entry.bytes);
    }
  }

  /** Checkouts a killed worker never released (a live build holds one for minutes, not a day). */
  private async sweepCheckouts(): Promise<void> {
    const checkouts = join(this.root, 'checkouts');
    for (const name of await readdir(checkouts).catch(() => [] as string[])) {
      const stats = await lstat(join(checkouts, name)).catch(() => undefined);
      if (stats !== undefined && Date.now() - stats.mtimeMs > STALE_CHECKOUT_MS) await rm(join(checkouts, name), { recursive: true, force: true });
    }
  }

  private async listEntries(): Promise<EntryInfo[]> {
    const found: EntryInfo[] = [];
    const entriesDir = join(this.root, 'entries');
    for (const namespace of await readdir(entriesDir).catch(() => [] as string[])) {
      if (!NAMESPACE.test(namespace)) continue;
      for (const name of await readdir(join(entriesDir, namespace)).catch(() => [] as string[])) {
        if (!name.endsWith('.tar.zst') || name.startsWith('.')) continue;
        const path = join(entriesDir, namespace, name);
        const stats = await stat(path).catch(() => undefined);
        if (stats?.isFile()) found.push({ path, namespace, bytes: stats.size, usedAt: stats.mtimeMs });
      }
    }
    return found;
  }
}

type CopyResult = { ok: true; bytes: number } | { ok: false; reason: string };

async function copyRegularFile(root: string, relativePath: string, destination: string, maxBytes: number): Promise<CopyResult> {
  let current = root;
  const parts = relativePath.split('/');
  for (const [index, part] of parts.entries()) {
    if (part === '' || part === '.' || part === '..') return { ok: false, reason: `unsafe path ${relativePath}` };
    current = join(current, part);
    const stats = await lstat(current).catch(() => undefined);
    const last = index === parts.length - 1;
    if (stats === undefined) return { ok: false, reason: `the save step left no ${relativePath}` };
    if (last ? !stats.isFile() : !stats.isDirectory()) return { ok: false, reason: `${relativePath} is not a regular file in a plain directory` };
  }
  const input = await open(current, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const size = (await input.stat()).size;
    if (size > maxBytes) return { ok: false, reason: `the entry is ${size} bytes, more than the ${maxBytes}-byte limit` };
    const output = await open(destination, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      const bytes = await pump(input, output, maxBytes);
      if (bytes === undefined) return { ok: false, reason: `the entry grew past the ${maxBytes}-byte limit while being copied` };
      return { ok: true, bytes };
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}

/** Copies at most maxBytes; undefined when there was more. */
async function pump(input: FileHandle, output: FileHandle, maxBytes: number): Promise<number | undefined> {
  const buffer = Buffer.alloc(1024 * 1024);
  let total = 0;
  while (true) {
    const { bytesRead } = await input.read(buffer, 0, buffer.length, null);
    if (bytesRead === 0) return total;
    total += bytesRead;
    if (total > maxBytes) return undefined;
    await output.write(buffer, 0, bytesRead);
  }
}
