/**
 * Kiln's configuration, in one place (decision 0027). Every server-side
 * setting is declared once (src/config/settings.ts: environment variable,
 * file key, type, default, meaning) and listed in SETTINGS; loadConfig()
 * reads them ONCE at start, with the precedence
 *
 *     command-line flags > environment > config file > embedded default
 *
 * and returns a typed KilnConfig whose sections (`testbed`, `fetch`,
 * `toolchains`, …) are handed to their consumers as arguments. This is the
 * only module that reads `process.env` for settings (the CLI's client-side
 * settings have their own loader: src/cli/environment.ts). A bad value stops
 * start-up with a ConfigError naming the setting.
 */
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './archive/limits.ts';
import { DEFAULT_DEPENDENCY_CACHE_LIMITS, type DependencyCacheLimits } from './build-cache/store.ts';
import { readConfigFile } from './config/file.ts';
import { booleanSetting, choiceSetting, ConfigError, customSetting, integerSetting, SettingReader, stringSetting, type AnySetting, type Env, type RawValue } from './config/settings.ts';
import { parseEnvironments } from './edge/environments.ts';
import { FETCH_SETTINGS, fetchConfigFrom, type FetchConfig } from './fetch/config.ts';
import { JS_TOOLCHAIN_SETTING } from './languages/javascript/toolchain.ts';
import { DEFAULT_TOOLCHAINS_DIR } from './languages/rust/toolchains.ts';
import { DEFAULT_QUEUE_SETTINGS, type QueueSettings } from './queue/jobs.ts';
import { DEFAULT_LIMITS, type SandboxLimits } from './sandbox/sandbox.ts';
import { DEFAULT_WARM_POOL } from './sandbox/warm-pool.ts';
import { MAX_LOG_CAP_BYTES } from './store/build-logs.ts';
import type { ObjectStoreConfig } from './store/objects/index.ts';
import { DEFAULT_UPLOAD_SPOOL, type UploadSpoolLimits } from './archive/spool.ts';
import { TESTBED_SETTINGS, testbedConfigFrom, type TestbedConfig } from './testbed/config.ts';

export { ConfigError } from './config/settings.ts';
export type { Setting } from './config/settings.ts';

export interface KilnConfig {
  host: string;
  port: number;
  dataDir: string;
  /** A real PostgreSQL server; PGlite under `<dataDir>/db` when absent. */
  databaseUrl?: string;
  objects: ObjectStoreConfig;
  /** Local workers `kiln serve` starts (they use the HTTP worker protocol). */
  localWorkers: number;
  sandbox: 'bubblewrap' | 'gvisor';
  /** Prepared bubblewrap sandboxes each worker process keeps ready (KILN_SANDBOX_WARM_POOL; 0: start each run fresh). */
  sandboxWarmPool: number;
  /** Where the sandbox's compiled C helpers (seccomp filter generator, gVisor shim) are cached. */
  sandboxCacheDir: string;
  buildLimits: SandboxLimits;
  archiveLimits: ArchiveLimits;
  /** Where uploads wait while they are checked and stored: memory up to these sizes, else temp files. */
  uploadSpool: UploadSpoolLimits;
  queue: QueueSettings;
  /** The API keeps at most this much log per build, whatever workers send. */
  logMaxBytes: number;
  /** Largest artifact a worker may upload. */
  maxArtifactBytes: number;
  logLevel: LogLevel;
  /** Deployment environments: staging and production, plus KILN_ENVIRONMENTS (comma-separated). */
  environments: string[];
  /** Machine-wide toolchains: modern Rust set up by scripts/toolchains/*.sh, Kiln's JS/TS component toolchain. */
  toolchains: { rust: string; javascript: string };
  /** Bounds of each worker process's dependency cache (decisions 0015 and 0038). */
  dependencyCache: DependencyCacheLimits;
  /** Open `logs?follow` streams per owner on one API instance; beyond it, 429. */
  followStreamsPerOwner: number;
  /** On SIGTERM, how long in-flight requests may take before their connections are closed. */
  shutdownGraceMs: number;
  /** The test bed: runner processes, fair sharing and every host limit (src/testbed/config.ts). */
  testbed: TestbedConfig;
  /** The dependency fetch phase of builds (src/fetch/config.ts). */
  fetch: FetchConfig;
}

