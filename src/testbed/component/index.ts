/**
 * The test bed's http-component service, as a runner process hosts it
 * (runner/runner.ts, call kind `http-component`): one request → status,
 * headers, body, logs, timings, for invoke and the preview URL alike,
 * through a ComponentRunner (one worker thread of the runner process).
 * Components are prepared (transpiled, compiled, an instance pre-warmed)
 * once per artifact and memory cap. The API process never creates one: it
 * reaches this through RunnerTestbed.invokeComponent (decision 0017).
 */
import { unprocessable } from '../../errors.ts';
import { bodyJson } from '../render.ts';
import { PAGE_SIZE } from '../../wasm/binary.ts';
import type { TestbedConfig } from '../config.ts';
import type { HttpRequestData } from '../http-message.ts';
import type { ArtifactRef } from '../modules.ts';
import { Lru } from '../lru.ts';
import { Upstreams } from '../upstream.ts';
import { outgoingPerformer } from './outgoing.ts';
import type { AllowedOrigin, HandleReply } from './protocol.ts';
import { ComponentRunner, ComponentRunnerLostError, ComponentTimeoutError } from './runner.ts';

/** Preparing = jco transpile (seconds for a 13 MB StarlingMonkey component) + compile + first instance. */
export const COMPONENT_PREPARE_TIMEOUT_MS = 120_000;
/** V8 heap of the component worker: jco's bindgen and the glue need more than a filter's worker. */
export const COMPONENT_WORKER_HEAP_MB = 512;
/** Owners whose upstream connection pools the component host keeps (least recently used beyond are closed). */
export const COMPONENT_OWNER_POOLS = 64;

/** `runner_lost`: the runner process running the call died (set by the API side, runner/client.ts). */
export type ComponentOutcome = 'ok' | 'trap' | 'timeout' | 'no_response' | 'error_response' | 'vm_lost' | 'runner_lost';

/** What a caller may choose per call (the operator's maximum still applies). */
export interface ComponentLimits {
  timeoutMs?: number;
}

export interface ComponentResult {
  kind: 'http-component';
  outcome: ComponentOutcome;
  message?: string;
  response: { status: number; headers: Array<[string, string]>; body: Uint8Array; truncated: boolean } | null;
  logs: Array<{ stream: 'stdout' | 'stderr'; line: string }>;
  droppedLogBytes: number;
  outgoing: Array<{ authority: string; pathWithQuery: string; allowed: boolean; status?: number; error?: string; limit?: string }>;
  /** Outgoing calls made past the first MAX_OUTGOING_RECORDS (wasi-http-host.ts): counted, not listed. */
  droppedOutgoing: number;
  module: { sha256: string; size: number; memoryCapBytes: number; prepareMs: number };
  timings: { totalMs: number; instantiateMs: number; handleMs: number; prewarmed: boolean };
}

export class ComponentTestbed {
  private readonly runner: ComponentRunner;
  private readonly allowed: AllowedOrigin[];
  /** Components' outgoing calls: the allow-list, one keep-alive pool per owner (decision 0020). */
  private readonly upstreams: Upstreams;
  /** What preparing each artifact measured, for results; bounded like the engine's own cache. */
  private readonly sizes = new Lru<string, { size: number; prepareMs: number }>(256);

  constructor(private readonly config: TestbedConfig) {
    this.runner = new ComponentRunner({ heapMb: Math.max(COMPONENT_WORKER_HEAP_MB, config.workerHeapMb), prepareTimeoutMs: COMPONENT_PREPARE_TIMEOUT_MS, toolchainDir: config.componentToolchainDir });
    this.allowed = [...config.upstreams].map(([name, url]) => ({ name, origin: url.origin }));
    this.upstreams = new Upstreams(config.upstreams, { timeoutMs: config.upstreamTimeoutMs, maxResponseBytes: config.maxBodyBytes, socketsPerOwner: config.upstreamSocketsPerOwner, maxOwnerPools: COMPONENT_OWNER_POOLS });
  }

  /** Transpiles and pre-warms ahead of the first request (e.g. right after a build). */
  async prepare(artifact: ArtifactRef): Promise<void> {
    await this.prepared(artifact, this.capPages());
  }

