import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { extractArchive } from '../archive/extract.ts';
import type { ArchiveLimits } from '../archive/limits.ts';
import { errorMessage, UserError } from '../errors.ts';
import type { FetchConfig } from '../fetch/config.ts';
import type { LanguageRegistry } from '../languages/index.ts';
import type { AppKind, LanguageId } from '../languages/language.ts';
import { DependencyCacheStore, type DependencyCacheOptions } from '../build-cache/store.ts';
import { OptimizeResultCache, optimizeSafely, type OptimizeDetails } from '../optimize/index.ts';
import { createWorkDir, type WorkDir } from '../sandbox/index.ts';
import type { Sandbox } from '../sandbox/sandbox.ts';
import { runBuild, type BuildStage } from './build-job.ts';
import { LeaseLost, WorkerApiClient } from './client.ts';
import { LogSender } from './log-sender.ts';
import type { JobResult, JobSpec } from './protocol.ts';

export interface WorkerOptions {
  apiUrl: string;
  token: string;
  concurrency: number;
  sandbox: Sandbox;
  /**
   * Job directories are created here and removed after each job. Sandbox
   * uids must be able to traverse it (and its parents), so it is 0755 and
   * must not sit inside a private directory such as the data dir.
   */
  workRoot: string;
  logger: Logger;
  /** Name shown in build logs; defaults to host name + random suffix. */
  name?: string;
  /** How often a running job heartbeats (cancel latency is at most this plus the kill). */
  heartbeatMs?: number;
  /**
   * The dependency cache (docs/dependency-cache.md); default: a store under
   * `${workRoot}/dependency-cache` with its default bounds. false turns it off.
   */
  dependencyCache?: Partial<DependencyCacheOptions> | false;
  /** Host directory of the `wizer` binary (default: the npm package's); null disables Wizer. */
  wizerDirectory?: string | null;
  /**
   * Optimize results reused by input hash (src/optimize/result-cache.ts);
   * default: one in-memory cache per worker with its default bound. false turns it off.
   */
  optimizeCache?: OptimizeResultCache<OptimizeDetails> | false;
  /** The process's configuration, passed on to every build (default: the embedded defaults). */
  fetch?: FetchConfig;
  languages?: LanguageRegistry;
}

type SlotOptions = WorkerOptions & { name: string; cacheStore?: DependencyCacheStore; optimizeResults?: OptimizeResultCache<OptimizeDetails> };

export interface RunningWorker {
  /** Stops claiming; running jobs are cancelled and reported as crashed (they will be retried). */
  stop(): Promise<void>;
}

/**
 * `kiln worker`: claims jobs over HTTP, builds them in the sandbox, reports.
 * It holds no database or storage credentials, only the API URL and a token.
 */
export function startWorker(options: WorkerOptions): RunningWorker {
  const client = new WorkerApiClient(options.apiUrl, options.token);
  const name = options.name ?? `${os.hostname()}-${randomBytes(3).toString('hex')}`;
  const stopping = new AbortController();
  // One store per worker process: its slots share entries and the eviction bound.
  const cacheStore = options.dependencyCache === false ? undefined : new DependencyCacheStore({ root: path.join(options.workRoot, 'dependency-cache'), ...options.dependencyCache });
  const optimizeResults = options.optimizeCache === false ? undefined : (options.optimizeCache ?? new OptimizeResultCache<OptimizeDetails>());
  const slots = Array.from({ length: options.concurrency }, (_, index) => slotLoop({ ...options, name: `${name}.${index}`, cacheStore, optimizeResults }, client, stopping.signal));
  return {
    async stop() {
      stopping.abort();
      await Promise.allSettled(slots);
    },
  };
}

async function slotLoop(options: SlotOptions, client: WorkerApiClient, stopping: AbortSignal): Promise<void> {
  let backoffMs = 500;
  while (!stopping.aborted) {
    try {
      const job = await client.claim(options.name, 20_000, stopping);
      backoffMs = 500;
      if (job) await runJob(options, client, job, stopping);
    } catch (error) {
      if (stopping.aborted) break;
      options.logger.warn({ err: errorMessage(error) }, 'worker could not claim; retrying');
      await sleep(backoffMs, stopping);
      backoffMs = Math.min(backoffMs * 2, 15_000);
    }
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });

/** Keeps the lease alive and turns a cancel request or a lost lease into an abort. */
function keepLease(client: WorkerApiClient, job: JobSpec, intervalMs: number, abort: AbortController): { stop(): void; lost(): boolean } {
  let leaseLost = false;
  const timer = setInterval(() => {
    client
      .heartbeat(job)
      .then((answer) => {
        if (answer.cancelRequested) abort.abort('cancelled');
      })
      .catch((error: unknown) => {
        if (error instanceof LeaseLost) {
          leaseLost = true;
          abort.abort('lease lost');
        }
        // A passing network error: the next heartbeat retries before the lease runs out.
      });
  }, intervalMs);
  return { stop: () => clearInterval(timer), lost: () => leaseLost };
}