export const DEFAULT_FOLLOW_STREAMS_PER_OWNER = 16;
export const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;

/**
 * Machine-wide so every checkout and CI job on a machine reuses the one
 * set-up (docs/decisions/0008). scripts/toolchains/rust-modern.sh reads the
 * same variable with the same default.
 */
export { DEFAULT_TOOLCHAINS_DIR };

/** Names the environment variable of the config file; the file itself holds the settings below. */
export const CONFIG_FILE_VARIABLE = 'KILN_CONFIG_FILE';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const MIB = 1024 ** 2;

const build = (env: string, key: keyof SandboxLimits, min: number, description: string, defaultText: string, max?: number) =>
  integerSetting({ env, key: `build.${key}`, fallback: DEFAULT_LIMITS[key], min, max, description, defaultText });

/** Log room the API keeps for its own notes beyond a build's log limit. */
const API_LOG_NOTES_BYTES = 64 * 1024;

/** An archive limit beside uploads.maxBytes; every one travels with each job to the worker that extracts it. */
const archive = (env: string, key: string, field: Exclude<keyof ArchiveLimits, 'maxCompressedBytes'>, min: number, description: string, defaultText: string) =>
  integerSetting({ env, key: `uploads.${key}`, fallback: DEFAULT_ARCHIVE_LIMITS[field], min, description: `${description} (also what a worker extracts)`, defaultText });

const DAY_MS = 24 * 3600_000;
const cacheBytes = (env: string, key: string, field: Exclude<keyof DependencyCacheLimits, 'maxAgeMs'>, description: string, defaultText: string) =>
  integerSetting({ env, key: `build.dependencyCache.${key}`, fallback: DEFAULT_DEPENDENCY_CACHE_LIMITS[field], min: 0, description, defaultText });