  /** `ownerId`: whose connection pool carries the component's outgoing calls. */
  async invoke(artifact: ArtifactRef, request: HttpRequestData, limits: ComponentLimits, ownerId: string): Promise<ComponentResult> {
    const started = performance.now();
    const capPages = this.capPages();
    let key: string;
    try {
      key = await this.prepared(artifact, capPages);
    } catch (error) {
      if (error instanceof ComponentTimeoutError) throw unprocessable('module_not_runnable', `preparing the component (transpile, compile, first instance) took longer than ${COMPONENT_PREPARE_TIMEOUT_MS} ms`);
      if (error instanceof ComponentRunnerLostError) {
        const module = { sha256: artifact.sha256, size: 0, memoryCapBytes: capPages * PAGE_SIZE, prepareMs: 0 };
        const timings = { totalMs: performance.now() - started, instantiateMs: 0, handleMs: 0, prewarmed: false };
        return { kind: 'http-component', outcome: 'vm_lost', message: error.message, response: null, logs: [], droppedLogBytes: 0, outgoing: [], droppedOutgoing: 0, module, timings };
      }
      throw error;
    }
    const deadlineMs = Math.min(limits.timeoutMs ?? this.config.timeoutMs, this.config.maxTimeoutMs);
    const prepared = this.sizes.get(key) ?? { size: 0, prepareMs: 0 };
    const module = { sha256: artifact.sha256, size: prepared.size, memoryCapBytes: capPages * PAGE_SIZE, prepareMs: prepared.prepareMs };
    const base = { kind: 'http-component' as const, response: null, logs: [], droppedLogBytes: 0, outgoing: [], droppedOutgoing: 0, module };
    let reply;
    try {
      reply = await this.runner.handle(
        {
          sha256: key,
          request: {
            method: request.method,
            pathWithQuery: request.path,
            scheme: request.scheme === 'https' ? 'https' : 'http',
            authority: request.authority,
            headers: request.headers.map(([name, value]) => [name, value]),
            body: request.body,
          },
          allowed: this.allowed,
          limits: { maxBodyBytes: this.config.maxBodyBytes, maxLogBytes: this.config.maxOutputBytes },
          maxOutgoingCalls: this.config.maxHttpCalls,
        },
        deadlineMs,
        outgoingPerformer(this.upstreams, this.config, ownerId),
      );
    } catch (error) {
      const timings = { totalMs: performance.now() - started, instantiateMs: 0, handleMs: 0, prewarmed: false };
      if (error instanceof ComponentTimeoutError) return { ...base, outcome: 'timeout', message: `the component did not answer within ${deadlineMs} ms; its instance was discarded`, timings };
      if (error instanceof ComponentRunnerLostError) return { ...base, outcome: 'vm_lost', message: error.message, timings };
      throw error;
    }
    if (reply.type === 'failed') throw unprocessable('module_not_runnable', reply.message);
    return resultOf(base, reply, performance.now() - started);
  }

  close(): Promise<void> {
    this.upstreams.close();
    return this.runner.close();
  }

  private capPages(): number {
    return Math.floor((this.config.memoryCapMb * 1024 * 1024) / PAGE_SIZE);
  }

  private async prepared(artifact: ArtifactRef, capPages: number): Promise<string> {
    const key = `${artifact.sha256}/${capPages}`;
    let size = 0;
    const reply = await this.runner.prepare(key, capPages, async () => {
      const bytes = await artifact.load();
      size = bytes.length;
      return bytes;
    });
    if (reply.type === 'failed') throw unprocessable('module_not_runnable', reply.message);
    if (reply.type === 'prepared' && this.sizes.get(key) === undefined) this.sizes.set(key, { size, prepareMs: reply.transpileMs + reply.compileMs + reply.instantiateMs });
    return key;
  }
}

function resultOf(base: Omit<ComponentResult, 'outcome' | 'timings'>, reply: HandleReply, totalMs: number): ComponentResult {
  return {
    ...base,
    outcome: reply.outcome,
    ...(reply.message === undefined ? {} : { message: reply.message }),
    response: reply.response ?? null,
    logs: reply.record.logs,
    droppedLogBytes: reply.record.droppedLogBytes,
    outgoing: reply.record.outgoing,
    droppedOutgoing: reply.record.droppedOutgoing,
    timings: { totalMs, ...reply.timings },
  };
}

/** The JSON `invoke` answers for an http-component (ComponentResultSchema). */
export function componentResultJson(result: ComponentResult) {
  return {
    ...result,
    response: result.response === null ? null : { status: result.response.status, headers: result.response.headers, body: bodyJson(result.response.body, result.response.truncated || undefined) },
  };
}
