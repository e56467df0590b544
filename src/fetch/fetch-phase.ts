/**
 * The dependency fetch phase (docs/decisions/0010-fetch-phase.md): before
 * the offline build, a language that declares dependencies to fetch gets
 * them installed, exactly as its lock file names them and with no scripts
 * run, inside a sandbox whose only network is the configured registry.
 *
 *   host: egress proxy on a unix socket (egress-proxy.ts, egress-rules.ts)
 *   sandbox (fetch seccomp profile): forwarder.mjs on 127.0.0.1 → socket,
 *     then the tool (npm ci, cargo fetch) with its proxy set to it
 *
 * What the fetch leaves (e.g. `node_modules`) is cached per owner under a
 * key derived from the lock file and the registry; a fetch that fails
 * caches nothing. The build steps that follow run with no network, as
 * every build step does.
 */
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { PlatformError, errorMessage } from '../errors.ts';
import { buildFailure } from '../build-kit/failure.ts';
import { SANDBOX_PLATFORM_DIR } from '../build-kit/paths.ts';
import { runCacheStep } from '../build-cache/cache-step.ts';
import { CACHE_FILE } from '../build-cache/plan.ts';
import type { DependencyCacheStore } from '../build-cache/store.ts';
import { formatBytes } from '../format/bytes.ts';
import { EGRESS_SOCKET, type Mount, type Sandbox, type SandboxLimits, type SandboxResult } from '../sandbox/sandbox.ts';
import type { FetchConfig } from './config.ts';
import { startEgressProxy, type EgressReport } from './egress-proxy.ts';
import { describeTarget, type EgressTarget } from './egress-rules.ts';

/** What a language's fetcher asks for; run by runFetchPhase. */
export interface FetchPlan {
  /** Shown in the log and the build record: `npm`, `cargo`. */
  tool: string;
  /** The only destinations the step may reach. */
  allowed: EgressTarget[];
  /** Run in the sandbox (through the forwarder), cwd /build/src. */
  command: string[];
  env: Record<string, string>;
  /** Read-only mounts the tool needs beyond /usr. */
  mounts: Mount[];
  /** Plain names of what the fetch creates under /build/src, cached together. */
  outputs: string[];
  /** Hex digest: lock file, registry, tool version. */
  cacheKey: string;
  /** A one-line reason from the tool's output when it failed. */
  failureReason(output: string): string | undefined;
}

/** What `build.details.fetch` records. */
export interface FetchReport {
  tool: string;
  registry: string;
  key: string;
  /** Restored from the per-owner cache, nothing downloaded. */
  cached: boolean;
  /** A fresh fetch stored its result. */
  saved?: boolean;
  bytesDownloaded?: number;
  durationMs: number;
}

export interface FetchRunContext {
  sandbox: Sandbox;
  jobDir: string;
  config: FetchConfig;
  /** The build's limits; the fetch's wall time is the smaller of what is left and config.wallMs. */
  limits: SandboxLimits;
  log: (line: string) => void;
  onOutput: (chunk: Buffer) => void;
  signal?: AbortSignal;
  cache?: { store: DependencyCacheStore; namespace: string };
}

/** Raised when the fetch was cancelled (the caller reports the build cancelled). */
export class FetchCancelled extends Error {}

const FORWARDER_DIR = fileURLToPath(new URL('./sandbox/', import.meta.url)).replace(/\/$/, '');
const SANDBOX_FORWARDER_DIR = `${SANDBOX_PLATFORM_DIR}/fetch`;
const SANDBOX_CA_FILE = `${SANDBOX_PLATFORM_DIR}/fetch-ca/ca.pem`;
const SANDBOX_FETCH_CACHE = `${SANDBOX_PLATFORM_DIR}/fetch-cache`;
const SAVED_FETCH = 'kiln/fetched.tar.zst';
/** The tail of the tool's output kept to find the failure line. */
const OUTPUT_TAIL_BYTES = 64 * 1024;