/** Settings of the core: server, storage, builds, queue, toolchains. The order is the order of docs/configuration.md. */
export const CORE_SETTINGS = {
  host: stringSetting({ env: 'KILN_HOST', key: 'host', fallback: '127.0.0.1', description: 'Address the API binds (flag --host)' }),
  port: integerSetting({ env: 'KILN_PORT', aliases: ['PORT'], key: 'port', fallback: 8080, min: 0, max: 65535, description: 'Port the API listens on (flag --port; PORT is read too)' }),
  dataDir: stringSetting({ env: 'KILN_DATA_DIR', key: 'dataDir', fallback: '.kiln', description: 'Database (PGlite), objects and tokens of the embedded defaults (flag --data-dir)' }),
  databaseUrl: stringSetting({ env: 'DATABASE_URL', key: 'database.url', fallback: undefined, type: 'postgres:// URL', defaultText: 'none: PGlite under `<dataDir>/db`', description: 'A PostgreSQL server instead of PGlite' }),
  s3Endpoint: stringSetting({ env: 'S3_ENDPOINT', key: 'objects.s3.endpoint', fallback: undefined, type: 'URL', defaultText: 'none (AWS itself when only the bucket is set)', description: 'S3 endpoint (e.g. Ceph radosgw); with S3_BUCKET, objects go to S3 instead of `<dataDir>/objects`' }),
  s3Bucket: stringSetting({ env: 'S3_BUCKET', key: 'objects.s3.bucket', fallback: undefined, defaultText: 'none: filesystem objects', description: 'S3 bucket of the objects' }),
  s3Region: stringSetting({ env: 'S3_REGION', key: 'objects.s3.region', fallback: 'us-east-1', description: 'S3 region' }),
  s3AccessKeyId: stringSetting({ env: 'S3_ACCESS_KEY_ID', aliases: ['AWS_ACCESS_KEY_ID'], key: 'objects.s3.accessKeyId', fallback: undefined, defaultText: "the SDK's own credential chain", description: 'S3 access key (AWS_ACCESS_KEY_ID is read too)' }),
  s3SecretAccessKey: stringSetting({ env: 'S3_SECRET_ACCESS_KEY', aliases: ['AWS_SECRET_ACCESS_KEY'], key: 'objects.s3.secretAccessKey', fallback: undefined, defaultText: "the SDK's own credential chain", description: 'S3 secret key (AWS_SECRET_ACCESS_KEY is read too)' }),
  s3ForcePathStyle: booleanSetting({ env: 'S3_FORCE_PATH_STYLE', key: 'objects.s3.forcePathStyle', fallback: true, description: 'Path-style bucket addressing (what Ceph and MinIO expect)' }),
  localWorkers: integerSetting({ env: 'KILN_WORKERS', key: 'localWorkers', fallback: 2, min: 0, max: 64, description: 'Build workers `kiln serve` starts in its process (flag --workers; 0: an API-only node)' }),
  sandbox: choiceSetting({ env: 'KILN_SANDBOX', key: 'sandbox.kind', fallback: 'bubblewrap', choices: ['bubblewrap', 'gvisor'], description: 'Build sandbox (flag --sandbox)' }),
  sandboxWarmPool: integerSetting({ env: 'KILN_SANDBOX_WARM_POOL', key: 'sandbox.warmPool', fallback: DEFAULT_WARM_POOL, min: 0, description: 'Prepared bubblewrap sandboxes per worker process (0: start each run fresh; decision 0018)' }),
  sandboxCacheDir: stringSetting({ env: 'KILN_SANDBOX_CACHE_DIR', key: 'sandbox.cacheDir', fallback: undefined, defaultText: '`$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`', description: "Cache of the sandbox's C helpers, compiled on first use (seccomp filter generator, gVisor shim)" }),
  buildWallMs: build('KILN_BUILD_TIMEOUT_MS', 'wallMs', 1000, 'Wall time of a whole build, ms', '600000 (10 min)'),
  buildMemoryBytes: build('KILN_BUILD_MEMORY_BYTES', 'memoryBytes', 64 * MIB, 'Memory of a build, bytes', '2 GiB'),
  buildPids: build('KILN_BUILD_PIDS', 'pids', 8, 'Processes of a build', '256'),
  buildDiskBytes: build('KILN_BUILD_DISK_BYTES', 'diskBytes', 16 * MIB, 'Disk a build may write, bytes', '1 GiB'),
  buildLogBytes: build('KILN_BUILD_LOG_BYTES', 'logBytes', 4096, 'Log a build may write, bytes (the API keeps 64 KiB more for its own notes)', '4 MiB', MAX_LOG_CAP_BYTES - API_LOG_NOTES_BYTES),
  buildCpus: build('KILN_BUILD_CPUS', 'cpus', 1, 'CPUs of a build', '2'),
  maxArtifactBytes: integerSetting({ env: 'KILN_MAX_ARTIFACT_BYTES', key: 'build.maxArtifactBytes', fallback: 64 * MIB, min: 1024, defaultText: '64 MiB', description: 'Largest artifact a worker may upload (the one route that takes large raw bodies)' }),
  uploadMemoryBytes: integerSetting({ env: 'KILN_UPLOAD_MEMORY_BYTES', key: 'uploads.memoryBytes', fallback: DEFAULT_UPLOAD_SPOOL.memoryBytes, min: 0, defaultText: '1 MiB', description: 'Largest upload archive kept in memory while it is checked and stored (larger ones go to a temp file under the data dir; 0: always a file)' }),
  uploadMemoryTotalBytes: integerSetting({ env: 'KILN_UPLOAD_MEMORY_TOTAL_BYTES', key: 'uploads.memoryTotalBytes', fallback: DEFAULT_UPLOAD_SPOOL.memoryTotalBytes, min: 0, defaultText: '64 MiB', description: 'Upload bytes an API process keeps in memory at once; beyond it, uploads go to temp files' }),
  uploadMaxBytes: integerSetting({ env: 'KILN_UPLOAD_MAX_BYTES', key: 'uploads.maxBytes', fallback: DEFAULT_ARCHIVE_LIMITS.maxCompressedBytes, min: 1024, defaultText: '64 MiB', description: 'Largest upload archive (workers extract under the same limits: they come with each job)' }),
  uploadMaxUnpackedBytes: archive('KILN_UPLOAD_MAX_UNPACKED_BYTES', 'maxUnpackedBytes', 'maxTotalBytes', 1024, 'All files of an upload together, decompressed, bytes', '512 MiB'),
  uploadMaxFileBytes: archive('KILN_UPLOAD_MAX_FILE_BYTES', 'maxFileBytes', 'maxFileBytes', 1, 'Any one file of an upload, decompressed, bytes', '128 MiB'),
  uploadMaxEntries: archive('KILN_UPLOAD_MAX_ENTRIES', 'maxEntries', 'maxEntries', 1, 'Files and directories of an upload', '20000'),
  uploadMaxPathBytes: archive('KILN_UPLOAD_MAX_PATH_BYTES', 'maxPathBytes', 'maxPathLength', 16, "UTF-8 bytes of an upload entry's path", '1024'),
  uploadMaxDepth: archive('KILN_UPLOAD_MAX_DEPTH', 'maxDepth', 'maxDepth', 1, "Directories deep an upload entry's path may go", '64'),
  leaseMs: integerSetting({ env: 'KILN_LEASE_MS', key: 'queue.leaseMs', fallback: DEFAULT_QUEUE_SETTINGS.leaseMs, min: 500, description: "A worker's lease on a job, ms (renewed by heartbeats; expired leases are re-queued)" }),
  maxAttempts: integerSetting({ env: 'KILN_MAX_ATTEMPTS', key: 'queue.maxAttempts', fallback: DEFAULT_QUEUE_SETTINGS.maxAttempts, min: 1, description: 'Attempts of a job before its build is `crashed`' }),
  logLevel: choiceSetting({ env: 'KILN_LOG_LEVEL', key: 'logLevel', fallback: 'info', choices: LOG_LEVELS, description: 'Log level of the server, workers and runners' }),
  environments: customSetting<string[] | undefined>({
    env: 'KILN_ENVIRONMENTS',
    key: 'edge.environments',
    type: 'comma-separated names',
    // Computed per load: no two configs share one array.
    fallback: undefined,
    defaultText: 'staging, production',
    description: 'Deployment environments added to staging and production',
    parseText: parseEnvironmentList,
  }),
  dependencyCacheMaxBytes: cacheBytes('KILN_DEPENDENCY_CACHE_MAX_BYTES', 'maxBytes', 'maxBytes', "A worker process's dependency cache, all owners together, bytes (least recently used entries go first)", '8 GiB'),
  dependencyCacheOwnerMaxBytes: cacheBytes('KILN_DEPENDENCY_CACHE_OWNER_MAX_BYTES', 'ownerMaxBytes', 'maxBytesPerNamespace', "One owner's share of it, bytes, so one owner cannot evict everyone else", '2 GiB'),
  dependencyCacheEntryMaxBytes: cacheBytes('KILN_DEPENDENCY_CACHE_ENTRY_MAX_BYTES', 'entryMaxBytes', 'maxEntryBytes', 'Largest cache entry kept, bytes (a larger one is not saved)', '1 GiB'),
  dependencyCacheMaxAgeDays: integerSetting({ env: 'KILN_DEPENDENCY_CACHE_MAX_AGE_DAYS', key: 'build.dependencyCache.maxAgeDays', fallback: DEFAULT_DEPENDENCY_CACHE_LIMITS.maxAgeMs / DAY_MS, min: 1, description: 'Cache entries (and unpacked trees) unused this many days are dropped' }),
  dependencyCacheUnpackedMaxBytes: cacheBytes('KILN_DEPENDENCY_CACHE_UNPACKED_MAX_BYTES', 'unpackedMaxBytes', 'maxUnpackedBytes', "Each owner's last entry is also kept unpacked for a faster hit (decision 0038): all such trees together, bytes (0: none kept)", '4 GiB'),
  dependencyCacheUnpackedTreeMaxBytes: cacheBytes('KILN_DEPENDENCY_CACHE_UNPACKED_TREE_MAX_BYTES', 'unpackedTreeMaxBytes', 'maxUnpackedTreeBytes', 'Largest tree kept unpacked, bytes', '1 GiB'),
  toolchainsDir: stringSetting({ env: 'KILN_TOOLCHAINS_DIR', key: 'toolchains.rust', fallback: DEFAULT_TOOLCHAINS_DIR, description: 'Machine-wide toolchains set up by scripts/toolchains/*.sh (modern Rust; decision 0008)' }),
  jsToolchainDir: JS_TOOLCHAIN_SETTING,
  followStreamsPerOwner: integerSetting({ env: 'KILN_FOLLOW_STREAMS_PER_OWNER', key: 'api.followStreamsPerOwner', fallback: DEFAULT_FOLLOW_STREAMS_PER_OWNER, min: 1, description: 'Open `logs?follow` streams per owner and API instance (429 beyond)' }),
  shutdownGraceMs: integerSetting({ env: 'KILN_SHUTDOWN_GRACE_MS', key: 'shutdown.graceMs', fallback: DEFAULT_SHUTDOWN_GRACE_MS, min: 0, description: 'After SIGTERM, how long in-flight requests may finish before their connections are closed, ms' }),
} as const;

