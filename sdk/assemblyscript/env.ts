// Host functions of the Proxy-Wasm ABI 0.2.1. AssemblyScript imports a
// declared function from a module named after its file: these are imports
// from module "env", as the ABI wants. Prefer the wrappers in index.ts.

export declare function proxy_log(level: i32, message: usize, size: usize): i32;
export declare function proxy_get_log_level(returnLevel: usize): i32;
export declare function proxy_get_current_time_nanoseconds(returnTime: usize): i32;
export declare function proxy_set_tick_period_milliseconds(period: u32): i32;
export declare function proxy_get_buffer_bytes(buffer: i32, start: usize, maxSize: usize, returnData: usize, returnSize: usize): i32;
export declare function proxy_get_buffer_status(buffer: i32, returnSize: usize, returnFlags: usize): i32;
export declare function proxy_set_buffer_bytes(buffer: i32, start: usize, size: usize, value: usize, valueSize: usize): i32;
export declare function proxy_get_header_map_pairs(map: i32, returnData: usize, returnSize: usize): i32;
export declare function proxy_set_header_map_pairs(map: i32, data: usize, size: usize): i32;
export declare function proxy_get_header_map_value(map: i32, key: usize, keySize: usize, returnValue: usize, returnSize: usize): i32;
export declare function proxy_add_header_map_value(map: i32, key: usize, keySize: usize, value: usize, valueSize: usize): i32;
export declare function proxy_replace_header_map_value(map: i32, key: usize, keySize: usize, value: usize, valueSize: usize): i32;
export declare function proxy_remove_header_map_value(map: i32, key: usize, keySize: usize): i32;
export declare function proxy_get_property(path: usize, pathSize: usize, returnValue: usize, returnSize: usize): i32;
export declare function proxy_set_property(path: usize, pathSize: usize, value: usize, valueSize: usize): i32;
export declare function proxy_send_local_response(
  statusCode: u32,
  details: usize,
  detailsSize: usize,
  body: usize,
  bodySize: usize,
  headers: usize,
  headersSize: usize,
  grpcStatus: i32,
): i32;
export declare function proxy_continue_stream(stream: i32): i32;
export declare function proxy_close_stream(stream: i32): i32;
export declare function proxy_http_call(
  upstream: usize,
  upstreamSize: usize,
  headers: usize,
  headersSize: usize,
  body: usize,
  bodySize: usize,
  trailers: usize,
  trailersSize: usize,
  timeoutMs: u32,
  returnToken: usize,
): i32;
export declare function proxy_get_status(returnCode: usize, returnMessage: usize, returnMessageSize: usize): i32;
export declare function proxy_get_shared_data(key: usize, keySize: usize, returnValue: usize, returnSize: usize, returnCas: usize): i32;
export declare function proxy_set_shared_data(key: usize, keySize: usize, value: usize, valueSize: usize, cas: u32): i32;
export declare function proxy_set_effective_context(context: u32): i32;
export declare function proxy_done(): i32;
