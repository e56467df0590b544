// A proxy-wasm HTTP filter on the raw Proxy-Wasm ABI 0.2.1 (no SDK yet):
// adds `x-kiln: hello` to every response and logs that it did.
import { proxy_add_header_map_value, proxy_log } from './env';

const LOG_INFO: i32 = 2;
const RESPONSE_HEADERS: i32 = 2;
const ACTION_CONTINUE: u32 = 0;

function log(message: string): void {
  const bytes = String.UTF8.encode(message);
  proxy_log(LOG_INFO, changetype<usize>(bytes), <usize>bytes.byteLength);
}

function addResponseHeader(key: string, value: string): void {
  const keyBytes = String.UTF8.encode(key);
  const valueBytes = String.UTF8.encode(value);
  proxy_add_header_map_value(
    RESPONSE_HEADERS,
    changetype<usize>(keyBytes),
    <usize>keyBytes.byteLength,
    changetype<usize>(valueBytes),
    <usize>valueBytes.byteLength,
  );
}

export function proxy_abi_version_0_2_1(): void {}

// The host copies headers, bodies and configuration into memory we hand out.
export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

export function proxy_on_context_create(_contextId: u32, _rootContextId: u32): void {}

export function proxy_on_vm_start(_rootContextId: u32, _vmConfigurationSize: u32): bool {
  log('assemblyscript-filter: started');
  return true;
}

export function proxy_on_configure(_rootContextId: u32, _pluginConfigurationSize: u32): bool {
  return true;
}

export function proxy_on_response_headers(contextId: u32, _headers: u32, _endOfStream: bool): u32 {
  addResponseHeader('x-kiln', 'hello');
  log('assemblyscript-filter: added x-kiln to the response of context ' + contextId.toString());
  return ACTION_CONTINUE;
}

export function proxy_on_done(_contextId: u32): bool {
  return true;
}

export function proxy_on_delete(_contextId: u32): void {}
