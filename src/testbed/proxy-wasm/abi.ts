/**
 * The Proxy-Wasm ABI 0.2.1 as this host implements it: the function types
 * it links and calls. The ABI's names and numbers are src/wasm/proxy-wasm-abi.ts,
 * re-exported here for the host's files.
 */
import type { ProxyWasmHostFunction, ProxyWasmLegacyHostFunction } from '../../wasm/proxy-wasm-abi.ts';
import { sig } from '../signatures.ts';
import type { FunctionType } from '../signatures.ts';

export { Action, BufferType, LOG_LEVELS, METRIC_TYPE_NAMES, MapType, Status, StreamType } from '../../wasm/proxy-wasm-abi.ts';
export type { LogLevelName, MetricTypeName } from '../../wasm/proxy-wasm-abi.ts';

/** Host functions this host implements (module `env`), with their ABI types. */
// Keyed by ABI names only: a typo or a function the ABI does not have fails the type check.
export const PROXY_HOST_SIGNATURES: Readonly<Record<string, FunctionType | readonly FunctionType[]>> = {
  proxy_log: sig(3),
  proxy_get_log_level: sig(1),
  proxy_set_tick_period_milliseconds: sig(1),
  proxy_get_current_time_nanoseconds: sig(1),
  proxy_get_property: sig(4),
  proxy_set_property: sig(4),
  proxy_continue_stream: sig(1),
  proxy_close_stream: sig(1),
  proxy_send_local_response: sig(8),
  proxy_get_header_map_pairs: sig(3),
  proxy_set_header_map_pairs: sig(3),
  proxy_get_header_map_value: sig(5),
  proxy_add_header_map_value: sig(5),
  proxy_replace_header_map_value: sig(5),
  proxy_remove_header_map_value: sig(3),
  proxy_get_header_map_size: sig(2),
  proxy_get_buffer_bytes: sig(5),
  proxy_get_buffer_status: sig(3),
  proxy_set_buffer_bytes: sig(5),
  proxy_http_call: sig(10),
  proxy_get_status: sig(3),
  // ABI 0.2.x types first; ABI 0.1.0's (no initial metadata), which @solo-io/proxy-runtime imports, second.
  proxy_grpc_call: [sig(12), sig(10)],
  proxy_grpc_stream: [sig(9), sig(7)],
  proxy_grpc_send: sig(4),
  proxy_grpc_cancel: sig(1),
  proxy_grpc_close: sig(1),
  proxy_register_shared_queue: sig(3),
  proxy_resolve_shared_queue: sig(5),
  proxy_enqueue_shared_queue: sig(3),
  proxy_dequeue_shared_queue: sig(3),
  proxy_get_shared_data: sig(5),
  proxy_set_shared_data: sig(5),
  proxy_define_metric: sig(4),
  proxy_increment_metric: sig(['i32', 'i64']),
  proxy_record_metric: sig(['i32', 'i64']),
  proxy_get_metric: sig(2),
  proxy_set_effective_context: sig(1),
  proxy_done: sig(0),
  proxy_call_foreign_function: sig(6),
  // PROXY_WASM_LEGACY_HOST_FUNCTIONS: SDKs still emit them; 0.2.1 hosts keep them working.
  proxy_continue_request: sig(0),
  proxy_continue_response: sig(0),
  proxy_clear_route_cache: sig(0),
  proxy_get_configuration: sig(2),
} satisfies Partial<Record<ProxyWasmHostFunction | ProxyWasmLegacyHostFunction, FunctionType | readonly FunctionType[]>>;

/** Callbacks the host calls, with the types it calls them with. */
export const PROXY_CALLBACK_SIGNATURES: Readonly<Record<string, FunctionType>> = {
  _initialize: sig(0, []),
  _start: sig(0, []),
  main: sig(2),
  proxy_on_memory_allocate: sig(1),
  malloc: sig(1),
  proxy_on_context_create: sig(2, []),
  proxy_on_vm_start: sig(2),
  proxy_on_configure: sig(2),
  proxy_on_tick: sig(1, []),
  proxy_on_queue_ready: sig(2, []),
  proxy_on_request_headers: sig(3),
  proxy_on_request_body: sig(3),
  proxy_on_request_trailers: sig(2),
  proxy_on_response_headers: sig(3),
  proxy_on_response_body: sig(3),
  proxy_on_response_trailers: sig(2),
  proxy_on_http_call_response: sig(5, []),
  proxy_on_grpc_receive_initial_metadata: sig(3, []),
  proxy_on_grpc_receive: sig(3, []),
  proxy_on_grpc_receive_trailing_metadata: sig(3, []),
  proxy_on_grpc_trailing_metadata: sig(3, []),
  proxy_on_grpc_close: sig(3, []),
  proxy_on_done: sig(1),
  proxy_on_log: sig(1, []),
  proxy_on_delete: sig(1, []),
};
