import path from 'node:path';
import { DEFAULT_LIMITS, type SandboxLimits } from './sandbox/sandbox.ts';
import { DEFAULT_WARM_POOL } from './sandbox/warm-pool.ts';
import { DEFAULT_QUEUE_SETTINGS, type QueueSettings } from './queue/jobs.ts';
import { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './archive/limits.ts';
import type { ObjectStoreConfig } from './store/objects/index.ts';
import { parseEnvironments } from './edge/environments.ts';


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
  buildLimits: SandboxLimits;
  archiveLimits: ArchiveLimits;
  queue: QueueSettings;
  /** The API keeps at most this much log per build, whatever workers send. */
  logMaxBytes: number;
  /** Largest artifact a worker may upload. */
  maxArtifactBytes: number;
  logLevel: string;
  /** Deployment environments: staging and production, plus KILN_ENVIRONMENTS (comma-separated). */
  environments: string[];
  /** Machine-wide toolchains set up by scripts/toolchains/*.sh (KILN_TOOLCHAINS_DIR). */
  toolchainsDir: string;
  /** Open `logs?follow` streams per owner on one API instance; beyond it, 429. */
  followStreamsPerOwner: number;
  /** On SIGTERM, how long in-flight requests may take before their connections are closed. */
  shutdownGraceMs: number;
}

export const DEFAULT_FOLLOW_STREAMS_PER_OWNER = 16;
export const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;

export interface ConfigOverrides {
  host?: string;
  port?: number;
  dataDir?: string;
  workers?: number;
  sandbox?: string;
}

type Env = Record<string, string | undefined>;

/**
 * Machine-wide so every checkout and CI job on a machine reuses the one
 * set-up (docs/decisions/0008). scripts/toolchains/rust-modern.sh reads the
 * same variable with the same default.
 */
export const DEFAULT_TOOLCHAINS_DIR = '/var/cache/kiln/toolchains';

export function toolchainsDir(env: Env = process.env): string {
  return path.resolve(env.KILN_TOOLCHAINS_DIR || DEFAULT_TOOLCHAINS_DIR);
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function integer(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
  return value;
}

function objectStoreConfig(env: Env, dataDir: string): ObjectStoreConfig {
  const bucket = env.S3_BUCKET;
  if (!env.S3_ENDPOINT && !bucket) return { kind: 'fs', root: path.join(dataDir, 'objects') };
  if (!bucket) throw new ConfigError('S3_ENDPOINT is set but S3_BUCKET is not: set the bucket to use');
  return {
    kind: 's3',
    endpoint: env.S3_ENDPOINT || undefined,
    bucket,
    region: env.S3_REGION || 'us-east-1',
    accessKeyId: env.S3_ACCESS_KEY_ID || env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.S3_SECRET_ACCESS_KEY || env.AWS_SECRET_ACCESS_KEY,
    forcePathStyle: (env.S3_FORCE_PATH_STYLE ?? 'true') !== 'false',
  };
}

function environments(env: Env): string[] {
  const parsed = parseEnvironments(env.KILN_ENVIRONMENTS);
  if ('invalid' in parsed) throw new ConfigError(`KILN_ENVIRONMENTS: ${JSON.stringify(parsed.invalid)} is not an environment name (lower-case letters, digits and dashes, starting with a letter, at most 32)`);
  return parsed.environments;
}

/** Flags win over environment variables, which win over the embedded defaults. */
export function loadConfig(overrides: ConfigOverrides = {}, env: Env = process.env): KilnConfig {
  const dataDir = path.resolve(overrides.dataDir ?? env.KILN_DATA_DIR ?? '.kiln');
  const port = overrides.port ?? integer(env, 'KILN_PORT', integer(env, 'PORT', 8080));
  if (port > 65535) throw new ConfigError(`port must be ≤ 65535, got ${port}`);
  const sandbox = overrides.sandbox ?? env.KILN_SANDBOX ?? 'bubblewrap';
  if (sandbox !== 'bubblewrap' && sandbox !== 'gvisor') throw new ConfigError(`sandbox must be bubblewrap or gvisor, got ${JSON.stringify(sandbox)}`);
  return {
    host: overrides.host ?? env.KILN_HOST ?? '127.0.0.1',
    port,
    dataDir,
    databaseUrl: env.DATABASE_URL || undefined,
    objects: objectStoreConfig(env, dataDir),
    localWorkers: overrides.workers ?? integer(env, 'KILN_WORKERS', 2),
    sandbox,
    sandboxWarmPool: integer(env, 'KILN_SANDBOX_WARM_POOL', DEFAULT_WARM_POOL),
    buildLimits: {
      wallMs: integer(env, 'KILN_BUILD_TIMEOUT_MS', DEFAULT_LIMITS.wallMs, 1000),
      memoryBytes: integer(env, 'KILN_BUILD_MEMORY_BYTES', DEFAULT_LIMITS.memoryBytes, 64 * 1024 ** 2),
      pids: integer(env, 'KILN_BUILD_PIDS', DEFAULT_LIMITS.pids, 8),
      diskBytes: integer(env, 'KILN_BUILD_DISK_BYTES', DEFAULT_LIMITS.diskBytes, 16 * 1024 ** 2),
      logBytes: integer(env, 'KILN_BUILD_LOG_BYTES', DEFAULT_LIMITS.logBytes, 4096),
      cpus: integer(env, 'KILN_BUILD_CPUS', DEFAULT_LIMITS.cpus, 1),
    },
    archiveLimits: {
      ...DEFAULT_ARCHIVE_LIMITS,
      maxCompressedBytes: integer(env, 'KILN_UPLOAD_MAX_BYTES', DEFAULT_ARCHIVE_LIMITS.maxCompressedBytes, 1024),
    },
    queue: {
      leaseMs: integer(env, 'KILN_LEASE_MS', DEFAULT_QUEUE_SETTINGS.leaseMs, 500),
      maxAttempts: integer(env, 'KILN_MAX_ATTEMPTS', DEFAULT_QUEUE_SETTINGS.maxAttempts, 1),
    },
    logMaxBytes: integer(env, 'KILN_BUILD_LOG_BYTES', DEFAULT_LIMITS.logBytes, 4096) + 64 * 1024,
    maxArtifactBytes: integer(env, 'KILN_MAX_ARTIFACT_BYTES', 64 * 1024 ** 2, 1024),
    logLevel: env.KILN_LOG_LEVEL ?? 'info',
    environments: environments(env),
    toolchainsDir: toolchainsDir(env),
    followStreamsPerOwner: integer(env, 'KILN_FOLLOW_STREAMS_PER_OWNER', DEFAULT_FOLLOW_STREAMS_PER_OWNER, 1),
    shutdownGraceMs: integer(env, 'KILN_SHUTDOWN_GRACE_MS', DEFAULT_SHUTDOWN_GRACE_MS, 0),
  };
}
