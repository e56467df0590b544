/**
 * Runs http-components: jco transpile (component → core Wasm + JS glue) and
 * a fresh instance per request, pre-warmed — a fetch-event component
 * answers only one request per instance (docs/decisions/0017).
 *
 * This module runs where tenant Wasm runs (a test bed worker thread, later a
 * runner process), never in the API's main thread: the glue is JavaScript
 * generated from the component, and the guest's code runs inside it. What
 * the glue can reach is only the import object built by wasi-http-host.ts
 * (no file system, no environment, no sockets, allow-listed outgoing HTTP);
 * the glue is produced here by Kiln's pinned jco from the component bytes,
 * never taken from the build, so no uploaded JavaScript is ever loaded.
 */
import { UserError } from '../../errors.ts';
import { inspectModule } from '../../wasm/inspect.ts';
import { setMemoryMaximum } from '../../wasm/memory-cap.ts';
import type { BridgeSend } from './bridge.ts';
import type { AllowedOrigin, EngineReply, HandleMessage, PrepareMessage } from './protocol.ts';
import { createComponentHost, type ComponentHost, type OutgoingAnswer, type OutgoingCall, type OutgoingHandler } from './wasi-http-host.ts';

type Instantiate = (getCoreModule: (name: string) => WebAssembly.Module, imports: Record<string, Record<string, unknown>>) => Record<string, unknown>;

interface IncomingHandler {
  handle(request: unknown, outparam: unknown): void;
}

interface Prepared {
  instantiate: Instantiate;
  modules: Map<string, WebAssembly.Module>;
  /** The next request's instance, created ahead of it. */
  warm?: WarmInstance;
  limits?: HandleMessage['limits'];
}

interface WarmInstance {
  host: ComponentHost;
  handler: IncomingHandler;
  instantiateMs: number;
}

/** Prepared components kept per engine; the oldest is dropped past it. */
export const MAX_PREPARED_COMPONENTS = 4;

type Transpile = (bytes: Uint8Array, options: Record<string, unknown>) => Promise<{ files: Record<string, Uint8Array> }>;

export class ComponentEngine {
  private readonly prepared = new Map<string, Prepared>();
  private transpiler: Promise<Transpile> | undefined;

  /**
   * `toolchainDir`: the JS toolchain prefix holding jco-transpile (Kiln's own, pinned).
   * `send`: performs an allow-listed outgoing call (the bridge to the runner thread);
   * without one, allowed calls fail as the platform's internal error.
   */
  constructor(
    private readonly toolchainDir: string,
    private readonly send: BridgeSend = noBridge,
  ) {}

  private async transpileComponent(component: Uint8Array): Promise<Record<string, Uint8Array>> {
    this.transpiler ??= import(`${this.toolchainDir}/node_modules/@bytecodealliance/jco-transpile/dist/index.js`).then((module: { transpileBytes: Transpile }) => module.transpileBytes);
    const transpile = await this.transpiler;
    const { files } = await transpile(component, { name: 'component', instantiation: 'sync', noTypescript: true, emitTypescriptDeclarations: false, wasiShim: false });
    return files;
  }

  async prepare(message: PrepareMessage): Promise<EngineReply> {
    const started = performance.now();
    let files: Record<string, Uint8Array>;
    try {
      files = message.transpiled ?? (await this.transpileComponent(message.component));
    } catch (error) {
      return { type: 'failed', code: 'not_runnable', message: `jco could not transpile the component: ${describe(error)}` };
    }
    const transpileMs = performance.now() - started;
    const glue = files['component.js'];
    if (glue === undefined) return { type: 'failed', code: 'internal', message: 'jco produced no component.js' };
    const modules = new Map<string, WebAssembly.Module>();
    const compileStarted = performance.now();
    try {
      for (const [name, bytes] of Object.entries(files)) {
        if (name.endsWith('.wasm')) modules.set(name, await WebAssembly.compile(capMemory(bytes, message.memoryCapPages)));
      }
    } catch (error) {
      if (error instanceof UserError) return { type: 'failed', code: 'not_runnable', message: error.message };
      throw error;
    }
    const compileMs = performance.now() - compileStarted;
    const glueModule = (await import(`data:text/javascript;base64,${Buffer.from(glue).toString('base64')}`)) as { instantiate: Instantiate };
    const entry: Prepared = { instantiate: glueModule.instantiate, modules };
    this.remember(message.sha256, entry);
    const limits = { maxBodyBytes: 8 * 1024 ** 2, maxLogBytes: 64 * 1024 };
    try {
      entry.warm = this.instantiate(entry, limits);
    } catch (error) {
      this.prepared.delete(message.sha256);
      return { type: 'failed', code: 'not_runnable', message: `the component failed to start: ${describe(error)}` };
    }
    return { type: 'prepared', sha256: message.sha256, transpileMs, compileMs, instantiateMs: entry.warm.instantiateMs, transpiled: files };
  }

  has(sha256: string): boolean {
    return this.prepared.has(sha256);
  }

