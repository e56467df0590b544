import type { TSchema, Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { HttpApiError, HttpTransport, type RetryPolicy } from '../transport/http.ts';
import { ArtifactAnswerSchema, ClaimAnswerSchema, HeartbeatAnswerSchema, ReportAnswerSchema, type ArtifactAnswer, type ArtifactVariant, type HeartbeatAnswer, type JobResult, type JobSpec, type ReportAnswer } from './protocol.ts';

export type { JobResult, JobSpec } from './protocol.ts';

/** The API said this worker no longer holds the job: stop working on it. */
export class LeaseLost extends Error {
  constructor(jobId: string) {
    super(`lease on job ${jobId} lost`);
    this.name = 'LeaseLost';
  }
}

/**
 * The API answered something the worker protocol does not allow (a job
 * without its limits, say): the API and this worker disagree on the
 * protocol. The platform's fault; the worker does not guess its way on.
 */
export class ProtocolMismatch extends Error {
  constructor(what: string, problem: string) {
    super(`the Kiln API's answer to ${what} does not follow the worker protocol: ${problem}; are the API and this worker the same version?`);
    this.name = 'ProtocolMismatch';
  }
}

/**
 * A result report is retried for about 45 s while the API is unreachable or
 * answers 502/503/504 (a database restart): longer than a restart takes,
 * shorter than giving up the lease would cost (heartbeats keep running).
 */
const REPORT_RETRY: RetryPolicy = { attempts: 12, baseDelayMs: 500, maxDelayMs: 5_000 };
/** A few retries ride out a short API or database outage without losing log lines. */
const LOG_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 400, maxDelayMs: 3_200 };

/** Compiled once: every answer the worker acts on is checked against the protocol first. */
function decoder<T extends TSchema>(schema: T, what: string): (value: unknown) => Static<T> {
  const checker = TypeCompiler.Compile(schema);
  return (value) => {
    if (checker.Check(value)) return value;
    const first = checker.Errors(value).First();
    throw new ProtocolMismatch(what, `${first?.path || '/'} ${first?.message ?? 'is invalid'}`);
  };
}

const decodeClaim = decoder(ClaimAnswerSchema, 'claim');
const decodeHeartbeat = decoder(HeartbeatAnswerSchema, 'heartbeat');
const decodeArtifact = decoder(ArtifactAnswerSchema, 'an artifact upload');
const decodeReport = decoder(ReportAnswerSchema, 'a result report');

/** The worker's only link to Kiln: HTTP with a worker token, nothing else. */
export class WorkerApiClient {
  private readonly transport: HttpTransport;

  constructor(baseUrl: string, token: string) {
    this.transport = new HttpTransport({
      baseUrl,
      token,
      userAgent: 'kiln-worker',
      describe: { unreachable: (why) => `cannot reach the Kiln API at ${baseUrl}: ${why}` },
    });
  }

  /** The job the API handed out, or undefined when none arrived within `waitMs`. */
  async claim(workerId: string, waitMs: number, signal?: AbortSignal): Promise<JobSpec | undefined> {
    // Not retried: a claim whose answer was lost is handed back by the API, and the slot loop backs off.
    const answer = await this.transport.json('POST', '/internal/v1/jobs/claim', { json: { workerId, waitMs }, timeoutMs: waitMs + 15_000, signal });
    if (answer === undefined) return undefined;
    return decodeClaim(answer).job;
  }

  async heartbeat(job: JobSpec): Promise<HeartbeatAnswer> {
    // Not retried: the next heartbeat comes sooner than a retry would.
    return decodeHeartbeat(await this.leased(job, 'POST', 'heartbeat', { timeoutMs: 10_000, retry: false }));
  }

  /** The source archive's response, body unread (the worker streams it to disk and checks its sha256). */
  async downloadSource(job: JobSpec): Promise<Response> {
    return this.call(job, () => this.transport.request('GET', this.jobPath(job, 'source'), { headers: this.lease(job), timeoutMs: 120_000 }));
  }

  async appendLog(job: JobSpec, data: Buffer): Promise<void> {
    // Appending twice (an answer lost after the append) repeats a few lines; losing them is worse.
    await this.call(job, () =>
      this.transport.request('POST', this.jobPath(job, 'logs'), {
        headers: { ...this.lease(job), 'content-type': 'application/octet-stream' },
        body: new Uint8Array(data),
        retry: LOG_RETRY,
      }),
    ).then((response) => response.body?.cancel());
  }

  async uploadArtifact(job: JobSpec, variant: ArtifactVariant, bytes: Buffer): Promise<ArtifactAnswer> {
    return decodeArtifact(await this.leased(job, 'PUT', `artifacts/${variant}`, { body: new Uint8Array(bytes), contentType: 'application/wasm', timeoutMs: 120_000 }));
  }

  /** Reports the attempt's result; safe to repeat, because completion is conditional on the lease. */
  async report(job: JobSpec, result: JobResult): Promise<ReportAnswer> {
    return decodeReport(await this.leased(job, 'POST', 'result', { json: result, timeoutMs: 60_000, retry: REPORT_RETRY }));
  }

  /** A JSON call on a leased job. */
  private async leased(
    job: JobSpec,
    method: string,
    route: string,
    init: { json?: unknown; body?: BodyInit; contentType?: string; timeoutMs: number; retry?: boolean | RetryPolicy },
  ): Promise<unknown> {
    const headers = { ...this.lease(job), ...(init.contentType ? { 'content-type': init.contentType } : {}) };
    return this.call(job, () => this.transport.json(method, this.jobPath(job, route), { headers, json: init.json, body: init.body, timeoutMs: init.timeoutMs, retry: init.retry }));
  }

  /** A 409 on a job means its lease is gone (expired, cancelled, completed): the worker must drop it. */
  private async call<T>(job: JobSpec, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof HttpApiError && error.status === 409) throw new LeaseLost(job.id);
      throw error;
    }
  }

  private jobPath(job: JobSpec, route: string): string {
    return `/internal/v1/jobs/${encodeURIComponent(job.id)}/${route}`;
  }

  private lease(job: JobSpec): Record<string, string> {
    return { 'x-kiln-lease': job.leaseToken };
  }
}
