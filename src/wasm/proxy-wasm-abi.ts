/**
 * The Proxy-Wasm ABI 0.2.1 (proxy-wasm/spec, abi-versions/v0.2.1), written
 * once: its names (what a filter exports and may import) and its numbers
 * (statuses, buffer, map and stream types). Languages tell compilers what to
 * export from it, the kind rules check modules against it, and the test bed
 * host implements it. The SDKs for app authors (sdk/) are compiled by other
 * compilers and carry their own copy of the numbers.
 */

/** Export markers naming the ABI version a filter speaks; hosts accept these. */
export const PROXY_WASM_ABI_MARKERS = ['proxy_abi_version_0_2_1', 'proxy_abi_version_0_2_0'] as const;
export const PROXY_WASM_ABI_MARKER_PREFIX = 'proxy_abi_version_';

/** Callbacks a host may call (exports of a filter), including the version markers. */
export const PROXY_WASM_CALLBACKS = [
  'proxy_abi_version_0_2_1',
  'proxy_abi_version_0_2_0',
  'proxy_on_memory_allocate',
  'proxy_on_context_create',
  'proxy_on_vm_start',
  'proxy_on_configure',
  'proxy_on_tick',
  'proxy_on_foreign_function',
  'proxy_on_queue_ready',
  'proxy_on_new_connection',
  'proxy_on_downstream_data',
  'proxy_on_upstream_data',
  'proxy_on_downstream_connection_close',
  'proxy_on_upstream_connection_close',
  'proxy_on_request_headers',
  'proxy_on_request_body',
  'proxy_on_request_trailers',
  'proxy_on_request_metadata',
  'proxy_on_response_headers',
  'proxy_on_response_body',
  'proxy_on_response_trailers',
  'proxy_on_response_metadata',
  'proxy_on_http_call_response',
  'proxy_on_grpc_receive_initial_metadata',
  'proxy_on_grpc_receive_trailing_metadata',
  'proxy_on_grpc_receive',
  'proxy_on_grpc_close',
  'proxy_on_done',
  'proxy_on_log',
  'proxy_on_delete',
] as const;

/** Host functions of the ABI (module `env`): what a filter may import. */
export const PROXY_WASM_HOST_FUNCTIONS = [
  'proxy_log',
  'proxy_get_log_level',
  'proxy_set_tick_period_milliseconds',
  'proxy_get_current_time_nanoseconds',
  'proxy_get_property',
  'proxy_set_property',
  'proxy_continue_stream',
  'proxy_close_stream',
  'proxy_send_local_response',
  'proxy_get_header_map_pairs',
  'proxy_set_header_map_pairs',
  'proxy_get_header_map_value',
  'proxy_add_header_map_value',
  'proxy_replace_header_map_value',
  'proxy_remove_header_map_value',
  'proxy_get_header_map_size',
  'proxy_get_buffer_bytes',
  'proxy_get_buffer_status',
  'proxy_set_buffer_bytes',
  'proxy_http_call',
  'proxy_get_status',
  'proxy_grpc_call',
  'proxy_grpc_stream',
  'proxy_grpc_send',
  'proxy_grpc_cancel',
  'proxy_grpc_close',
  'proxy_register_shared_queue',
  'proxy_resolve_shared_queue',
  'proxy_enqueue_shared_queue',
  'proxy_dequeue_shared_queue',
  'proxy_get_shared_data',
  'proxy_set_shared_data',
  'proxy_define_metric',
  'proxy_increment_metric',
  'proxy_record_metric',
  'proxy_get_metric',
  'proxy_set_effective_context',
  'proxy_done',
  'proxy_call_foreign_function',
] as const;
export type ProxyWasmHostFunction = (typeof PROXY_WASM_HOST_FUNCTIONS)[number];
/** Names from ABI 0.1.0/0.2.0 that SDKs still emit; 0.2.1 hosts keep them working. */
export const PROXY_WASM_LEGACY_HOST_FUNCTIONS = ['proxy_continue_request', 'proxy_continue_response', 'proxy_clear_route_cache', 'proxy_get_configuration'] as const;
export type ProxyWasmLegacyHostFunction = (typeof PROXY_WASM_LEGACY_HOST_FUNCTIONS)[number];

export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  SERIALIZATION_FAILURE: 3,
  PARSE_FAILURE: 4,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  INTERNAL_FAILURE: 10,
  UNIMPLEMENTED: 12,
} as const;

export const Action = { CONTINUE: 0, PAUSE: 1 } as const;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'critical'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

export const BufferType = {
  HTTP_REQUEST_BODY: 0,
  HTTP_RESPONSE_BODY: 1,
  DOWNSTREAM_DATA: 2,
  UPSTREAM_DATA: 3,
  HTTP_CALL_RESPONSE_BODY: 4,
  GRPC_CALL_MESSAGE: 5,
  VM_CONFIGURATION: 6,
  PLUGIN_CONFIGURATION: 7,
  FOREIGN_FUNCTION_ARGUMENTS: 8,
} as const;

export const MapType = {
  HTTP_REQUEST_HEADERS: 0,
  HTTP_REQUEST_TRAILERS: 1,
  HTTP_RESPONSE_HEADERS: 2,
  HTTP_RESPONSE_TRAILERS: 3,
  GRPC_CALL_INITIAL_METADATA: 4,
  GRPC_CALL_TRAILING_METADATA: 5,
  HTTP_CALL_RESPONSE_HEADERS: 6,
  HTTP_CALL_RESPONSE_TRAILERS: 7,
} as const;

export const StreamType = { HTTP_REQUEST: 0, HTTP_RESPONSE: 1, DOWNSTREAM: 2, UPSTREAM: 3 } as const;

/** proxy_metric_type_t: COUNTER = 0, GAUGE = 1, HISTOGRAM = 2. */
export const METRIC_TYPE_NAMES = ['counter', 'gauge', 'histogram'] as const;
export type MetricTypeName = (typeof METRIC_TYPE_NAMES)[number];
