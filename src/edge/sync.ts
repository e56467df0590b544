/**
 * `kiln edge sync`: mirrors the active artifacts of one environment into a
 * directory an edge server loads filters from.
 *
 * Guarantees (decision 0004):
 *  - a `<owner>.<app>.wasm` file is always either absent, its complete old
 *    content, or complete new content whose sha256 and size match the
 *    manifest: downloads go to a temp file, are verified and fsynced, then
 *    renamed over the target;
 *  - nothing is removed that cannot be replaced: a failed or corrupt
 *    download keeps the old file (and its index entry); withdrawn files are
 *    removed only after every replacement is in place, and only files the
 *    previous index lists;
 *  - the index is written last, atomically, and records the manifest ETag
 *    only when the directory matches the manifest completely;
 *  - an interrupted run leaves old-or-new files and an index of the last
 *    completed run; the next run removes our temp files and, when a file's
 *    size or mtime no longer matches the index, re-checks every file by hash.
 */
import { spawn } from 'node:child_process';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { EdgeApiError, EdgeClient, EdgeUnreachableError } from './client.ts';
import { acquireDirLock, fsyncDir, IntegrityError, receiveVerified, removeFile, removeStaleTemps, sha256OfFile, stampOf } from './files.ts';
import { INDEX_FORMAT, readIndex, writeIndex, type IndexEntry, type SyncIndex } from './index-file.ts';
import type { Manifest, ManifestEntry } from './manifest.ts';
import { fileNameFor } from './naming.ts';

export interface SyncOptions {
  /** The Kiln API, e.g. https://kiln.example.com */
  url: string;
  /** An edge token. */
  token: string;
  environment: string;
  dir: string;
  /** Hash every file on the first round instead of trusting the index's size and mtime. */
  verify?: boolean;
}

export interface SyncFailure {
  applicationId: string;
  application: string;
  file?: string;
  reason: string;
}

export interface SyncReport {
  environment: string;
  /** True when the server answered 304: nothing was touched. */
  unchanged: boolean;
  /** True when the directory now matches the manifest exactly. */
  complete: boolean;
  etag: string | null;
  /** Files written (new or replaced) and removed (withdrawn), by name. */
  written: string[];
  removed: string[];
  failed: SyncFailure[];
  /** How many artifacts the directory holds now. */
  files: number;
}

interface Desired {
  file: string;
  entry: ManifestEntry;
}

/** One planned file that is already right, or was downloaded and verified into `temp`. */
type Placed = { desired: Desired; temp?: string };

/** One directory, locked for as long as this object is open. */
export class EdgeSync {
  private trusted = false;

  private constructor(
    private readonly options: SyncOptions,
    private readonly client: EdgeClient,
    private readonly unlock: () => Promise<void>,
  ) {}

  static async open(options: SyncOptions): Promise<EdgeSync> {
    const dir = path.resolve(options.dir);
    const unlock = await acquireDirLock(dir);
    try {
      await removeStaleTemps(dir);
    } catch (error) {
      await unlock();
      throw error;
    }
    return new EdgeSync({ ...options, dir }, new EdgeClient({ url: options.url, token: options.token }), unlock);
  }

  close(): Promise<void> {
    return this.unlock();
  }

  async syncOnce(signal?: AbortSignal): Promise<SyncReport> {
    const { dir, environment } = this.options;
    const previous = await readIndex(dir, environment);
    const trusted = this.trusted || (!this.options.verify && previous !== undefined && (await stampsMatch(dir, previous)));
    const answer = await this.client.fetchManifest(environment, trusted ? (previous?.etag ?? undefined) : undefined, signal);
    if (!answer.changed) {
      this.trusted = true;
      return { environment, unchanged: true, complete: true, etag: answer.etag, written: [], removed: [], failed: [], files: previous?.applications.length ?? 0 };
    }
    const { desired, failed } = plan(answer.manifest);
    const placed: Placed[] = [];
    for (const item of desired) {
      if (await this.isCurrent(item, previous, trusted)) {
        placed.push({ desired: item });
        continue;
      }
      try {
        placed.push({ desired: item, temp: await receiveVerified(dir, await this.client.download(item.entry, signal), item.entry) });
      } catch (error) {
        if (signal?.aborted) throw error;
        failed.push({ applicationId: item.entry.applicationId, application: item.entry.application, file: item.file, reason: reasonOf(error) });
      }
    }
    const report = await this.commit(answer.manifest, answer.etag, previous, placed, failed);
    this.trusted = true;
    return report;
  }

