/**
 * proxy_http_call: the call is recorded here and performed by the main
 * thread (workers have no network policy of their own), which then answers
 * through proxy_on_http_call_response. Only upstream names the operator
 * allowed (and the built-in echo) can be called, and only with headers that
 * cannot smuggle anything (outgoing-headers.ts): names are lower-cased and
 * validated, and Kiln-owned headers (Host, Content-Length, ...) are refused.
 */
import { i32 } from '../../host-function.ts';
import { requestFromPairs } from '../../http-message.ts';
import type { HttpRequestData } from '../../http-message.ts';
import { Status } from '../abi.ts';
import { firstHeaderProblem, methodProblem, pathProblem } from '../../outgoing-headers.ts';
import { deserializePairs, pairsSize } from '../header-map.ts';
import type { HeaderPairs } from '../header-map.ts';
import { withinHeaderLimits } from './http-fields.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';
import { returned } from './returned.ts';

const REQUIRED = [':method', ':path', ':authority'];
const PSEUDO: ReadonlySet<string> = new Set([':method', ':path', ':authority', ':scheme']);
const BLANK: HttpRequestData = { method: 'GET', path: '/', authority: '', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] };

export const httpCalls: Readonly<Record<string, HostCall>> = {
  proxy_http_call: (vm, [upstreamPtr, upstreamSize, headersPtr, headersSize, bodyPtr, bodySize, trailersPtr, trailersSize, timeout, tokenPtr]) => {
    const upstream = vm.memory.readString(i32(upstreamPtr), i32(upstreamSize));
    const { maxBodyBytes, maxHeaderBytes, maxHeaderCount } = vm.spec.limits;
    if (i32(bodySize) >>> 0 > maxBodyBytes) {
      vm.recorder.limit('maxBodyBytes', `proxy_http_call refused: its body is larger than the test bed's ${maxBodyBytes}-byte limit`);
      return Status.BAD_ARGUMENT;
    }
    // The serialized maps hold the keys and values plus 8 bytes per pair and a count.
    const serializedMax = maxHeaderBytes + 10 * maxHeaderCount + 4;
    if (i32(headersSize) >>> 0 > serializedMax || i32(trailersSize) >>> 0 > serializedMax) {
      vm.recorder.limit('maxHeaderBytes', `proxy_http_call refused: its headers or trailers exceed ${maxHeaderBytes} bytes`);
      return Status.BAD_ARGUMENT;
    }
    const headers = normalized(deserializePairs(vm.memory.read(i32(headersPtr), i32(headersSize))));
    const trailers = normalized(deserializePairs(vm.memory.read(i32(trailersPtr), i32(trailersSize))));
    const body = vm.memory.read(i32(bodyPtr), i32(bodySize));
    const refusal = refuse(vm, upstream, headers, trailers);
    if (refusal !== undefined) {
      vm.recorder.note(`proxy_http_call to ${JSON.stringify(upstream)} refused: ${refusal.why}`);
      return refusal.status;
    }
    const request = requestFromPairs(headers ?? [], BLANK, body, trailers ?? []);
    const token = vm.dispatchCall(vm.effectiveContextId, upstream, request, i32(timeout) >>> 0);
    vm.memory.writeU32(i32(tokenPtr), token);
    return Status.OK;
  },
  proxy_get_status: (vm, [codePtr, messagePtrPtr, messageSizePtr]) => {
    // In a gRPC callback: the gRPC status and its grpc-message.
    if (vm.grpcResponse) {
      vm.memory.writeU32(i32(codePtr), vm.grpcResponse.status);
      return returned(vm, new TextEncoder().encode(vm.grpcResponse.statusMessage), i32(messagePtrPtr), i32(messageSizePtr));
    }
    if (!vm.callResponse) return Status.NOT_FOUND;
    vm.memory.writeU32(i32(codePtr), vm.callResponse.status);
    return returned(vm, new Uint8Array(0), i32(messagePtrPtr), i32(messageSizePtr));
  },
};

const normalized = (pairs: HeaderPairs | undefined): HeaderPairs | undefined => pairs?.map(([key, value]) => [key.toLowerCase(), value]);

function refuse(vm: PluginVm, upstream: string, headers: HeaderPairs | undefined, trailers: HeaderPairs | undefined): { status: number; why: string } | undefined {
  if (!vm.spec.upstreams.includes(upstream)) {
    return { status: Status.BAD_ARGUMENT, why: `unknown upstream; this test bed allows ${vm.spec.upstreams.map((name) => JSON.stringify(name)).join(', ')}` };
  }
  if (headers === undefined || trailers === undefined) return { status: Status.BAD_ARGUMENT, why: 'the headers or trailers are not a well-formed serialized map' };
  if (!withinHeaderLimits(vm, { count: 0, bytes: 0 }, pairsSize(headers), 'proxy_http_call') || !withinHeaderLimits(vm, { count: 0, bytes: 0 }, pairsSize(trailers), 'proxy_http_call')) {
    return { status: Status.BAD_ARGUMENT, why: 'its headers or trailers are over the header limits' };
  }
  const missing = REQUIRED.filter((key) => !headers.some(([k]) => k === key));
  if (missing.length > 0) return { status: Status.BAD_ARGUMENT, why: `the headers lack ${missing.join(', ')}` };
  const problem = firstHeaderProblem(headers, PSEUDO) ?? firstHeaderProblem(trailers) ?? methodProblem(pseudo(headers, ':method')) ?? pathProblem(pseudo(headers, ':path'));
  if (problem !== undefined) return { status: Status.BAD_ARGUMENT, why: problem };
  // Calls in flight, not only this step's: each response of a round could otherwise make maxHttpCalls more (fan-out).
  if (vm.pendingCalls.size >= vm.spec.limits.maxHttpCalls) {
    vm.recorder.limit('maxHttpCalls', `proxy_http_call refused: more than ${vm.spec.limits.maxHttpCalls} calls at once`);
    return { status: Status.INTERNAL_FAILURE, why: `more than ${vm.spec.limits.maxHttpCalls} calls at once` };
  }
  return undefined;
}

/** A pseudo-header's single value; a repeated one is refused (which of two :path values would be sent?). */
function pseudo(headers: HeaderPairs, key: string): string {
  const values = headers.filter(([k]) => k === key);
  return values.length === 1 ? (values[0]?.[1] ?? '') : `${values.length} ${key} headers`;
}
