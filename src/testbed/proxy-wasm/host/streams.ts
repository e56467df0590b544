/**
 * Stream control (continue, close, local responses) and context lifecycle
 * (proxy_done, proxy_set_effective_context), plus the odds and ends of the
 * ABI that have nothing to act on in a test bed.
 */
import { i32, u32 } from '../../host-function.ts';
import { Status, StreamType } from '../abi.ts';
import { deserializePairs, pairsSize } from '../header-map.ts';
import { withinHeaderLimits } from './http-fields.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';

function continueStream(vm: PluginVm, type: number): number {
  if (type === StreamType.DOWNSTREAM || type === StreamType.UPSTREAM) return Status.UNIMPLEMENTED;
  if (type !== StreamType.HTTP_REQUEST && type !== StreamType.HTTP_RESPONSE) return Status.BAD_ARGUMENT;
  const stream = vm.effectiveStream();
  if (!stream) return Status.NOT_FOUND;
  // Resuming a phase that is not (or no longer) current changes nothing.
  if ((type === StreamType.HTTP_REQUEST) === (stream.phase === 'request')) stream.continued = true;
  return Status.OK;
}

function closeStream(vm: PluginVm, type: number): number {
  if (type === StreamType.DOWNSTREAM || type === StreamType.UPSTREAM) return Status.UNIMPLEMENTED;
  if (type !== StreamType.HTTP_REQUEST && type !== StreamType.HTTP_RESPONSE) return Status.BAD_ARGUMENT;
  const stream = vm.effectiveStream();
  if (!stream) return Status.NOT_FOUND;
  stream.closed = true;
  return Status.OK;
}

export const streamCalls: Readonly<Record<string, HostCall>> = {
  proxy_continue_stream: (vm, [type]) => continueStream(vm, u32(type)),
  proxy_close_stream: (vm, [type]) => closeStream(vm, u32(type)),
  proxy_continue_request: (vm) => continueStream(vm, StreamType.HTTP_REQUEST),
  proxy_continue_response: (vm) => continueStream(vm, StreamType.HTTP_RESPONSE),
  proxy_send_local_response: (vm, [status, detailsPtr, detailsSize, bodyPtr, bodySize, headersPtr, headersSize, grpcStatus]) => {
    const stream = vm.effectiveStream();
    if (!stream || stream.phase === 'done') return Status.BAD_ARGUMENT;
    const code = u32(status);
    if (i32(bodySize) >>> 0 > vm.spec.limits.maxBodyBytes) {
      vm.recorder.limit('maxBodyBytes', `proxy_send_local_response refused: its body is larger than ${vm.spec.limits.maxBodyBytes} bytes`);
      return Status.BAD_ARGUMENT;
    }
    const headers = deserializePairs(vm.memory.read(i32(headersPtr), i32(headersSize)));
    if (code < 100 || code > 999 || headers === undefined) return Status.BAD_ARGUMENT;
    if (!withinHeaderLimits(vm, { count: 0, bytes: 0 }, pairsSize(headers), 'proxy_send_local_response')) return Status.BAD_ARGUMENT;
    stream.localResponse = {
      status: code,
      details: vm.memory.readString(i32(detailsPtr), i32(detailsSize)),
      headers: headers.filter(([key]) => !key.startsWith(':')).map(([key, value]) => [key.toLowerCase(), value]),
      body: vm.memory.read(i32(bodyPtr), i32(bodySize)),
      grpcStatus: i32(grpcStatus),
      sentFrom: vm.currentCallback ?? 'unknown',
    };
    return Status.OK;
  },
  proxy_done: (vm) => {
    const stream = vm.effectiveStream();
    if (!stream?.awaitingDone) return Status.NOT_FOUND;
    stream.awaitingDone = false;
    return Status.OK;
  },
  proxy_set_effective_context: (vm, [id]) => {
    const contextId = u32(id);
    if (!vm.isContext(contextId)) return Status.BAD_ARGUMENT;
    vm.effectiveContextId = contextId;
    return Status.OK;
  },
  // There is no route cache in the test bed: clearing it always succeeds.
  proxy_clear_route_cache: () => Status.OK,
  // No foreign functions are registered on this host.
  proxy_call_foreign_function: () => Status.NOT_FOUND,
};