/** Every setting the loader reads: what docs/configuration.md must list, one row each. */
export const SETTINGS: readonly AnySetting[] = [...Object.values(CORE_SETTINGS), ...Object.values(TESTBED_SETTINGS), ...Object.values(FETCH_SETTINGS)];

function parseEnvironmentList(raw: string): string[] {
  const parsed = parseEnvironments(raw);
  if ('invalid' in parsed) throw new Error(`${JSON.stringify(parsed.invalid)} is not an environment name (lower-case letters, digits and dashes, starting with a letter, at most 32)`);
  return parsed.environments;
}

/** Flags of `kiln serve` and friends: they win over everything else. */
export interface ConfigOverrides {
  host?: string;
  port?: number;
  dataDir?: string;
  workers?: number;
  sandbox?: string;
  /** The config file (flag --config); else KILN_CONFIG_FILE; else none. */
  configFile?: string;
  /**
   * Defaults of one command, by file key, below the file and the
   * environment (e.g. `kiln serve` prewarms the test bed unless told not to).
   */
  presets?: Readonly<Record<string, RawValue>>;
}

/** Settings `kiln serve` defaults differently: a server starts its runners with itself, so the first invoke does not wait (decision 0012). */
export const SERVE_PRESETS: Readonly<Record<string, RawValue>> = { 'testbed.prewarm': true };