  handle(message: HandleMessage): EngineReply {
    const entry = this.prepared.get(message.sha256);
    if (entry === undefined) return { type: 'failed', code: 'not_prepared', message: `component ${message.sha256} is not prepared in this engine` };
    const prewarmed = entry.warm !== undefined && sameLimits(entry.limits, message.limits);
    let instance: WarmInstance;
    try {
      instance = prewarmed && entry.warm ? entry.warm : this.instantiate(entry, message.limits);
    } catch (error) {
      return { type: 'failed', code: 'not_runnable', message: `the component failed to start: ${describe(error)}` };
    }
    entry.warm = undefined;
    const exchange = instance.host.begin(message.request, countedOutgoing(message, this.send));
    const started = performance.now();
    let trap: string | undefined;
    try {
      instance.handler.handle(exchange.request, exchange.outparam);
    } catch (error) {
      trap = describe(error);
    }
    const handleMs = performance.now() - started;
    const timings = { instantiateMs: instance.instantiateMs, handleMs, prewarmed };
    // The next request's instance, made now so it is ready before that request arrives.
    entry.limits = message.limits;
    try {
      entry.warm = this.instantiate(entry, message.limits);
    } catch {
      entry.warm = undefined;
    }
    const answer = exchange.result();
    if (answer?.tag === 'ok') {
      const body = answer.val.responseBody;
      return {
        type: 'handled',
        outcome: trap === undefined ? 'ok' : 'trap',
        ...(trap === undefined ? {} : { message: `the component trapped after answering: ${trap}` }),
        response: { status: answer.val.statusCode(), headers: answer.val.headers().textPairs(), body: body?.bytes() ?? new Uint8Array(0), truncated: body !== undefined && !body.finished },
        record: exchange.record,
        timings,
      };
    }
    if (answer?.tag === 'err') return { type: 'handled', outcome: 'error_response', message: `the component answered with the error ${JSON.stringify(answer.val)}`, record: exchange.record, timings };
    if (trap !== undefined) return { type: 'handled', outcome: 'trap', message: trap, record: exchange.record, timings };
    return { type: 'handled', outcome: 'no_response', message: 'the component returned without setting a response', record: exchange.record, timings };
  }

  private instantiate(entry: Prepared, limits: HandleMessage['limits']): WarmInstance {
    const started = performance.now();
    const host = createComponentHost(limits);
    const exports = entry.instantiate((name) => {
      const module = entry.modules.get(name);
      if (module === undefined) throw new Error(`jco glue asked for an unknown core module ${name}`);
      return module;
    }, host.imports);
    const handler = (exports['incomingHandler'] ?? exports['wasi:http/incoming-handler@0.2.10']) as IncomingHandler | undefined;
    if (typeof handler?.handle !== 'function') throw new Error('the component exports no wasi:http/incoming-handler');
    return { host, handler, instantiateMs: performance.now() - started };
  }

  private remember(sha256: string, entry: Prepared): void {
    this.prepared.delete(sha256);
    this.prepared.set(sha256, entry);
    while (this.prepared.size > MAX_PREPARED_COMPONENTS) {
      const oldest = this.prepared.keys().next().value;
      if (oldest === undefined) break;
      this.prepared.delete(oldest);
    }
  }
}

/**
 * The memory cap of filters, applied the same way: each core module that
 * defines a memory gets that memory's maximum set to the cap, so growing
 * past it fails inside the guest. Modules that only import memory share it.
 */
function capMemory(bytes: Uint8Array, capPages: number): Uint8Array<ArrayBuffer> {
  const defines = inspectModule(bytes, { validate: false }).memories.some((memory) => !memory.imported);
  return defines ? setMemoryMaximum(bytes, capPages) : new Uint8Array(bytes);
}

function sameLimits(a: HandleMessage['limits'] | undefined, b: HandleMessage['limits']): boolean {
  return a === undefined ? b.maxBodyBytes === 8 * 1024 ** 2 && b.maxLogBytes === 64 * 1024 : a.maxBodyBytes === b.maxBodyBytes && a.maxLogBytes === b.maxLogBytes;
}

/**
 * The allow-list decides: the call's scheme and authority must be exactly
 * an allowed origin's. Refused calls are the guest's HTTP-request-denied;
 * allowed ones are sent (as that upstream, by name) through `send`.
 */
export function outgoing(call: OutgoingCall, allowed: readonly AllowedOrigin[], send: BridgeSend, timeoutMs = 0): OutgoingAnswer {
  const origin = `${call.scheme}://${call.authority}`;
  const match = allowed.find((entry) => sameOrigin(entry.origin, origin));
  // The result already says `allowed: false`; nothing more is recorded for a refusal.
  if (match === undefined) return { ok: false, error: { tag: 'HTTP-request-denied' } };
  return send(match.name, call, timeoutMs);
}

/** One request's outgoing handler: at most `maxOutgoingCalls` calls are sent (limit maxHttpCalls). */
function countedOutgoing(message: HandleMessage, send: BridgeSend): OutgoingHandler {
  let sent = 0;
  return (call, firstByteTimeoutNs) => {
    if (sent >= message.maxOutgoingCalls) {
      const reason = `more than ${message.maxOutgoingCalls} outgoing calls in one request (limit maxHttpCalls)`;
      return { ok: false, error: { tag: 'internal-error', val: reason }, reason, limit: 'maxHttpCalls' };
    }
    const answer = outgoing(call, message.allowed, send, timeoutFromNs(firstByteTimeoutNs));
    if (answer.ok || answer.error.tag !== 'HTTP-request-denied') sent += 1;
    return answer;
  };
}

/** The guest's first-byte timeout in whole ms (at least 1); 0 when it set none. */
function timeoutFromNs(ns: bigint | undefined): number {
  if (ns === undefined) return 0;
  const ms = ns / 1_000_000n;
  return ms < 1n ? 1 : ms > 2_147_483_647n ? 2_147_483_647 : Number(ms);
}

const noBridge: BridgeSend = () => ({ ok: false, error: { tag: 'internal-error', val: 'this engine has no way to perform outgoing calls' }, reason: 'no bridge to the runner thread' });

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : JSON.stringify(error) ?? String(error);
}
