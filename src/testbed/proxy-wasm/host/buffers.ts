/**
 * Buffers: request and response bodies (read and write), the HTTP call
 * response body and gRPC message, and the VM and plugin configurations (read only).
 */
import { i32, u32 } from '../../host-function.ts';
import { BufferType, Status } from '../abi.ts';
import type { HttpFields } from '../stream.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';
import { returned } from './returned.ts';

interface BufferLookup {
  data?: Uint8Array;
  /** Where a write goes, for the writable buffers (the bodies). */
  owner?: HttpFields;
  status: number;
}

function lookup(vm: PluginVm, type: number): BufferLookup {
  const stream = vm.effectiveStream();
  switch (type) {
    case BufferType.HTTP_REQUEST_BODY:
      return stream ? { data: stream.request.body, owner: stream.request, status: Status.OK } : { status: Status.NOT_FOUND };
    case BufferType.HTTP_RESPONSE_BODY:
      return stream?.response ? { data: stream.response.body, owner: stream.response, status: Status.OK } : { status: Status.NOT_FOUND };
    case BufferType.HTTP_CALL_RESPONSE_BODY:
      return vm.callResponse ? { data: vm.callResponse.body, status: Status.OK } : { status: Status.NOT_FOUND };
    case BufferType.VM_CONFIGURATION:
      return { data: vm.spec.vmConfig, status: Status.OK };
    case BufferType.PLUGIN_CONFIGURATION:
      return { data: vm.spec.pluginConfig, status: Status.OK };
    case BufferType.GRPC_CALL_MESSAGE:
      return vm.grpcResponse ? { data: vm.grpcResponse.message, status: Status.OK } : { status: Status.NOT_FOUND };
    case BufferType.DOWNSTREAM_DATA:
    case BufferType.UPSTREAM_DATA:
    case BufferType.FOREIGN_FUNCTION_ARGUMENTS:
      // TCP streams and foreign functions do not exist on this host.
      return { status: Status.NOT_FOUND };
    default:
      return { status: Status.BAD_ARGUMENT };
  }
}

/** `size` bytes at `start` replaced by `value`; a start at or past the end appends. */
export function splice(data: Uint8Array, start: number, size: number, value: Uint8Array): Uint8Array {
  const from = Math.min(start, data.length);
  const to = Math.min(from + size, data.length);
  const out = new Uint8Array(from + value.length + (data.length - to));
  out.set(data.subarray(0, from), 0);
  out.set(value, from);
  out.set(data.subarray(to), from + value.length);
  return out;
}

export const bufferCalls: Readonly<Record<string, HostCall>> = {
  proxy_get_buffer_bytes: (vm, [type, start, maxSize, dataPtrPtr, sizePtr]) => {
    const found = lookup(vm, u32(type));
    if (!found.data) return found.status;
    const from = u32(start);
    if (from > found.data.length) return Status.BAD_ARGUMENT;
    return returned(vm, found.data.subarray(from, from + u32(maxSize)), i32(dataPtrPtr), i32(sizePtr));
  },
  proxy_get_buffer_status: (vm, [type, sizePtr, flagsPtr]) => {
    const found = lookup(vm, u32(type));
    if (!found.data) return found.status;
    vm.memory.writeU32(i32(sizePtr), found.data.length);
    vm.memory.writeU32(i32(flagsPtr), 0);
    return Status.OK;
  },
  proxy_set_buffer_bytes: (vm, [type, start, size, valuePtr, valueSize]) => {
    const found = lookup(vm, u32(type));
    if (!found.data) return found.status;
    if (!found.owner) return Status.BAD_ARGUMENT;
    const body = splice(found.data, u32(start), u32(size), vm.memory.read(i32(valuePtr), i32(valueSize)));
    if (body.length > vm.spec.limits.maxBodyBytes) {
      vm.recorder.limit('maxBodyBytes', `a body was not changed: it would exceed the test bed's ${vm.spec.limits.maxBodyBytes}-byte limit`);
      return Status.BAD_ARGUMENT;
    }
    found.owner.body = body;
    return Status.OK;
  },
  // ABI 0.1.0's way to read the plugin configuration; older SDKs still call it.
  proxy_get_configuration: (vm, [dataPtrPtr, sizePtr]) => returned(vm, vm.spec.pluginConfig, i32(dataPtrPtr), i32(sizePtr)),
};