async function runJob(options: SlotOptions, client: WorkerApiClient, job: JobSpec, stopping: AbortSignal): Promise<void> {
  const logger = options.logger.child({ jobId: job.id, buildId: job.buildId });
  const abort = new AbortController();
  const onStop = () => abort.abort('worker stopping');
  stopping.addEventListener('abort', onStop, { once: true });
  const lease = keepLease(client, job, options.heartbeatMs ?? 1_000, abort);
  const log = new LogSender(client, job);
  await mkdir(options.workRoot, { recursive: true, mode: 0o755 });
  // Host-only files (the archive, the copied-out artifact) live apart from
  // the sandbox's work dir, which is a size-capped tmpfs the build owns.
  const hostDir = await mkdtemp(path.join(options.workRoot, `host-${job.id.slice(0, 8)}-`));
  let workDir: WorkDir | undefined;
  const stages: BuildStage[] = [];
  let result: JobResult;
  try {
    log.line(`worker ${options.name} building attempt ${job.attempt} in a ${options.sandbox.name} sandbox`);
    const archive = path.join(hostDir, 'source.archive');
    // The work dir (a tmpfs mount) does not depend on the download: both at once.
    const creating = createWorkDir(options.workRoot, job.limits.diskBytes, `job-${job.id.slice(0, 8)}`);
    const [downloaded, created] = await Promise.allSettled([timed(stages, 'download', () => download(client, job, archive)), creating]);
    if (created.status === 'fulfilled') workDir = created.value;
    if (downloaded.status === 'rejected') throw downloaded.reason;
    if (created.status === 'rejected') throw created.reason;
    const jobDir = created.value.path;
    const extracted = await timed(stages, 'extract', () => extractSource(archive, path.join(jobDir, 'src'), job.archiveLimits));
    if (extracted) {
      result = { outcome: 'failed', reason: extracted, stages };
    } else {
      const artifactPath = path.join(hostDir, 'artifact.wasm');
      const outcome = await runBuild({
        jobDir,
        sandbox: options.sandbox,
        language: job.language as LanguageId | null,
        kind: job.kind as AppKind | null,
        limits: job.limits,
        onLog: (chunk) => log.write(chunk),
        signal: abort.signal,
        artifactPath,
        dependencyCache: cacheFor(options, job),
        fetch: options.fetch,
        languages: options.languages,
      });
      stages.push(...outcome.stages);
      result = { outcome: outcome.outcome, reason: outcome.reason, language: outcome.language, kind: outcome.kind, stages, details: { ...outcome.facts, ...(outcome.cache ? { cache: outcome.cache } : {}), ...(outcome.fetch ? { fetch: outcome.fetch } : {}) } };
      if (outcome.outcome === 'succeeded' && outcome.artifactPath && outcome.kind) {
        const original = await readFile(outcome.artifactPath);
        // The optimizer works on its own copy: it runs while the original is uploaded.
        const uploading = timed(stages, 'upload', () => client.uploadArtifact(job, 'original', original));
        result = await optimizeStage(options, client, job, { original, kind: outcome.kind, log, signal: abort.signal, uploaded: uploading }, result);
      }
    }
  } catch (error) {
    if (error instanceof LeaseLost || lease.lost()) {
      logger.warn('lease lost; dropping the job');
      await cleanup(hostDir, workDir, lease, stopping, onStop);
      return;
    }
    logger.error({ err: errorMessage(error) }, 'job crashed');
    result = { outcome: 'crashed', reason: `platform error: ${errorMessage(error)}`, stages };
  }
  if (abort.signal.reason === 'worker stopping' && result.outcome !== 'succeeded') {
    result = { outcome: 'crashed', reason: 'the worker was stopped during the build', stages };
  }
  // Nothing reads the job's dirs any more: they are removed while the result travels, not before the next claim.
  const removingDirs = removeJobDirs(hostDir, workDir);
  workDir = undefined;
  try {
    if (result.reason) log.line(`${result.outcome}: ${result.reason}`);
    await log.flush();
    if (!lease.lost()) {
      const answer = await client.report(job, result);
      logger.info({ state: answer.build.state, requeued: answer.requeued }, 'job reported');
    }
  } catch (error) {
    logger.warn({ err: errorMessage(error) }, 'could not report the result; the lease will expire and the job will be retried');
  } finally {
    await removingDirs;
    await cleanup(hostDir, workDir, lease, stopping, onStop);
  }
}

