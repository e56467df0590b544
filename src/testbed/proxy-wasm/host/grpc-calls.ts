/**
 * gRPC calls and streams (Proxy-Wasm ABI 0.2.1 "gRPC calls", decisions 0033
 * and 0045). Like proxy_http_call, a call is recorded here and performed by
 * the main thread — over HTTP/2 (grpc-upstream.ts), to an upstream the
 * operator allowed, by name — and its answer comes back through
 * filter.deliver, where deliverGrpcResponse runs the gRPC callbacks the way
 * Envoy does:
 *
 *  - a unary call (proxy_grpc_call): proxy_on_grpc_receive with the response
 *    message when the status is OK, otherwise proxy_on_grpc_close with the
 *    status (never both: the Rust SDK forgets the call after either);
 *  - a stream (proxy_grpc_stream) is live: it is opened when the step that
 *    opened it ends, each proxy_grpc_send goes out when its step ends, and
 *    what the upstream sends arrives as it comes, in partial updates:
 *    proxy_on_grpc_receive_initial_metadata once, proxy_on_grpc_receive per
 *    message, then with the final update proxy_on_grpc_receive_trailing_metadata
 *    and proxy_on_grpc_close. A filter can answer a message with its next
 *    one (a bidirectional conversation).
 *
 * The message is GRPC_CALL_MESSAGE for proxy_get_buffer_bytes, the metadata
 * GRPC_CALL_INITIAL_METADATA / GRPC_CALL_TRAILING_METADATA for the header
 * map calls, and proxy_get_status gives the status code and grpc-message.
 *
 * Statuses follow the spec and what the Rust SDK accepts without panicking:
 * an upstream not on the allow-list is PARSE_FAILURE, anything the host
 * will not send (a limit, a malformed name or metadata) INTERNAL_FAILURE,
 * and proxy_grpc_send's refusals BAD_ARGUMENT / NOT_FOUND.
 */
import { i32, u32 } from '../../host-function.ts';
import type { WasmValue } from '../../host-function.ts';
import type { HttpRequestData, HttpResponseData } from '../../http-message.ts';
import type { GrpcStreamWrite } from '../../protocol.ts';
import { firstHeaderProblem } from '../../outgoing-headers.ts';
import { Status } from '../abi.ts';
import { deserializePairs, HeaderMap, pairsSize } from '../header-map.ts';
import type { HeaderPairs } from '../header-map.ts';
import type { PluginVm } from '../vm.ts';
import { withinHeaderLimits } from './http-fields.ts';
import type { HostCall } from './index.ts';

export interface GrpcCallInfo {
  kind: 'call' | 'stream';
  service: string;
  method: string;
}

/** What the gRPC callbacks can read while they run. */
export interface GrpcReceived {
  initialMetadata: HeaderMap;
  trailingMetadata: HeaderMap;
  message: Uint8Array;
  status: number;
  statusMessage: string;
}

/** A stream the filter opened and may still write to. */
export interface GrpcStreamDraft {
  contextId: number;
  /** Bytes sent so far, framing included (limit maxBodyBytes per stream). */
  bytes: number;
}

/** A stream write queued in the worker until its step ends (see queueSend). */
export type QueuedStreamWrite = { token: number; kind: 'send'; framed: SendBuffer; end: boolean } | { token: number; kind: 'cancel' };

/**
 * The bytes a step sends on one stream: consecutive sends share one buffer
 * grown by doubling, so a flood of tiny messages costs its bytes (bounded by
 * maxBodyBytes), not an object per message.
 */
export class SendBuffer {
  private bytes = new Uint8Array(0);
  private length = 0;

  append(chunk: Uint8Array): void {
    if (this.length + chunk.length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(2 * this.bytes.length, this.length + chunk.length, 64));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    this.bytes.set(chunk, this.length);
    this.length += chunk.length;
  }