  /** Already holds the wanted bytes: trusted from the index, else checked by hash. */
  private async isCurrent(item: Desired, previous: SyncIndex | undefined, trusted: boolean): Promise<boolean> {
    const known = previous?.applications.find((entry) => entry.file === item.file);
    if (trusted && known) return known.sha256 === item.entry.sha256;
    return (await sha256OfFile(path.join(this.options.dir, item.file))) === item.entry.sha256;
  }

  /**
   * Renames the verified downloads into place, then removes what the
   * manifest no longer lists, then writes the index: the order that never
   * leaves an application without a file it had, unless it was withdrawn.
   */
  private async commit(manifest: Manifest, etag: string | undefined, previous: SyncIndex | undefined, placed: Placed[], failed: SyncFailure[]): Promise<SyncReport> {
    const { dir } = this.options;
    const next = new Map<string, IndexEntry>();
    const written: string[] = [];
    for (const { desired, temp } of placed) {
      const target = path.join(dir, desired.file);
      if (temp) {
        await rename(temp, target);
        written.push(desired.file);
      }
      const stamp = await stampOf(target);
      next.set(desired.file, { ...desired.entry, file: desired.file, mtimeMs: stamp?.mtimeMs ?? 0 });
    }
    if (written.length > 0) await fsyncDir(dir);
    // An application whose new file could not be placed keeps its old one.
    const failedApps = new Set(failed.map((failure) => failure.applicationId));
    for (const old of previous?.applications ?? []) {
      if (failedApps.has(old.applicationId) && !next.has(old.file)) next.set(old.file, old);
    }
    const removed: string[] = [];
    for (const old of previous?.applications ?? []) {
      if (next.has(old.file)) continue;
      await removeFile(path.join(dir, old.file));
      removed.push(old.file);
    }
    if (removed.length > 0) await fsyncDir(dir);
    const complete = failed.length === 0;
    await writeIndex(dir, {
      format: INDEX_FORMAT,
      environment: manifest.environment,
      api: this.client.url,
      etag: complete ? (etag ?? null) : null,
      syncedAt: new Date().toISOString(),
      applications: [...next.values()],
    });
    return { environment: manifest.environment, unchanged: false, complete, etag: complete ? (etag ?? null) : null, written, removed, failed, files: next.size };
  }
}

/** Which file each entry becomes; entries that cannot be named safely (or twice) fail instead. */
function plan(manifest: Manifest): { desired: Desired[]; failed: SyncFailure[] } {
  const desired: Desired[] = [];
  const failed: SyncFailure[] = [];
  const taken = new Set<string>();
  for (const entry of manifest.applications) {
    const file = fileNameFor(entry.owner, entry.application);
    if (!file || taken.has(file)) {
      failed.push({ applicationId: entry.applicationId, application: entry.application, reason: file ? `two applications map to ${file}` : `unusable names: owner ${JSON.stringify(entry.owner)}, application ${JSON.stringify(entry.application)}` });
      continue;
    }
    taken.add(file);
    desired.push({ file, entry });
  }
  return { desired, failed };
}

async function stampsMatch(dir: string, index: SyncIndex): Promise<boolean> {
  for (const entry of index.applications) {
    const stamp = await stampOf(path.join(dir, entry.file));
    if (!stamp || stamp.size !== entry.size || stamp.mtimeMs !== entry.mtimeMs) return false;
  }
  return true;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ── the loop: retries, watch, reload ────────────────────────────────────────

export interface RunOptions extends SyncOptions {
  /** Keep polling after the first successful sync. */
  watch?: boolean;
  /** Between polls in watch mode (default 10 s). */
  intervalMs?: number;
  /** A shell command run after a sync that changed files (e.g. `nginx -s reload`). */
  reload?: string;
  reloadTimeoutMs?: number;
  /** Without --watch: how many times to try again after a retriable failure (default 5). */
  retries?: number;
  backoff?: { initialMs: number; maxMs: number };
  signal?: AbortSignal;
  onEvent?: (event: SyncEvent) => void;
}

export type SyncEvent =
  | { type: 'synced'; report: SyncReport }
  | { type: 'retrying'; attempt: number; delayMs: number; error: string }
  | { type: 'reloaded'; command: string; exitCode: number; durationMs: number };

/** The directory does not match the manifest yet (a download failed or was rejected). */
export class SyncIncompleteError extends Error {
  constructor(readonly report: SyncReport) {
    super(`${report.failed.length} artifact(s) could not be synced; their old files were kept: ${report.failed.map((failure) => `${failure.file ?? failure.application}: ${failure.reason}`).join('; ')}`);
    this.name = 'SyncIncompleteError';
  }
}

export class ReloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReloadError';
  }
}

