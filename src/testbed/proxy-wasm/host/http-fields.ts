/**
 * Header and trailer maps. Which map a call reaches depends on the effective
 * context: request/response maps belong to a stream, the HTTP call response
 * maps exist while proxy_on_http_call_response runs, the gRPC metadata maps
 * while a gRPC callback runs.
 */
import { i32, u32 } from '../../host-function.ts';
import type { WasmValue } from '../../host-function.ts';
import { MapType, Status } from '../abi.ts';
import type { HeaderMap, MapSize } from '../header-map.ts';
import { deserializePairs, pairsSize } from '../header-map.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';
import { returned } from './returned.ts';

const encoder = new TextEncoder();

interface MapLookup {
  map?: HeaderMap;
  status: number;
  writable: boolean;
}

function lookup(vm: PluginVm, mapType: number): MapLookup {
  const stream = vm.effectiveStream();
  switch (mapType) {
    case MapType.HTTP_REQUEST_HEADERS:
      return stream ? { map: stream.request.headers, status: Status.OK, writable: true } : notFound;
    case MapType.HTTP_REQUEST_TRAILERS:
      return stream ? { map: stream.request.trailers, status: Status.OK, writable: true } : notFound;
    case MapType.HTTP_RESPONSE_HEADERS:
      return stream?.response ? { map: stream.response.headers, status: Status.OK, writable: true } : notFound;
    case MapType.HTTP_RESPONSE_TRAILERS:
      return stream?.response ? { map: stream.response.trailers, status: Status.OK, writable: true } : notFound;
    case MapType.HTTP_CALL_RESPONSE_HEADERS:
      return vm.callResponse ? { map: vm.callResponse.headers, status: Status.OK, writable: false } : notFound;
    case MapType.HTTP_CALL_RESPONSE_TRAILERS:
      return vm.callResponse ? { map: vm.callResponse.trailers, status: Status.OK, writable: false } : notFound;
    case MapType.GRPC_CALL_INITIAL_METADATA:
      return vm.grpcResponse ? { map: vm.grpcResponse.initialMetadata, status: Status.OK, writable: false } : notFound;
    case MapType.GRPC_CALL_TRAILING_METADATA:
      return vm.grpcResponse ? { map: vm.grpcResponse.trailingMetadata, status: Status.OK, writable: false } : notFound;
    default:
      return { status: Status.BAD_ARGUMENT, writable: false };
  }
}

const notFound: MapLookup = { status: Status.NOT_FOUND, writable: false };

/**
 * A change may not take a map past maxHeaderCount pairs or maxHeaderBytes
 * of keys and values (Envoy's 100 headers and 60 KiB by default). A map that
 * arrived bigger may still shrink: only growth past a limit is refused.
 */
export function withinHeaderLimits(vm: PluginVm, before: MapSize, after: MapSize, what: string): boolean {
  const { maxHeaderCount, maxHeaderBytes } = vm.spec.limits;
  if (after.count > maxHeaderCount && after.count > before.count) {
    vm.recorder.limit('maxHeaderCount', `${what} refused: a header map may hold ${maxHeaderCount} fields`);
    return false;
  }
  if (after.bytes > maxHeaderBytes && after.bytes > before.bytes) {
    vm.recorder.limit('maxHeaderBytes', `${what} refused: a header map may hold ${maxHeaderBytes} bytes of keys and values`);
    return false;
  }
  return true;
}

/** Refuses sizes past the byte limit before reading them out of guest memory. */
function tooBig(vm: PluginVm, what: string, ...lengths: Array<WasmValue | undefined>): boolean {
  const bytes = lengths.reduce<number>((total, length) => total + (i32(length) >>> 0), 0);
  return !withinHeaderLimits(vm, { count: 0, bytes: 0 }, { count: 0, bytes }, what);
}

/** Runs `change` on a writable map, or answers why not. */
function modify(vm: PluginVm, mapType: number, change: (map: HeaderMap) => number): number {
  const found = lookup(vm, mapType);
  if (!found.map) return found.status;
  if (!found.writable) return Status.BAD_ARGUMENT;
  return change(found.map);
}

