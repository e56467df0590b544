/**
 * Drives one HTTP exchange through a filter from the main thread: the worker
 * runs the callbacks, this side does the I/O the filter asked for (its HTTP
 * calls, the upstream request) in between, and charges only the time spent
 * in the worker to the invocation's deadline — waiting for a slow upstream
 * is not the filter's fault.
 */
import { PlatformError } from '../errors.ts';
import { CallDriver, CallRoundsExceeded } from './call-driver.ts';
import type { CallPerformer } from './call-driver.ts';
import type { LiveGrpcStream } from './grpc-upstream.ts';
import type { ConnectionInfo, HttpRequestData, HttpResponseData } from './http-message.ts';
import type { WorkerPool, WorkerRef } from './pool.ts';
import { WorkerLostError, WorkerTimeoutError } from './pool.ts';
import type { FailureOutcome, FilterEnd, FilterStep, GuestFailure, OutgoingCall, VmSpec, WorkerRequest } from './protocol.ts';
import type { MetricSnapshot } from './proxy-wasm/shared-state.ts';
import type { LocalResponse } from './proxy-wasm/stream.ts';
import type { Recording, RecorderLimits } from './recorder.ts';
import { emptyRecording, mergeRecordings } from './recorder.ts';

/** 'limit_exceeded': the filter ran into a test bed limit that ends the exchange (named in `limit`). */
export type ExchangeOutcome = 'ok' | 'paused' | 'closed' | 'timeout' | 'aborted' | 'limit_exceeded' | FailureOutcome;

export interface CallRecord {
  token: number;
  upstream: string;
  method: string;
  path: string;
  status: number | null;
  error?: string;
  durationMs: number;
}

export interface UpstreamAnswer {
  response: HttpResponseData;
  /** Set when the upstream failed and `response` is the proxy's 502 instead. */
  error?: string;
}

export interface ExchangeSetup {
  pool: WorkerPool;
  affinity: string;
  vm: VmSpec;
  /** A new VM for this exchange only (invocations), or the warm one for vm.key (preview). */
  fresh: boolean;
  ticks: number;
  request: HttpRequestData;
  connection: ConnectionInfo;
  /** Time the guest may spend in total, over all callbacks. */
  budgetMs: number;
  upstream(request: HttpRequestData): Promise<UpstreamAnswer>;
  httpCall(call: OutgoingCall): Promise<HttpResponseData>;
  /** Opens a gRPC stream live; undefined: perform it with httpCall (a canned response). */
  grpcStream(call: OutgoingCall): LiveGrpcStream | undefined;
  /** Preview answers the client first and lets on_done/on_log run after. */
  endInBackground: boolean;
  /** Rounds of HTTP calls made from HTTP call responses before the exchange is ended. */
  maxCallRounds: number;
  /** Log lines and bytes kept for the whole exchange. */
  recordingLimits: RecorderLimits;
}

export interface ExchangeReport {
  outcome: ExchangeOutcome;
  message?: string;
  /** With 'limit_exceeded': the TestbedConfig field that ended the exchange. */
  limit?: string;
  stack?: string[];
  /** The request as the filter sent it upstream (absent when it never was). */
  forwarded?: HttpRequestData;
  /** The upstream's response before the filter saw it. */
  upstreamResponse?: HttpResponseData;
  upstreamError?: string;
  /** The response the client gets. */
  response?: HttpResponseData;
  responseSource?: 'upstream' | 'local';
  localResponse?: LocalResponse;
  recording: Recording;
  httpCalls: CallRecord[];
  metrics: MetricSnapshot[];
  sharedData: FilterEnd['sharedData'];
  /** Time spent in the worker (the guest plus the host functions). */
  guestMs: number;
  durationMs: number;
  vmStarted: boolean;
}

/** A failure reported by the worker for guest code; ends the exchange with its outcome. */
class StepFailure extends Error {
  constructor(readonly failure: GuestFailure) {
    super(failure.message);
  }
}

/** The filter went past a limit the exchange enforces (outside the worker). */
class ExchangeLimitError extends Error {
  constructor(
    readonly limit: string,
    message: string,
  ) {
    super(message);
  }
}

/** Dropping a VM runs no guest code; this only bounds a wedged worker. */
const DROP_DEADLINE_MS = 1_000;