export async function runFetchPhase(plan: FetchPlan, run: FetchRunContext): Promise<FetchReport> {
  const started = Date.now();
  const registry = plan.allowed.map(describeTarget).join(', ');
  const report: FetchReport = { tool: plan.tool, registry, key: plan.cacheKey, cached: false, durationMs: 0 };
  run.log(`kiln: fetching dependencies with ${plan.tool} from ${registry} (cache key ${plan.cacheKey})`);
  // Only the fetch (or its cache entry) may fill these: an uploaded copy must not mix in.
  for (const output of plan.outputs) await rm(join(run.jobDir, 'src', output), { recursive: true, force: true });
  if (await restoreFromCache(plan, run)) {
    report.cached = true;
  } else {
    const egress = await fetchThroughProxy(plan, run);
    report.bytesDownloaded = egress.bytesDownloaded;
    report.saved = await saveToCache(plan, run);
  }
  report.durationMs = Date.now() - started;
  return report;
}

async function fetchThroughProxy(plan: FetchPlan, run: FetchRunContext): Promise<EgressReport> {
  const proxy = await startEgressProxy({
    allowed: plan.allowed,
    limits: run.config.egress,
    onRefused: (destination, reason) => run.log(`kiln: fetch: refused a connection to ${destination}: ${reason}`),
  });
  const tail = new OutputTail(OUTPUT_TAIL_BYTES);
  let result: SandboxResult;
  try {
    run.onOutput(Buffer.from(`\n==> fetch dependencies (${plan.tool})\n$ ${plan.command.join(' ')}\n`));
    result = await run.sandbox.run({
      command: [process.execPath, `${SANDBOX_FORWARDER_DIR}/forwarder.mjs`, EGRESS_SOCKET, '--', ...plan.command],
      env: { ...plan.env, ...caEnv(run.config) },
      cwd: '/build/src',
      workDir: run.jobDir,
      mounts: uniqueMounts([{ host: FORWARDER_DIR, sandbox: SANDBOX_FORWARDER_DIR }, ...nodePrefixMounts(process.execPath), ...caMounts(run.config), ...plan.mounts]),
      limits: { ...run.limits, wallMs: Math.min(run.limits.wallMs, run.config.wallMs) },
      egress: { socket: proxy.socketPath },
      onOutput: (chunk) => {
        tail.push(chunk);
        run.onOutput(chunk);
      },
      signal: run.signal,
    });
  } finally {
    await proxy.close();
  }
  const egress = proxy.report();
  for (const note of result.notes) run.log(`kiln: ${note}`);
  run.log(`kiln: fetch: ${formatBytes(egress.bytesDownloaded)} downloaded`);
  if (result.exitCode !== 0 || result.limitHit !== undefined || result.cancelled) {
    // Whatever a failed fetch left must not be built from or cached.
    for (const output of plan.outputs) await rm(join(run.jobDir, 'src', output), { recursive: true, force: true });
    throw fetchFailure(plan, result, egress, run, tail.text());
  }
  return egress;
}

/** The user's fault (failed) unless the registry itself was unreachable (crashed: retry later). */
function fetchFailure(plan: FetchPlan, result: SandboxResult, egress: EgressReport, run: FetchRunContext, output: string): Error {
  if (result.cancelled) return new FetchCancelled('the build was cancelled');
  if (egress.downloadLimitHit) return buildFailure(`dependency fetch: download limit of ${formatBytes(run.config.egress.downloadBytes)} exceeded`);
  if (result.limitHit === 'wall') return buildFailure(`dependency fetch: time limit of ${Math.round(Math.min(run.limits.wallMs, run.config.wallMs) / 1000)} s exceeded`);
  if (result.limitHit !== undefined) return buildFailure(`dependency fetch: ${result.limitHit} limit exceeded`);
  const refused = egress.refused[0];
  if (refused !== undefined) {
    return buildFailure(`dependency fetch tried to reach ${refused}, which is not the configured registry (${plan.allowed.map(describeTarget).join(', ')}): refused`);
  }
  const reason = plan.failureReason(output);
  if (egress.upstreamErrors.length > 0) return new PlatformError('registry_unreachable', `the registry could not be reached: ${egress.upstreamErrors[0]}`);
  return buildFailure(`${plan.tool} could not install the locked dependencies: ${reason ?? `exit code ${result.exitCode ?? result.signal ?? '?'}`}`);
}

