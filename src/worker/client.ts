import type { ArchiveLimits } from '../archive/limits.ts';
import type { SandboxLimits } from '../sandbox/sandbox.ts';
import type { OptimizeOptions, StageTiming } from '../store/metadata/schema.ts';

/** A job as the API hands it out (see docs/worker-protocol.md). */
export interface JobSpec {
  id: string;
  buildId: string;
  versionId: string;
  attempt: number;
  leaseToken: string;
  leaseExpiresAt: string;
  language: string | null;
  kind: string | null;
  phases: string[];
  config: string;
  optimize: OptimizeOptions;
  sourceSha256: string;
  sourceFormat: string;
  limits: SandboxLimits;
  /**
   * The archive limits the API accepted the upload under, so the worker
   * extracts with the same ones. Absent from older APIs: the defaults.
   */
  archiveLimits?: ArchiveLimits;
  /**
   * Opaque per-owner namespace for the dependency cache (a hash, never the
   * owner id or a token). Absent from older APIs: no cache then.
   */
  cacheNamespace?: string;
}

export interface JobResult {
  outcome: 'succeeded' | 'failed' | 'crashed' | 'cancelled';
  reason?: string;
  language?: string;
  kind?: string;
  stages: StageTiming[];
  details?: Record<string, unknown>;
}

/** The API said this worker no longer holds the job: stop working on it. */
export class LeaseLost extends Error {
  constructor(jobId: string) {
    super(`lease on job ${jobId} lost`);
    this.name = 'LeaseLost';
  }
}

/** The API could not be reached or answered 5xx: worth retrying. */
export class ApiUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApiUnavailable';
  }
}

/** The worker's only link to Kiln: HTTP with a worker token, nothing else. */
export class WorkerApiClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  private async call(method: string, path: string, init: { body?: BodyInit; contentType?: string; lease?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (init.contentType) headers['content-type'] = init.contentType;
    if (init.lease) headers['x-kiln-lease'] = init.lease;
    // One controller per call: the deadline also covers reading the body, and
    // the caller's signal is unhooked once the answer arrived (AbortSignal.any
    // would leave a listener on a long-lived signal for every call).
    const controller = new AbortController();
    const deadline = setTimeout(() => controller.abort(new Error(`no answer within ${init.timeoutMs ?? 30_000} ms`)), init.timeoutMs ?? 30_000);
    deadline.unref();
    const forward = () => controller.abort(init.signal?.reason);
    init.signal?.addEventListener('abort', forward);
    if (init.signal?.aborted) forward();
    let response: Response;
    try {
      response = await fetch(new URL(path, this.baseUrl), { method, headers, body: init.body, signal: controller.signal });
    } catch (error) {
      throw new ApiUnavailable(`cannot reach the Kiln API at ${this.baseUrl}: ${(error as Error).message}`, { cause: error });
    } finally {
      init.signal?.removeEventListener('abort', forward);
    }
    if (response.status === 409) {
      await response.body?.cancel();
      throw new LeaseLost(path);
    }
    if (response.status >= 500) throw new ApiUnavailable(`the Kiln API answered ${response.status} to ${method} ${path}: ${await response.text()}`);
    if (response.status >= 400) throw new Error(`the Kiln API refused ${method} ${path} (${response.status}): ${await response.text()}`);
    return response;
  }

  async claim(workerId: string, waitMs: number, signal?: AbortSignal): Promise<JobSpec | undefined> {
    const response = await this.call('POST', '/internal/v1/jobs/claim', {
      body: JSON.stringify({ workerId, waitMs }),
      contentType: 'application/json',
      timeoutMs: waitMs + 15_000,
      signal,
    });
    if (response.status === 204) return undefined;
    const { job } = (await response.json()) as { job: JobSpec };
    return job;
  }

  async heartbeat(job: JobSpec): Promise<{ cancelRequested: boolean }> {
    const response = await this.call('POST', `/internal/v1/jobs/${job.id}/heartbeat`, { lease: job.leaseToken, timeoutMs: 10_000 });
    return (await response.json()) as { cancelRequested: boolean };
  }

  async downloadSource(job: JobSpec): Promise<Response> {
    return this.call('GET', `/internal/v1/jobs/${job.id}/source`, { lease: job.leaseToken, timeoutMs: 120_000 });
  }

  async appendLog(job: JobSpec, data: Buffer): Promise<void> {
    await this.call('POST', `/internal/v1/jobs/${job.id}/logs`, { lease: job.leaseToken, body: new Uint8Array(data), contentType: 'application/octet-stream' });
  }

  async uploadArtifact(job: JobSpec, variant: 'original' | 'optimized', bytes: Buffer): Promise<{ sha256: string; size: number }> {
    const response = await this.call('PUT', `/internal/v1/jobs/${job.id}/artifacts/${variant}`, { lease: job.leaseToken, body: new Uint8Array(bytes), contentType: 'application/wasm', timeoutMs: 120_000 });
    return (await response.json()) as { sha256: string; size: number };
  }

  async report(job: JobSpec, result: JobResult): Promise<{ build: { state: string }; requeued: boolean }> {
    const response = await this.call('POST', `/internal/v1/jobs/${job.id}/result`, { lease: job.leaseToken, body: JSON.stringify(result), contentType: 'application/json', timeoutMs: 60_000 });
    return (await response.json()) as { build: { state: string }; requeued: boolean };
  }
}