export async function runExchange(setup: ExchangeSetup): Promise<ExchangeReport> {
  return new ExchangeRun(setup).execute();
}

class ExchangeRun {
  private readonly report: ExchangeReport = { outcome: 'ok', recording: emptyRecording(), httpCalls: [], metrics: [], sharedData: [], guestMs: 0, durationMs: 0, vmStarted: false };
  private ref: WorkerRef | undefined;
  private vmKey = '';
  private contextId = 0;

  constructor(private readonly setup: ExchangeSetup) {}

  async execute(): Promise<ExchangeReport> {
    const started = performance.now();
    try {
      await this.drive();
    } catch (error) {
      // Whatever ended the exchange, the VM must not outlive it with a stream half done (fresh or warm).
      await this.dropVm();
      this.fail(error);
    }
    this.report.durationMs = performance.now() - started;
    return this.report;
  }

  /**
   * Forgets the exchange's VM in its worker without running guest code. A
   * worker that failed the VM already discarded it, and a replaced worker
   * took its VMs with it; either way the answer does not matter.
   */
  private async dropVm(): Promise<void> {
    if (this.vmKey === '' || !this.ref) return;
    await this.setup.pool.send({ op: 'filter.drop', vmKey: this.vmKey }, { affinity: this.setup.affinity, deadlineMs: DROP_DEADLINE_MS, pin: this.ref }).catch(() => undefined);
  }

  private async drive(): Promise<void> {
    const { setup } = this;
    // The preview lets the worker end a finished stream by itself, right after answering (one message fewer per request).
    const endAfter = setup.endInBackground ? { endAfter: { dispose: setup.fresh } } : {};
    let step = await this.step({ op: 'filter.start', vm: setup.vm, fresh: setup.fresh, request: setup.request, connection: setup.connection, ticks: setup.ticks, ...endAfter });
    this.vmKey = step.vmKey;
    this.contextId = step.contextId;
    this.report.vmStarted = step.vmStarted === true;
    step = await this.settle(step);
    if (step.state === 'forward' && step.request) {
      this.report.forwarded = step.request;
      const answer = await setup.upstream(step.request);
      this.report.upstreamResponse = answer.response;
      if (answer.error !== undefined) this.report.upstreamError = answer.error;
      step = await this.settle(await this.step({ op: 'filter.response', vmKey: this.vmKey, contextId: this.contextId, response: answer.response, ...endAfter }));
    }
    this.conclude(step);
    if (step.endsInWorker) return;
    const end = this.end();
    if (setup.endInBackground) end.catch(() => this.dropVm());
    else await end;
  }

  private conclude(step: FilterStep): void {
    const { report } = this;
    if (step.localResponse) report.localResponse = step.localResponse;
    switch (step.state) {
      case 'complete':
        if (step.response) report.response = step.response;
        report.responseSource = step.localResponse ? 'local' : 'upstream';
        return;
      case 'respond':
        if (step.localResponse) report.response = { status: step.localResponse.status, headers: step.localResponse.headers, body: step.localResponse.body, trailers: [] };
        report.responseSource = 'local';
        return;
      case 'closed':
        report.outcome = 'closed';
        report.message = 'the filter closed the stream (proxy_close_stream); a proxy would reset the connection';
        return;
      default:
        report.outcome = 'paused';
        report.message = `the filter paused in ${step.pausedIn ?? 'a callback'} and never resumed (no HTTP call of its own is pending); a proxy would hold the request until it times out`;
    }
  }

  /**
   * Performs the calls the filter made and hands their answers back as they
   * come (live gRPC streams update by update), until none is in flight.
   */
  private async settle(initial: FilterStep): Promise<FilterStep> {
    // Most steps make no call: the hot path (every preview request) builds no driver.
    if (initial.calls.length === 0 && initial.streamWrites.length === 0) return initial;
    let step = initial;
    const driver = new CallDriver(this.performer(), this.setup.maxCallRounds);
    try {
      this.follow(driver, initial, 0);
      for (let arrival = await driver.next(); arrival; arrival = await driver.next()) {
        const delivered = await this.step({ op: 'filter.deliver', vmKey: this.vmKey, token: arrival.token, response: arrival.response, contextId: this.contextId, ...(arrival.partial ? { partial: true } : {}) });
        if (delivered.state !== 'idle') step = delivered;
        this.follow(driver, delivered, arrival.round + 1);
      }
      return step;
    } finally {
      driver.close();
    }
  }