/** Worth another try: the API is away or overloaded, or a download failed its checks. */
export function isRetriable(error: unknown): boolean {
  if (error instanceof EdgeUnreachableError || error instanceof SyncIncompleteError || error instanceof IntegrityError) return true;
  return error instanceof EdgeApiError && error.retriable;
}

/** Exponential with jitter, so a fleet of edges does not retry in lockstep. */
export function backoffDelay(attempt: number, backoff: { initialMs: number; maxMs: number }): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/**
 * Syncs once (retrying retriable failures up to `retries` times), or with
 * `watch` forever until `signal` aborts. Fatal errors (a refused token, a
 * directory holding another environment, a malformed manifest) end it.
 */
export async function runSync(options: RunOptions): Promise<SyncReport | undefined> {
  const sync = await EdgeSync.open(options);
  const backoff = options.backoff ?? { initialMs: 1_000, maxMs: 60_000 };
  const retries = options.retries ?? 5;
  let failures = 0;
  let reloadPending = false;
  let last: SyncReport | undefined;
  try {
    while (!options.signal?.aborted) {
      try {
        last = await sync.syncOnce(options.signal);
        options.onEvent?.({ type: 'synced', report: last });
        if (last.written.length > 0 || last.removed.length > 0) reloadPending = options.reload !== undefined;
        // A failed reload is tried again on the next round, even if nothing else changed.
        if (reloadPending && options.reload) {
          await runReload(options, last);
          reloadPending = false;
        }
        if (!last.complete) throw new SyncIncompleteError(last);
        failures = 0;
        if (!options.watch) return last;
        await sleep(options.intervalMs ?? 10_000, options.signal);
      } catch (error) {
        if (options.signal?.aborted) break;
        if (!isRetriable(error) && !(options.watch && error instanceof ReloadError)) throw error;
        failures++;
        if (!options.watch && failures > retries) throw error;
        const delayMs = backoffDelay(failures, backoff);
        options.onEvent?.({ type: 'retrying', attempt: failures, delayMs, error: reasonOf(error) });
        await sleep(delayMs, options.signal);
      }
    }
    return last;
  } finally {
    await sync.close();
  }
}

/**
 * Runs the reload command through the shell with what changed in the
 * environment (KILN_EDGE_DIR, KILN_EDGE_ENVIRONMENT, KILN_EDGE_CHANGED);
 * its output goes to our stderr, so stdout stays machine-readable.
 */
function runReload(options: RunOptions, report: SyncReport): Promise<void> {
  const command = options.reload ?? '';
  const started = Date.now();
  return new Promise((resolve, reject) => {
    // The operator's reload command inherits the CLI's environment (no setting is read from it here).
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['ignore', process.stderr, process.stderr],
      detached: true,
      env: { ...process.env, KILN_EDGE_DIR: path.resolve(options.dir), KILN_EDGE_ENVIRONMENT: options.environment, KILN_EDGE_CHANGED: [...report.written, ...report.removed].join(' ') },
    });
    // The whole process group: a reload script's children must not outlive the timeout.
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, options.reloadTimeoutMs ?? 120_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new ReloadError(`could not run the reload command: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        options.onEvent?.({ type: 'reloaded', command, exitCode: 0, durationMs: Date.now() - started });
        resolve();
      } else {
        reject(new ReloadError(`the reload command ${JSON.stringify(command)} ${signal ? `was killed (${signal})` : `exited with ${code}`}; the files are in place`));
      }
    });
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