/**
 * Runs while the original is uploaded (`built.uploaded`); a failed
 * optimization costs only the optimized variant. The optimized variant is
 * uploaded as soon as it exists, beside the original's upload rather than
 * after it: a warm rebuild reuses the optimize result at once, and the two
 * PUTs are independent (the API judges both only when the result is
 * reported, and a failed attempt's objects are removed when its build
 * ends). The details say what each step did and why.
 */
async function optimizeStage(
  options: SlotOptions,
  client: WorkerApiClient,
  job: JobSpec,
  built: { original: Buffer; kind: AppKind; log: LogSender; signal: AbortSignal; uploaded: Promise<unknown> },
  result: JobResult,
): Promise<JobResult> {
  const optimizing = timed(result.stages, 'optimize', () =>
    optimizeSafely({
      original: built.original,
      kind: built.kind,
      options: job.optimize,
      sandbox: options.sandbox,
      workRoot: options.workRoot,
      limits: job.limits,
      log: (line) => built.log.line(line),
      onOutput: (chunk) => built.log.write(chunk),
      signal: built.signal,
      wizerDirectory: options.wizerDirectory,
      cache: options.optimizeResults && DependencyCacheStore.isNamespace(job.cacheNamespace) ? { store: options.optimizeResults, namespace: job.cacheNamespace } : undefined,
    }),
  );
  const uploadingOptimized = optimizing.then(async (optimized) => {
    // The build's log is complete but for a failure line: it travels while the artifacts upload, not after.
    void built.log.flush();
    const bytes = optimized.cancelled ? undefined : optimized.optimized;
    if (bytes) await timed(result.stages, 'upload optimized', () => client.uploadArtifact(job, 'optimized', Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)));
    return optimized;
  });
  // A failed upload fails the job as before, once the optimizer (which never throws) and the other upload have finished.
  const [uploaded, settled] = await Promise.allSettled([built.uploaded, uploadingOptimized]);
  if (uploaded.status === 'rejected') throw uploaded.reason;
  if (settled.status === 'rejected') throw settled.reason;
  const optimized = settled.value;
  if (optimized.cancelled) return { outcome: 'cancelled', reason: 'the build was cancelled', stages: result.stages };
  return { ...result, details: { ...result.details, ...optimized.details } };
}

/** The job's owner namespace, when the API sent a well-formed one. */
function cacheFor(options: SlotOptions, job: JobSpec): { store: DependencyCacheStore; namespace: string } | undefined {
  if (options.cacheStore === undefined || !DependencyCacheStore.isNamespace(job.cacheNamespace)) return undefined;
  return { store: options.cacheStore, namespace: job.cacheNamespace };
}

async function cleanup(hostDir: string, workDir: WorkDir | undefined, lease: { stop(): void }, stopping: AbortSignal, onStop: () => void): Promise<void> {
  lease.stop();
  stopping.removeEventListener('abort', onStop);
  await removeJobDirs(hostDir, workDir);
}

/** Idempotent: removing dirs already removed does nothing. */
async function removeJobDirs(hostDir: string, workDir: WorkDir | undefined): Promise<void> {
  await Promise.all([workDir?.dispose().catch(() => undefined), rm(hostDir, { recursive: true, force: true }).catch(() => undefined)]);
}

async function timed<T>(stages: BuildStage[], name: string, work: () => Promise<T>): Promise<T> {
  const started = new Date();
  try {
    return await work();
  } finally {
    stages.push({ name, startedAt: started.toISOString(), durationMs: Date.now() - started.getTime() });
  }
}

/** Downloads the source and checks it is the archive the version recorded. */
async function download(client: WorkerApiClient, job: JobSpec, destination: string): Promise<void> {
  const response = await client.downloadSource(job);
  if (!response.body) throw new Error('the API sent no source body');
  const hash = createHash('sha256');
  const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (chunk: Buffer) => hash.update(chunk));
  await pipeline(body, createWriteStream(destination, { flags: 'wx', mode: 0o600 }));
  const actual = hash.digest('hex');
  if (actual !== job.sourceSha256) throw new Error(`source download corrupted: sha256 ${actual}, expected ${job.sourceSha256}`);
}

/** Returns a user-facing reason when the archive is refused, undefined when extracted. */
async function extractSource(archive: string, destination: string, limits: ArchiveLimits): Promise<string | undefined> {
  await mkdir(destination, { mode: 0o755 });
  try {
    await extractArchive(archive, destination, limits);
    return undefined;
  } catch (error) {
    if (error instanceof UserError) return `the source archive was refused: ${error.message}`;
    throw error;
  }
}
