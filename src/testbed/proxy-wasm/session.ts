/**
 * The order in which a proxy calls a filter for one HTTP exchange, as Envoy
 * does it: request headers, body, trailers; then (after the upstream
 * answered) response headers, body, trailers; then done, log, delete.
 *
 * Pause semantics follow Envoy too: PAUSE from the headers callback holds
 * the headers back but the body callback still runs (a filter that wants
 * the whole request pauses on headers and continues from the body). The
 * phase proceeds when the last callback returned CONTINUE or the filter
 * called proxy_continue_stream; otherwise it stays paused (waiting for an
 * HTTP call, typically).
 *
 * A local response sent while the request is processed goes through the
 * filter's response callbacks, as Envoy sends local replies through the
 * encoder filters.
 */
import type { HttpResponseData } from '../http-message.ts';
import { requestFromPairs, responseFromPairs } from '../http-message.ts';
import type { FilterStep } from '../protocol.ts';
import { Action } from './abi.ts';
import { HeaderMap } from './header-map.ts';
import { deliverGrpcResponse } from './host/grpc-calls.ts';
import type { StreamState } from './stream.ts';
import type { PluginVm } from './vm.ts';

/** Calls one request/response callback and records whether it paused. */
function deliver(vm: PluginVm, stream: StreamState, name: string, ...args: number[]): void {
  if (stream.localResponse !== undefined || stream.closed || !vm.has(name)) return;
  const action = vm.call(name, stream.id, stream.id, ...args);
  if (action === Action.PAUSE) {
    stream.paused = true;
    stream.continued = false;
    stream.pausedIn = name;
  } else {
    stream.paused = false;
  }
}

export function runRequestPhase(vm: PluginVm, stream: StreamState): void {
  const { request } = stream;
  const hasBody = request.body.length > 0;
  const hasTrailers = request.trailers.length > 0;
  deliver(vm, stream, 'proxy_on_request_headers', request.headers.length, flag(!hasBody && !hasTrailers));
  if (hasBody) deliver(vm, stream, 'proxy_on_request_body', request.body.length, flag(!hasTrailers));
  if (hasTrailers) deliver(vm, stream, 'proxy_on_request_trailers', request.trailers.length);
  vm.deliverQueueReady();
  answerLocallyThroughResponsePhase(vm, stream);
}

export function runResponsePhase(vm: PluginVm, stream: StreamState, response: HttpResponseData): void {
  stream.beginResponse(response);
  const fields = stream.response;
  if (!fields) return;
  const hasBody = fields.body.length > 0;
  const hasTrailers = fields.trailers.length > 0;
  deliver(vm, stream, 'proxy_on_response_headers', fields.headers.length, flag(!hasBody && !hasTrailers));
  if (hasBody) deliver(vm, stream, 'proxy_on_response_body', fields.body.length, flag(!hasTrailers));
  if (hasTrailers) deliver(vm, stream, 'proxy_on_response_trailers', fields.trailers.length);
  vm.deliverQueueReady();
}

/** A local response sent during the request phase becomes the response the filter's response callbacks see. */
function answerLocallyThroughResponsePhase(vm: PluginVm, stream: StreamState): void {
  const local = stream.localResponse;
  if (local === undefined || stream.phase !== 'request') return;
  stream.localResponse = undefined;
  stream.sentLocally = local;
  runResponsePhase(vm, stream, { status: local.status, headers: local.headers, body: local.body, trailers: [] });
}

/**
 * Hands an HTTP or gRPC call's response (null: the call failed) to the
 * context that made it. `partial`: an update of a live gRPC stream, which
 * stays pending until its final update.
 */
export function deliverCallResponse(vm: PluginVm, token: number, response: HttpResponseData | null, partial = false): void {
  const pending = vm.pendingCalls.get(token);
  if (!pending) return;
  // A stream stays pending through its final update's messages (a callback may still cancel it).
  if (!partial && pending.grpc?.kind !== 'stream') vm.pendingCalls.delete(token);
  if (pending.grpc) deliverGrpcResponse(vm, token, pending, response, partial);
  else deliverHttpCallResponse(vm, token, pending.contextId, response);
  vm.deliverQueueReady();
  const stream = vm.streams.get(pending.contextId);
  if (stream) answerLocallyThroughResponsePhase(vm, stream);
}

function deliverHttpCallResponse(vm: PluginVm, token: number, contextId: number, response: HttpResponseData | null): void {
  const headers = response ? new HeaderMap([[':status', String(response.status)], ...response.headers]) : new HeaderMap();
  vm.callResponse = { status: response?.status ?? 0, headers, body: response?.body ?? new Uint8Array(0), trailers: new HeaderMap(response?.trailers ?? []) };
  try {
    vm.call('proxy_on_http_call_response', contextId, contextId, token, headers.length, vm.callResponse.body.length, vm.callResponse.trailers.length);
  } finally {
    vm.callResponse = undefined;
  }
}

export function stepFor(vm: PluginVm, stream: StreamState): Omit<FilterStep, 'calls' | 'streamWrites' | 'recording'> {
  const base = { vmKey: vm.spec.key, contextId: stream.id };
  if (stream.closed) return { ...base, state: 'closed' };
  if (stream.localResponse !== undefined) return { ...base, state: 'respond', localResponse: stream.localResponse };
  if (!stream.proceeds) return { ...base, state: 'paused', pausedIn: stream.pausedIn ?? 'a callback' };
  if (stream.phase === 'request') {
    const { request } = stream;
    return { ...base, state: 'forward', request: requestFromPairs(request.headers.pairs(), stream.originalRequest, request.body, request.trailers.pairs()) };
  }
  const fields = stream.response;
  const response = fields ? responseFromPairs(fields.headers.pairs(), 200, fields.body, fields.trailers.pairs()) : undefined;
  return { ...base, state: 'complete', ...(response ? { response } : {}), ...(stream.sentLocally ? { localResponse: stream.sentLocally } : {}) };
}

/** proxy_on_done, proxy_on_log, proxy_on_delete, then the stream is gone. */
export function finishStream(vm: PluginVm, stream: StreamState): void {
  stream.phase = 'done';
  if (vm.call('proxy_on_done', stream.id, stream.id) === 0) {
    stream.awaitingDone = true;
    vm.recorder.note('proxy_on_done returned false; the test bed finishes the stream anyway instead of waiting for proxy_done');
  }
  vm.call('proxy_on_log', stream.id, stream.id);
  vm.call('proxy_on_delete', stream.id, stream.id);
  vm.deliverQueueReady();
  vm.streams.delete(stream.id);
}

const flag = (value: boolean): number => (value ? 1 : 0);