  /** A copy of exactly the bytes written (a view would post its whole, larger, buffer to the main thread). */
  take(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

/** The stream writes of a step, as the main thread gets them. */
export function takeStreamWrites(queued: readonly QueuedStreamWrite[]): GrpcStreamWrite[] {
  return queued.map((write) => (write.kind === 'send' ? { ...write, framed: write.framed.take() } : write));
}

function queueSend(vm: PluginVm, token: number, framed: Uint8Array, end: boolean): void {
  const last = vm.streamWrites.at(-1);
  if (last?.kind === 'send' && last.token === token && !last.end) {
    last.framed.append(framed);
    last.end = end;
    return;
  }
  const buffer = new SendBuffer();
  buffer.append(framed);
  vm.streamWrites.push({ token, kind: 'send', framed: buffer, end });
}

/** Each message goes on the wire behind a flag byte and a 4-byte length. */
const FRAME_PREFIX_BYTES = 5;

/** A call or stream waiting for (more of) its answer. */
export interface PendingCall {
  contextId: number;
  grpc?: GrpcCallInfo;
  /** A stream's initial metadata was delivered (proxy_on_grpc_receive_initial_metadata runs once). */
  initialDelivered?: boolean;
  /** The filter cancelled it, possibly from one of its own callbacks: nothing more is delivered. */
  cancelled?: boolean;
}

/** gRPC status codes the host itself gives (grpc/doc/statuscodes.md). */
export const GrpcCode = { OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, RESOURCE_EXHAUSTED: 8, INTERNAL: 13, UNAVAILABLE: 14 } as const;

/** Metadata Kiln sets itself on every gRPC request (framing and protocol). */
const GRPC_OWNED = new Set(['content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'user-agent']);
/** Service: a dotted name; method: one identifier (the :path is /service/method). */
const SERVICE_NAME = /^[A-Za-z_][A-Za-z0-9_.]{0,255}$/;
const METHOD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

export const grpcCalls: Readonly<Record<string, HostCall>> = {
  // 12 arguments in ABI 0.2.x; 10 (no initial metadata) in ABI 0.1.0, which @solo-io/proxy-runtime still imports.
  proxy_grpc_call: (vm, args) => {
    const withMetadata = args.length >= 12;
    const [upstreamPtr, upstreamSize, servicePtr, serviceSize, methodPtr, methodSize] = args;
    const [metadataPtr, metadataSize] = withMetadata ? [args[6], args[7]] : [0, 0];
    const [messagePtr, messageSize, timeout, tokenPtr] = withMetadata ? args.slice(8) : args.slice(6);
    const target = readTarget(vm, 'proxy_grpc_call', [upstreamPtr, upstreamSize, servicePtr, serviceSize, methodPtr, methodSize, metadataPtr, metadataSize]);
    if (typeof target === 'number') return target;
    const size = i32(messageSize) >>> 0;
    if (size > vm.spec.limits.maxBodyBytes) {
      vm.recorder.limit('maxBodyBytes', `proxy_grpc_call refused: its message is larger than the test bed's ${vm.spec.limits.maxBodyBytes}-byte limit`);
      return Status.INTERNAL_FAILURE;
    }
    if (!callsLeft(vm, 'proxy_grpc_call')) return Status.INTERNAL_FAILURE;
    const message = vm.memory.read(i32(messagePtr), size);
    const info: GrpcCallInfo = { kind: 'call', ...target.names };
    const token = vm.dispatchCall(vm.effectiveContextId, target.upstream, grpcRequest(info, target.metadata, [message]), i32(timeout) >>> 0, info);
    vm.memory.writeU32(i32(tokenPtr), token);
    return Status.OK;
  },
  // 9 arguments in ABI 0.2.x; 7 (no initial metadata) in ABI 0.1.0.
  proxy_grpc_stream: (vm, args) => {
    const withMetadata = args.length >= 9;
    const [upstreamPtr, upstreamSize, servicePtr, serviceSize, methodPtr, methodSize] = args;
    const [metadataPtr, metadataSize] = withMetadata ? [args[6], args[7]] : [0, 0];
    const tokenPtr = withMetadata ? args[8] : args[6];
    const target = readTarget(vm, 'proxy_grpc_stream', [upstreamPtr, upstreamSize, servicePtr, serviceSize, methodPtr, methodSize, metadataPtr, metadataSize]);
    if (typeof target === 'number') return target;
    if (!callsLeft(vm, 'proxy_grpc_stream')) return Status.INTERNAL_FAILURE;
    const info: GrpcCallInfo = { kind: 'stream', ...target.names };
    // Opened (its headers sent) when this step ends; messages follow with proxy_grpc_send.
    const token = vm.dispatchCall(vm.effectiveContextId, target.upstream, grpcRequest(info, target.metadata, []), 0, info);
    vm.grpcStreams.set(token, { contextId: vm.effectiveContextId, bytes: 0 });
    vm.memory.writeU32(i32(tokenPtr), token);
    return Status.OK;
  },
  proxy_grpc_send: (vm, [tokenValue, messagePtr, messageSize, endStream]) => {
    const token = u32(tokenValue);
    const stream = vm.grpcStreams.get(token);
    if (!stream) return vm.pendingCalls.has(token) ? Status.BAD_ARGUMENT : Status.NOT_FOUND;
    const size = i32(messageSize) >>> 0;
    const end = u32(endStream) !== 0;
    // An empty send with end_stream only half-closes; any other send is one message, counted with its
    // 5-byte prefix (what goes on the wire), so that a flood of empty messages is bounded too.
    const wireBytes = size > 0 || !end ? FRAME_PREFIX_BYTES + size : 0;
    if (stream.bytes + wireBytes > vm.spec.limits.maxBodyBytes) {
      vm.recorder.limit('maxBodyBytes', `proxy_grpc_send refused: the stream's messages would exceed the test bed's ${vm.spec.limits.maxBodyBytes}-byte limit`);
      return Status.BAD_ARGUMENT;
    }
    stream.bytes += wireBytes;
    if (end) vm.grpcStreams.delete(token);
    queueSend(vm, token, wireBytes > 0 ? frameMessages([vm.memory.read(i32(messagePtr), size)]) : new Uint8Array(0), end);
    return Status.OK;
  },
  proxy_grpc_cancel: (vm, [tokenValue]) => (forget(vm, u32(tokenValue)) ? Status.OK : Status.NOT_FOUND),
  // Closing a stream half-closes it (Envoy: closeStream); closing a call ends it, as cancelling does.
  proxy_grpc_close: (vm, [tokenValue]) => {
    const token = u32(tokenValue);
    if (vm.grpcStreams.delete(token)) {
      queueSend(vm, token, new Uint8Array(0), true);
      return Status.OK;
    }
    if (vm.pendingCalls.get(token)?.grpc?.kind === 'stream') return Status.OK;
    return forget(vm, token) ? Status.OK : Status.NOT_FOUND;
  },
};

interface Target {
  upstream: string;
  names: { service: string; method: string };
  metadata: HeaderPairs;
}

/** Reads and checks upstream, service, method and metadata; a status when the call cannot be made. */
function readTarget(vm: PluginVm, what: string, [upstreamPtr, upstreamSize, servicePtr, serviceSize, methodPtr, methodSize, metadataPtr, metadataSize]: Array<WasmValue | undefined>): Target | number {
  const upstream = vm.memory.readString(i32(upstreamPtr), i32(upstreamSize));
  const allowed = vm.spec.upstreams.filter((name) => name !== 'echo');
  if (!allowed.includes(upstream)) {
    const names = allowed.length === 0 ? 'none (KILN_TESTBED_UPSTREAMS is empty; the built-in echo upstream does not speak gRPC)' : allowed.map((name) => JSON.stringify(name)).join(', ');
    vm.recorder.note(`${what} to ${JSON.stringify(upstream)} refused: not an allowed upstream; gRPC may reach ${names}`);
    return Status.PARSE_FAILURE;
  }
  const service = vm.memory.readString(i32(servicePtr), i32(serviceSize));
  const method = vm.memory.readString(i32(methodPtr), i32(methodSize));
  if (!SERVICE_NAME.test(service) || !METHOD_NAME.test(method)) {
    vm.recorder.note(`${what} refused: ${JSON.stringify(`${service}/${method}`)} is not a gRPC service and method name`);
    return Status.INTERNAL_FAILURE;
  }
  const metadata = readMetadata(vm, what, metadataPtr, metadataSize);
  if (typeof metadata === 'number') return metadata;
  return { upstream, names: { service, method }, metadata };
}

function readMetadata(vm: PluginVm, what: string, pointer: WasmValue | undefined, size: WasmValue | undefined): HeaderPairs | number {
  const bytes = i32(size) >>> 0;
  if (bytes === 0) return [];
  const { maxHeaderBytes, maxHeaderCount } = vm.spec.limits;
  if (bytes > maxHeaderBytes + 10 * maxHeaderCount + 4) {
    vm.recorder.limit('maxHeaderBytes', `${what} refused: its initial metadata exceeds ${maxHeaderBytes} bytes`);
    return Status.INTERNAL_FAILURE;
  }
  const pairs = deserializePairs(vm.memory.read(i32(pointer), bytes))?.map(([key, value]): [string, string] => [key.toLowerCase(), value]);
  if (pairs === undefined) {
    vm.recorder.note(`${what} refused: its initial metadata is not a well-formed serialized map`);
    return Status.INTERNAL_FAILURE;
  }
  if (!withinHeaderLimits(vm, { count: 0, bytes: 0 }, pairsSize(pairs), what)) return Status.INTERNAL_FAILURE;
  const own = pairs.filter(([key]) => !GRPC_OWNED.has(key));
  const problem = firstHeaderProblem(own);
  if (problem !== undefined) {
    vm.recorder.note(`${what} refused: ${problem}`);
    return Status.INTERNAL_FAILURE;
  }
  return own;
}

/**
 * Calls in flight (HTTP and gRPC, this step's and those still unanswered)
 * stay under maxHttpCalls: counting only this step's would let each answer
 * of a round make maxHttpCalls more, a fan-out that grows by that factor
 * per round.
 */
function callsLeft(vm: PluginVm, what: string): boolean {
  if (vm.pendingCalls.size < vm.spec.limits.maxHttpCalls) return true;
  vm.recorder.limit('maxHttpCalls', `${what} refused: more than ${vm.spec.limits.maxHttpCalls} calls at once`);
  return false;
}

/**
 * Cancels a call or stream: one not yet handed to the main thread is never
 * sent; one in flight is reset there, and nothing more is delivered for it.
 */
function forget(vm: PluginVm, token: number): boolean {
  const pending = vm.pendingCalls.get(token);
  if (!pending?.grpc) return false;
  pending.cancelled = true;
  vm.pendingCalls.delete(token);
  vm.grpcStreams.delete(token);
  const unsent = vm.outgoingCalls.some((call) => call.token === token);
  if (unsent) {
    vm.outgoingCalls = vm.outgoingCalls.filter((call) => call.token !== token);
    vm.streamWrites = vm.streamWrites.filter((write) => write.token !== token);
  } else {
    vm.streamWrites.push({ token, kind: 'cancel' });
  }
  return true;
}

/** The HTTP/2 request of a gRPC call: POST /service/method, the metadata, length-prefixed messages. */
function grpcRequest(info: GrpcCallInfo, metadata: HeaderPairs, messages: Uint8Array[]): HttpRequestData {
  return { method: 'POST', path: `/${info.service}/${info.method}`, authority: '', scheme: 'http', headers: metadata, body: frameMessages(messages), trailers: [] };
}

/** gRPC's length-prefixed messages: a 0 (not compressed) byte, the length (big-endian u32), the bytes. */
export function frameMessages(messages: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(messages.reduce((sum, message) => sum + 5 + message.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const message of messages) {
    view.setUint8(at, 0);
    view.setUint32(at + 1, message.length);
    out.set(message, at + 5);
    at += 5 + message.length;
  }
  return out;
}

/** The messages in a response body; undefined when the framing is broken or a message is compressed. */
export function unframeMessages(body: Uint8Array): Uint8Array[] | undefined {
  const messages: Uint8Array[] = [];
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let at = 0; at < body.length; ) {
    if (at + 5 > body.length || view.getUint8(at) !== 0) return undefined;
    const length = view.getUint32(at + 1);
    if (at + 5 + length > body.length) return undefined;
    messages.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return messages;
}

/**
 * The answer of a gRPC call, or an update of a live stream (null: the main
 * thread could not perform it), as callbacks. The status is the grpc-status
 * trailer (or header, for a trailers-only answer); a response without one is
 * INTERNAL, as gRPC clients treat it.
 */
export function deliverGrpcResponse(vm: PluginVm, token: number, pending: PendingCall, response: HttpResponseData | null, partial: boolean): void {
  const info = pending.grpc;
  if (!info) return;
  const received: GrpcReceived = { initialMetadata: new HeaderMap(response?.headers ?? []), trailingMetadata: new HeaderMap(), message: new Uint8Array(0), status: GrpcCode.OK, statusMessage: '' };
  vm.grpcResponse = received;
  try {
    if (info.kind === 'call') deliverCallAnswer(vm, token, pending.contextId, info, readAnswer(response), received);
    else if (partial) deliverStreamMessages(vm, token, pending, response, unframeMessages(response?.body ?? new Uint8Array(0)) ?? [], received);
    else deliverStreamEnd(vm, token, pending, response, received);
  } finally {
    vm.grpcResponse = undefined;
  }
}

function deliverCallAnswer(vm: PluginVm, token: number, contextId: number, info: GrpcCallInfo, answer: Answer, received: GrpcReceived): void {
  noteStatus(vm, token, info, answer);
  Object.assign(received, { status: answer.status, statusMessage: answer.statusMessage });
  const [first] = answer.messages;
  if (answer.status === GrpcCode.OK && first !== undefined) {
    received.message = first;
    vm.call('proxy_on_grpc_receive', contextId, contextId, token, first.length);
  } else {
    vm.call('proxy_on_grpc_close', contextId, contextId, token, answer.status);
  }
}

/** Initial metadata (once, when the upstream answered at all), then one callback per message. */
function deliverStreamMessages(vm: PluginVm, token: number, pending: PendingCall, response: HttpResponseData | null, messages: Uint8Array[], received: GrpcReceived): void {
  const { contextId } = pending;
  if (!pending.initialDelivered && response !== null && response.status !== 0) {
    pending.initialDelivered = true;
    vm.call('proxy_on_grpc_receive_initial_metadata', contextId, contextId, token, received.initialMetadata.length);
  }
  for (const message of messages) {
    // A callback may cancel the stream: what else arrived is not delivered.
    if (pending.cancelled) return;
    received.message = message;
    vm.call('proxy_on_grpc_receive', contextId, contextId, token, message.length);
  }
  received.message = new Uint8Array(0);
}

/** The stream's last update: its remaining messages, the trailing metadata, then proxy_on_grpc_close with the status. */
function deliverStreamEnd(vm: PluginVm, token: number, pending: PendingCall, response: HttpResponseData | null, received: GrpcReceived): void {
  const { contextId } = pending;
  vm.grpcStreams.delete(token);
  const answer = readAnswer(response);
  noteStatus(vm, token, pending.grpc as GrpcCallInfo, answer);
  Object.assign(received, { status: answer.status, statusMessage: answer.statusMessage });
  deliverStreamMessages(vm, token, pending, response, answer.messages, received);
  vm.pendingCalls.delete(token);
  if (pending.cancelled) return;
  if (answer.trailingMetadata.length > 0) {
    received.trailingMetadata = answer.trailingMetadata;
    // ABI 0.1.0 named it proxy_on_grpc_trailing_metadata; a module exports one or the other.
    const name = vm.has('proxy_on_grpc_receive_trailing_metadata') ? 'proxy_on_grpc_receive_trailing_metadata' : 'proxy_on_grpc_trailing_metadata';
    vm.call(name, contextId, contextId, token, answer.trailingMetadata.length);
  }
  vm.call('proxy_on_grpc_close', contextId, contextId, token, answer.status);
}

function noteStatus(vm: PluginVm, token: number, info: GrpcCallInfo, answer: Answer): void {
  if (answer.hostMadeUp) noteHostLimit(vm, answer.statusMessage);
  if (answer.status !== GrpcCode.OK) vm.recorder.note(`gRPC ${info.kind} ${info.service}/${info.method} (token ${token}) closed with status ${answer.status}${answer.statusMessage ? `: ${answer.statusMessage}` : ''}`);
}

interface Answer {
  initialMetadata: HeaderMap;
  trailingMetadata: HeaderMap;
  messages: Uint8Array[];
  status: number;
  statusMessage: string;
  /** The test bed made the status up (HTTP status 0): a transport failure or one of its limits. */
  hostMadeUp: boolean;
}

function readAnswer(response: HttpResponseData | null): Answer {
  if (response === null) return { initialMetadata: new HeaderMap(), trailingMetadata: new HeaderMap(), messages: [], status: GrpcCode.UNAVAILABLE, statusMessage: 'the test bed could not reach the upstream', hostMadeUp: false };
  const value = (key: string): string | undefined => (response.trailers.find(([k]) => k === key) ?? response.headers.find(([k]) => k === key))?.[1];
  const code = value('grpc-status');
  const messages = unframeMessages(response.body);
  const base = { initialMetadata: new HeaderMap(response.headers), trailingMetadata: new HeaderMap(response.trailers), hostMadeUp: response.status === 0 };
  if (messages === undefined) return { ...base, messages: [], status: GrpcCode.INTERNAL, statusMessage: 'the response is not well-formed gRPC (broken length prefix, or a compressed message)' };
  if (code === undefined || !/^\d{1,2}$/.test(code)) {
    return { ...base, messages, status: GrpcCode.INTERNAL, statusMessage: `the response has no valid grpc-status (HTTP status ${response.status})` };
  }
  return { ...base, messages, status: Number(code), statusMessage: decodeGrpcMessage(value('grpc-message') ?? '') };
}

/** grpc-message is percent-encoded UTF-8. */
function decodeGrpcMessage(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A status the host made up (HTTP status 0) may name the limit that ended the call. */
function noteHostLimit(vm: PluginVm, message: string): void {
  const limit = /\(limit (\w+)\)$/.exec(message)?.[1];
  if (limit !== undefined) vm.recorder.limit(limit, `a gRPC call ended at a test bed limit: ${message}`);
}