const text = (vm: PluginVm, pointer: WasmValue | undefined, size: WasmValue | undefined): string => vm.memory.readString(i32(pointer), i32(size));

export const httpFieldCalls: Readonly<Record<string, HostCall>> = {
  proxy_get_header_map_value: (vm, [mapType, keyPtr, keySize, valuePtrPtr, valueSizePtr]) => {
    const found = lookup(vm, u32(mapType));
    if (!found.map) return found.status;
    const value = found.map.get(text(vm, keyPtr, keySize));
    if (value === undefined) return Status.NOT_FOUND;
    return returned(vm, encoder.encode(value), i32(valuePtrPtr), i32(valueSizePtr));
  },
  proxy_add_header_map_value: (vm, [mapType, keyPtr, keySize, valuePtr, valueSize]) => {
    if (tooBig(vm, 'proxy_add_header_map_value', keySize, valueSize)) return Status.BAD_ARGUMENT;
    return modify(vm, u32(mapType), (map) => {
      const key = text(vm, keyPtr, keySize);
      const value = text(vm, valuePtr, valueSize);
      const before = map.size();
      const after = { count: before.count + 1, bytes: before.bytes + Buffer.byteLength(key) + Buffer.byteLength(value) };
      if (!withinHeaderLimits(vm, before, after, 'proxy_add_header_map_value')) return Status.BAD_ARGUMENT;
      map.add(key, value);
      return Status.OK;
    });
  },
  proxy_replace_header_map_value: (vm, [mapType, keyPtr, keySize, valuePtr, valueSize]) => {
    if (tooBig(vm, 'proxy_replace_header_map_value', keySize, valueSize)) return Status.BAD_ARGUMENT;
    return modify(vm, u32(mapType), (map) => {
      const key = text(vm, keyPtr, keySize);
      const value = text(vm, valuePtr, valueSize);
      const rest = map.sizeWithout(key);
      const after = { count: rest.count + 1, bytes: rest.bytes + Buffer.byteLength(key) + Buffer.byteLength(value) };
      if (!withinHeaderLimits(vm, map.size(), after, 'proxy_replace_header_map_value')) return Status.BAD_ARGUMENT;
      map.replace(key, value);
      return Status.OK;
    });
  },
  proxy_remove_header_map_value: (vm, [mapType, keyPtr, keySize]) =>
    modify(vm, u32(mapType), (map) => {
      map.remove(text(vm, keyPtr, keySize));
      return Status.OK;
    }),
  proxy_get_header_map_pairs: (vm, [mapType, dataPtrPtr, sizePtr]) => {
    const found = lookup(vm, u32(mapType));
    if (!found.map) return found.status;
    return returned(vm, found.map.serialize(), i32(dataPtrPtr), i32(sizePtr));
  },
  proxy_set_header_map_pairs: (vm, [mapType, dataPtr, size]) => {
    // The serialized form is the keys and values plus 8 bytes per pair and the count: a cheap first bound.
    const { maxHeaderBytes, maxHeaderCount } = vm.spec.limits;
    if (i32(size) >>> 0 > maxHeaderBytes + 10 * maxHeaderCount + 4) {
      vm.recorder.limit('maxHeaderBytes', `proxy_set_header_map_pairs refused: a header map may hold ${maxHeaderBytes} bytes of keys and values`);
      return Status.BAD_ARGUMENT;
    }
    const pairs = deserializePairs(vm.memory.read(i32(dataPtr), i32(size)));
    if (pairs === undefined) return Status.BAD_ARGUMENT;
    return modify(vm, u32(mapType), (map) => {
      if (!withinHeaderLimits(vm, map.size(), pairsSize(pairs), 'proxy_set_header_map_pairs')) return Status.BAD_ARGUMENT;
      map.setAll(pairs);
      return Status.OK;
    });
  },
  proxy_get_header_map_size: (vm, [mapType, sizePtr]) => {
    const found = lookup(vm, u32(mapType));
    if (!found.map) return found.status;
    vm.memory.writeU32(i32(sizePtr), found.map.serialize().length);
    return Status.OK;
  },
};