/** The modern Rust toolchains directory from the variables given (default: none, so the embedded default). */
export function toolchainsDir(env: Env = {}): string {
  return path.resolve(new SettingReader(env).read(CORE_SETTINGS.toolchainsDir));
}

/**
 * Loads the whole configuration once. `env` defaults to the process's
 * environment: the one read of it for settings (tests pass their own).
 */
export function loadConfig(overrides: ConfigOverrides = {}, env: Env = process.env): KilnConfig {
  const reader = readerFor(overrides, env);
  const s = CORE_SETTINGS;
  const read = reader.read.bind(reader);
  const dataDir = path.resolve(overrides.dataDir ?? read(s.dataDir));
  const sandbox = overrides.sandbox ?? read(s.sandbox);
  if (sandbox !== 'bubblewrap' && sandbox !== 'gvisor') throw new ConfigError(`--sandbox must be bubblewrap or gvisor, got ${JSON.stringify(sandbox)}`);
  const buildLimits: SandboxLimits = {
    wallMs: read(s.buildWallMs),
    memoryBytes: read(s.buildMemoryBytes),
    pids: read(s.buildPids),
    diskBytes: read(s.buildDiskBytes),
    logBytes: read(s.buildLogBytes),
    cpus: read(s.buildCpus),
  };
  return {
    host: overrides.host ?? read(s.host),
    port: overrides.port ?? read(s.port),
    dataDir,
    databaseUrl: read(s.databaseUrl),
    objects: objectStoreConfig(reader, dataDir),
    localWorkers: overrides.workers ?? read(s.localWorkers),
    sandbox,
    sandboxWarmPool: read(s.sandboxWarmPool),
    sandboxCacheDir: path.resolve(read(s.sandboxCacheDir) ?? defaultSandboxCacheDir(reader)),
    buildLimits,
    archiveLimits: {
      maxCompressedBytes: read(s.uploadMaxBytes),
      maxTotalBytes: read(s.uploadMaxUnpackedBytes),
      maxFileBytes: read(s.uploadMaxFileBytes),
      maxEntries: read(s.uploadMaxEntries),
      maxPathLength: read(s.uploadMaxPathBytes),
      maxDepth: read(s.uploadMaxDepth),
    },
    uploadSpool: { memoryBytes: read(s.uploadMemoryBytes), memoryTotalBytes: read(s.uploadMemoryTotalBytes) },
    queue: { leaseMs: read(s.leaseMs), maxAttempts: read(s.maxAttempts) },
    logMaxBytes: buildLimits.logBytes + API_LOG_NOTES_BYTES,
    maxArtifactBytes: read(s.maxArtifactBytes),
    logLevel: read(s.logLevel),
    environments: read(s.environments) ?? parseEnvironmentList(''),
    toolchains: { rust: path.resolve(read(s.toolchainsDir)), javascript: read(s.jsToolchainDir) },
    dependencyCache: {
      maxBytes: read(s.dependencyCacheMaxBytes),
      maxBytesPerNamespace: read(s.dependencyCacheOwnerMaxBytes),
      maxEntryBytes: read(s.dependencyCacheEntryMaxBytes),
      maxAgeMs: read(s.dependencyCacheMaxAgeDays) * DAY_MS,
      maxUnpackedBytes: read(s.dependencyCacheUnpackedMaxBytes),
      maxUnpackedTreeBytes: read(s.dependencyCacheUnpackedTreeMaxBytes),
    },
    followStreamsPerOwner: read(s.followStreamsPerOwner),
    shutdownGraceMs: read(s.shutdownGraceMs),
    testbed: testbedConfigFrom(reader),
    fetch: fetchConfigFrom(reader),
  };
}