  private follow(driver: CallDriver, step: FilterStep, round: number): void {
    try {
      driver.launch(step.calls, round);
    } catch (error) {
      if (error instanceof CallRoundsExceeded) throw new ExchangeLimitError('maxHttpCallRounds', `${error.message}; its VM was dropped`);
      throw error;
    }
    driver.apply(step.streamWrites);
  }

  /** The exchange's calls, each written down in the report with its status and duration. */
  private performer(): CallPerformer {
    const records = new Map<number, { record: CallRecord; started: number }>();
    const open = (call: OutgoingCall): CallRecord => {
      const record: CallRecord = { token: call.token, upstream: call.upstream, method: call.request.method, path: call.request.path, status: null, durationMs: 0 };
      this.report.httpCalls.push(record);
      records.set(call.token, { record, started: performance.now() });
      return record;
    };
    const close = (call: OutgoingCall, response: HttpResponseData | null, error?: unknown): void => {
      const entry = records.get(call.token);
      if (!entry) return;
      records.delete(call.token);
      entry.record.durationMs = performance.now() - entry.started;
      if (response) entry.record.status = response.status;
      if (error !== undefined) entry.record.error = error instanceof Error ? error.message : String(error);
    };
    return {
      call: async (call) => {
        open(call);
        try {
          const response = await this.setup.httpCall(call);
          close(call, response);
          return response;
        } catch (error) {
          close(call, null, error);
          return null;
        }
      },
      openStream: (call) => {
        const live = this.setup.grpcStream(call);
        if (live) open(call);
        return live;
      },
      streamEnded: (call, response) => close(call, response),
    };
  }

  private async end(): Promise<void> {
    const value = await this.send({ op: 'filter.end', vmKey: this.vmKey, contextId: this.contextId, dispose: this.setup.fresh });
    const end = value as FilterEnd;
    mergeRecordings(this.report.recording, end.recording, this.setup.recordingLimits);
    this.report.metrics = end.metrics;
    this.report.sharedData = end.sharedData;
  }

  private async step(message: WorkerRequest): Promise<FilterStep> {
    const step = (await this.send(message)) as FilterStep;
    mergeRecordings(this.report.recording, step.recording, this.setup.recordingLimits);
    return step;
  }

  /** One message to the exchange's worker, charged to the budget. */
  private async send(message: WorkerRequest): Promise<unknown> {
    const remaining = this.setup.budgetMs - this.report.guestMs;
    if (remaining <= 0) throw new WorkerTimeoutError(this.setup.budgetMs);
    const answer = await this.setup.pool.send(message, { affinity: this.setup.affinity, deadlineMs: remaining, ...(this.ref ? { pin: this.ref } : {}) });
    this.report.guestMs += answer.elapsedMs;
    this.ref ??= answer.ref;
    const { reply } = answer;
    if (reply.ok) return reply.value;
    if ('failure' in reply) throw new StepFailure(reply.failure);
    throw new PlatformError('testbed_host_error', `the test bed failed while running the filter: ${reply.error}`);
  }

  private fail(error: unknown): void {
    const { report } = this;
    if (error instanceof StepFailure) {
      report.outcome = error.failure.outcome;
      report.message = error.failure.message;
      if (error.failure.stack?.length) report.stack = error.failure.stack;
      if (error.failure.recording) mergeRecordings(report.recording, error.failure.recording, this.setup.recordingLimits);
    } else if (error instanceof ExchangeLimitError) {
      report.outcome = 'limit_exceeded';
      report.limit = error.limit;
      report.message = error.message;
      if (!report.recording.limits.includes(error.limit)) report.recording.limits.push(error.limit);
    } else if (error instanceof WorkerTimeoutError) {
      report.outcome = 'timeout';
      report.message = `the filter ran longer than its ${this.setup.budgetMs} ms deadline and was stopped (an infinite loop?); the test bed worker was replaced`;
    } else if (error instanceof WorkerLostError) {
      report.outcome = error.outOfMemory ? 'memory_limit' : 'aborted';
      report.message = error.message;
    } else {
      throw error;
    }
    delete report.response;
  }
}
