/**
 * Header and trailer maps. Which map a call reaches depends on the effective
 * context: request/response maps belong to a stream, the HTTP call response
 * maps exist while proxy_on_http_call_response runs.
 */
import { i32, u32 } from '../../host-function.ts';
import type { WasmValue } from '../../host-function.ts';
import { MapType, Status } from '../abi.ts';
import type { HeaderMap } from '../header-map.ts';
import { deserializePairs } from '../header-map.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';
import { returned } from './index.ts';

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
    case MapType.GRPC_CALL_TRAILING_METADATA:
      return notFound;
    default:
      return { status: Status.BAD_ARGUMENT, writable: false };
  }
}

const notFound: MapLookup = { status: Status.NOT_FOUND, writable: false };

/** Bounds on header maps a filter builds: more than any real request has, little enough for the host. */
const MAX_FIELDS = 1000;
const MAX_FIELD_BYTES = 64 * 1024;

function fits(vm: PluginVm, pairs: number, ...lengths: Array<WasmValue | undefined>): boolean {
  const bytes = lengths.reduce<number>((total, length) => total + (i32(length) >>> 0), 0);
  if (pairs <= MAX_FIELDS && bytes <= MAX_FIELD_BYTES) return true;
  vm.recorder.note(`a header change was refused: the test bed allows ${MAX_FIELDS} fields of at most ${MAX_FIELD_BYTES} bytes per map`);
  return false;
}

/** Runs `change` on a writable map, or answers why not. */
function modify(vm: PluginVm, mapType: number, change: (map: HeaderMap) => void): number {
  const found = lookup(vm, mapType);
  if (!found.map) return found.status;
  if (!found.writable) return Status.BAD_ARGUMENT;
  change(found.map);
  return Status.OK;
}

export function httpFieldImports(vm: PluginVm): Record<string, HostCall> {
  const text = (pointer: WasmValue | undefined, size: WasmValue | undefined): string => vm.memory.readString(i32(pointer), i32(size));
  return {
    proxy_get_header_map_value: ([mapType, keyPtr, keySize, valuePtrPtr, valueSizePtr]) => {
      const found = lookup(vm, u32(mapType));
      if (!found.map) return found.status;
      const value = found.map.get(text(keyPtr, keySize));
      if (value === undefined) return Status.NOT_FOUND;
      return returned(vm, encoder.encode(value), i32(valuePtrPtr), i32(valueSizePtr));
    },
    proxy_add_header_map_value: ([mapType, keyPtr, keySize, valuePtr, valueSize]) => {
      const size = lookup(vm, u32(mapType)).map?.length ?? 0;
      if (!fits(vm, size + 1, keySize, valueSize)) return Status.BAD_ARGUMENT;
      return modify(vm, u32(mapType), (map) => map.add(text(keyPtr, keySize), text(valuePtr, valueSize)));
    },
    proxy_replace_header_map_value: ([mapType, keyPtr, keySize, valuePtr, valueSize]) => {
      if (!fits(vm, 0, keySize, valueSize)) return Status.BAD_ARGUMENT;
      return modify(vm, u32(mapType), (map) => map.replace(text(keyPtr, keySize), text(valuePtr, valueSize)));
    },
    proxy_remove_header_map_value: ([mapType, keyPtr, keySize]) => modify(vm, u32(mapType), (map) => map.remove(text(keyPtr, keySize))),
    proxy_get_header_map_pairs: ([mapType, dataPtrPtr, sizePtr]) => {
      const found = lookup(vm, u32(mapType));
      if (!found.map) return found.status;
      return returned(vm, found.map.serialize(), i32(dataPtrPtr), i32(sizePtr));
    },
    proxy_set_header_map_pairs: ([mapType, dataPtr, size]) => {
      const pairs = deserializePairs(vm.memory.read(i32(dataPtr), i32(size)));
      if (pairs === undefined || !pairs.every(([k, v]) => fits(vm, pairs.length, k.length, v.length))) return Status.BAD_ARGUMENT;
      return modify(vm, u32(mapType), (map) => map.setAll(pairs));
    },
    proxy_get_header_map_size: ([mapType, sizePtr]) => {
      const found = lookup(vm, u32(mapType));
      if (!found.map) return found.status;
      vm.memory.writeU32(i32(sizePtr), found.map.serialize().length);
      return Status.OK;
    },
  };
}