async function restoreFromCache(plan: FetchPlan, run: FetchRunContext): Promise<boolean> {
  if (run.cache === undefined) return false;
  const checkout = await run.cache.store.checkout(run.cache.namespace, plan.cacheKey).catch((error: unknown) => {
    run.log(`kiln: fetch cache lookup failed: ${errorMessage(error)}`);
    return undefined;
  });
  if (checkout === undefined) return false;
  try {
    const outcome = await runScript(run, `set -eu\ntar --zstd -x -f ${SANDBOX_FETCH_CACHE}/${CACHE_FILE} -C /build/src --no-same-owner -- ${plan.outputs.join(' ')}`, [{ host: checkout.directory, sandbox: SANDBOX_FETCH_CACHE }]);
    if (outcome === 'ok') {
      run.log(`kiln: fetch cache hit: restored ${formatBytes(checkout.bytes)}, nothing downloaded`);
      return true;
    }
    for (const output of plan.outputs) await rm(join(run.jobDir, 'src', output), { recursive: true, force: true });
    run.log(`kiln: fetch cache entry not restored (${outcome}); fetching`);
    return false;
  } finally {
    await checkout.release().catch(() => undefined);
  }
}

/** Packs the fetched outputs in the sandbox and keeps the archive (never a reason to fail the build). */
async function saveToCache(plan: FetchPlan, run: FetchRunContext): Promise<boolean> {
  if (run.cache === undefined) return false;
  const outcome = await runScript(run, `set -eu\nrm -f /build/${SAVED_FETCH}\ntar -I 'zstd -1 -q' -cf /build/${SAVED_FETCH} -C /build/src -- ${plan.outputs.join(' ')}`, []);
  try {
    if (outcome !== 'ok') {
      run.log(`kiln: fetch cache not saved (${outcome})`);
      return false;
    }
    const saved = await run.cache.store.save(run.cache.namespace, plan.cacheKey, run.jobDir, SAVED_FETCH).catch((error: unknown) => ({ saved: false as const, reason: errorMessage(error) }));
    run.log(saved.saved ? `kiln: fetch cache saved (${formatBytes(saved.bytes)})` : `kiln: fetch cache not saved (${saved.reason})`);
    return saved.saved;
  } finally {
    await rm(join(run.jobDir, SAVED_FETCH), { force: true }).catch(() => undefined);
  }
}

/** The step's outcome as a word for the log: `ok`, or why not; a cancelled build ends the fetch. */
async function runScript(run: FetchRunContext, script: string, mounts: Mount[]): Promise<string> {
  const outcome = await runCacheStep(run, script, mounts, {});
  if (outcome.ok) return 'ok';
  if (outcome.cancelled) throw new FetchCancelled('the build was cancelled');
  return outcome.reason;
}

/** The operator's extra CA certificates, where node (npm), cargo and curl look for them. */
function caEnv(config: FetchConfig): Record<string, string> {
  if (config.caFile === undefined) return {};
  return { NODE_EXTRA_CA_CERTS: SANDBOX_CA_FILE, CARGO_HTTP_CAINFO: SANDBOX_CA_FILE, SSL_CERT_FILE: SANDBOX_CA_FILE };
}

function caMounts(config: FetchConfig): Mount[] {
  return config.caFile === undefined ? [] : [{ host: config.caFile, sandbox: SANDBOX_CA_FILE }];
}

/** Node (which runs the forwarder, and npm) must be visible in the sandbox; a prefix outside /usr is mounted at its own path. */
export function nodePrefixMounts(nodePath: string): Mount[] {
  if (nodePath.startsWith('/usr/')) return [];
  const prefix = dirname(dirname(nodePath));
  return [{ host: prefix, sandbox: prefix }];
}

function uniqueMounts(mounts: Mount[]): Mount[] {
  const seen = new Set<string>();
  return mounts.filter((mount) => !seen.has(mount.sandbox) && seen.add(mount.sandbox));
}

/** Keeps the last maxBytes of a stream of output. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.maxBytes && this.chunks.length > 1) this.size -= this.chunks.shift()?.length ?? 0;
  }

  text(): string {
    return Buffer.concat(this.chunks).subarray(-this.maxBytes).toString('utf8');
  }
}