function readerFor(overrides: ConfigOverrides, env: Env): SettingReader {
  const fileName = overrides.configFile ?? (env[CONFIG_FILE_VARIABLE] || undefined);
  const file = fileName === undefined ? new Map<string, RawValue>() : readConfigFile(path.resolve(fileName), new Set(SETTINGS.map((setting) => setting.key)));
  const presets = new Map(Object.entries(overrides.presets ?? {}));
  for (const key of presets.keys()) if (!SETTINGS.some((setting) => setting.key === key)) throw new Error(`preset ${key} is not a setting`);
  // Presets sit under the file: the operator's file and environment still decide.
  return new SettingReader(env, new Map([...presets, ...file]), fileName);
}

/** XDG's cache directory when set (the usual place for a user's caches), else ~/.cache. */
function defaultSandboxCacheDir(reader: SettingReader): string {
  return path.join(reader.variable('XDG_CACHE_HOME') ?? path.join(os.homedir(), '.cache'), 'kiln');
}

function objectStoreConfig(reader: SettingReader, dataDir: string): ObjectStoreConfig {
  const s = CORE_SETTINGS;
  const endpoint = reader.read(s.s3Endpoint);
  const bucket = reader.read(s.s3Bucket);
  if (endpoint === undefined && bucket === undefined) return { kind: 'fs', root: path.join(dataDir, 'objects') };
  if (bucket === undefined) throw new ConfigError('S3_ENDPOINT is set but S3_BUCKET is not: set the bucket to use');
  return {
    kind: 's3',
    endpoint,
    bucket,
    region: reader.read(s.s3Region),
    accessKeyId: reader.read(s.s3AccessKeyId),
    secretAccessKey: reader.read(s.s3SecretAccessKey),
    forcePathStyle: reader.read(s.s3ForcePathStyle),
  };
}
