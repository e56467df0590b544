/**
 * proxy_http_call: the call is recorded here and performed by the main
 * thread (workers have no network policy of their own), which then answers
 * through proxy_on_http_call_response. Only upstream names the operator
 * allowed (and the built-in echo) can be called.
 */
import { i32 } from '../../host-function.ts';
import { requestFromPairs } from '../../http-message.ts';
import type { HttpRequestData } from '../../http-message.ts';
import { Status } from '../abi.ts';
import { deserializePairs } from '../header-map.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';
import { returned } from './index.ts';

const REQUIRED = [':method', ':path', ':authority'];
const BLANK: HttpRequestData = { method: 'GET', path: '/', authority: '', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] };

export function httpCallImports(vm: PluginVm): Record<string, HostCall> {
  return {
    proxy_http_call: ([upstreamPtr, upstreamSize, headersPtr, headersSize, bodyPtr, bodySize, trailersPtr, trailersSize, timeout, tokenPtr]) => {
      const upstream = vm.memory.readString(i32(upstreamPtr), i32(upstreamSize));
      const headers = deserializePairs(vm.memory.read(i32(headersPtr), i32(headersSize)));
      const trailers = deserializePairs(vm.memory.read(i32(trailersPtr), i32(trailersSize)));
      if (i32(bodySize) >>> 0 > vm.spec.limits.maxBodyBytes) {
        vm.recorder.note(`proxy_http_call refused: its body is larger than the test bed's ${vm.spec.limits.maxBodyBytes}-byte limit`);
        return Status.BAD_ARGUMENT;
      }
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
    proxy_get_status: ([codePtr, messagePtrPtr, messageSizePtr]) => {
      if (!vm.callResponse) return Status.NOT_FOUND;
      vm.memory.writeU32(i32(codePtr), vm.callResponse.status);
      return returned(vm, new Uint8Array(0), i32(messagePtrPtr), i32(messageSizePtr));
    },
  };
}

function refuse(vm: PluginVm, upstream: string, headers: Array<[string, string]> | undefined, trailers: unknown): { status: number; why: string } | undefined {
  if (!vm.spec.upstreams.includes(upstream)) {
    return { status: Status.BAD_ARGUMENT, why: `unknown upstream; this test bed allows ${vm.spec.upstreams.map((name) => JSON.stringify(name)).join(', ')}` };
  }
  if (headers === undefined || trailers === undefined) return { status: Status.BAD_ARGUMENT, why: 'the headers or trailers are not a well-formed serialized map' };
  const missing = REQUIRED.filter((key) => !headers.some(([k]) => k.toLowerCase() === key));
  if (missing.length > 0) return { status: Status.BAD_ARGUMENT, why: `the headers lack ${missing.join(', ')}` };
  const path = headers.find(([k]) => k === ':path')?.[1] ?? '';
  if (!path.startsWith('/')) return { status: Status.BAD_ARGUMENT, why: ':path must start with "/"' };
  if (vm.outgoingCalls.length >= vm.spec.limits.maxHttpCalls) {
    return { status: Status.INTERNAL_FAILURE, why: `more than ${vm.spec.limits.maxHttpCalls} calls at once` };
  }
  return undefined;
}
