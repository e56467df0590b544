//! Contexts as traits. Every callback has a default, so a filter implements
//! only what it needs; the helper methods wrap the host functions for the
//! context they are called on.

use crate::dispatcher;
use crate::hostcalls;
use crate::types::{Action, BufferType, LogLevel, MapType, StreamType};

fn must<T>(what: &str, result: Result<T, crate::Status>) -> T {
    match result {
        Ok(value) => value,
        Err(status) => panic!("{} failed: {}", what, status),
    }
}

fn headers_of(map: MapType) -> Vec<(String, String)> {
    must("get header map", hostcalls::get_map(map))
}

/// Callbacks and helpers shared by root and HTTP contexts.
pub trait Context {
    /// The host is about to delete the context; `false` defers it until `done()`.
    fn on_done(&mut self) -> bool {
        true
    }

    /// The answer to `dispatch_http_call` with this `token_id`: read it with
    /// `get_http_call_response_headers` / `_body`, and `hostcalls::get_status()`.
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {}

    /// A property by path, e.g. `self.get_property(&["request", "path"])`.
    fn get_property(&self, path: &[&str]) -> Option<Vec<u8>> {
        must("get_property", hostcalls::get_property(path))
    }

    /// A property as UTF-8 text.
    fn get_property_string(&self, path: &[&str]) -> Option<String> {
        self.get_property(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn set_property(&self, path: &[&str], value: &[u8]) {
        must("set_property", hostcalls::set_property(path, value))
    }

    fn get_current_time_nanoseconds(&self) -> u64 {
        must("get_current_time_nanoseconds", hostcalls::get_current_time_nanoseconds())
    }

    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        must("get_shared_data", hostcalls::get_shared_data(key))
    }

    fn set_shared_data(&self, key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), crate::Status> {
        hostcalls::set_shared_data(key, value, cas)
    }

    /// Calls an upstream; the answer arrives in `on_http_call_response` of this context.
    fn dispatch_http_call(
        &self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        trailers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, crate::Status> {
        let token = hostcalls::dispatch_http_call(upstream, headers, body, trailers, timeout_ms)?;
        dispatcher::register_callout(token);
        Ok(token)
    }

    fn get_http_call_response_headers(&self) -> Vec<(String, String)> {
        headers_of(MapType::HttpCallResponseHeaders)
    }

    fn get_http_call_response_header(&self, name: &str) -> Option<String> {
        must("get header", hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name))
    }

    fn get_http_call_response_body(&self, start: usize, max_size: usize) -> Option<Vec<u8>> {
        must("get body", hostcalls::get_buffer(BufferType::HttpCallResponseBody, start, max_size))
    }

    fn log(&self, level: LogLevel, message: &str) {
        hostcalls::log(level, message)
    }
}

/// The plugin's context: one per configured plugin, created by the host
/// first; it creates the HTTP contexts of requests.
pub trait RootContext: Context {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    /// The plugin configuration (the version's `config`) is ready: read it with `get_plugin_configuration`.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        true
    }

    /// Called every period set with `set_tick_period_milliseconds`.
    fn on_tick(&mut self) {}

    fn on_queue_ready(&mut self, _queue_id: u32) {}

    /// The context of a new HTTP stream. `None` falls back to the factory of `set_http_context`.
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        None
    }

    fn get_vm_configuration(&self) -> Option<Vec<u8>> {
        must("get vm configuration", hostcalls::get_buffer(BufferType::VmConfiguration, 0, usize::MAX))
    }

    fn get_plugin_configuration(&self) -> Option<Vec<u8>> {
        must("get plugin configuration", hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX))
    }

    fn set_tick_period_milliseconds(&self, milliseconds: u32) {
        must("set_tick_period_milliseconds", hostcalls::set_tick_period_milliseconds(milliseconds))
    }
}

/// One HTTP request/response exchange.
pub trait HttpContext: Context {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// A chunk of the request body; `Action::Pause` buffers until `end_of_stream`.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }

    /// The exchange is over (access-log time): headers and properties can still be read.
    fn on_log(&mut self) {}

    // ---- request headers, body, trailers ----

    fn get_http_request_headers(&self) -> Vec<(String, String)> {
        headers_of(MapType::HttpRequestHeaders)
    }

    fn set_http_request_headers(&self, headers: &[(&str, &str)]) {
        must("set headers", hostcalls::set_map(MapType::HttpRequestHeaders, headers))
    }

    /// Several values of one header are joined with ",".
    fn get_http_request_header(&self, name: &str) -> Option<String> {
        must("get header", hostcalls::get_map_value(MapType::HttpRequestHeaders, name))
    }

    /// Replaces every value of the header (adds it when absent).
    fn set_http_request_header(&self, name: &str, value: &str) {
        must("set header", hostcalls::replace_map_value(MapType::HttpRequestHeaders, name, value))
    }

    fn add_http_request_header(&self, name: &str, value: &str) {
        must("add header", hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value))
    }

    fn remove_http_request_header(&self, name: &str) {
        must("remove header", hostcalls::remove_map_value(MapType::HttpRequestHeaders, name))
    }

    fn get_http_request_body(&self, start: usize, max_size: usize) -> Option<Vec<u8>> {
        must("get body", hostcalls::get_buffer(BufferType::HttpRequestBody, start, max_size))
    }

    /// Replaces `size` bytes at `start` (`set_http_request_body(0, usize::MAX, b"...")` replaces the whole body).
    fn set_http_request_body(&self, start: usize, size: usize, value: &[u8]) {
        must("set body", hostcalls::set_buffer(BufferType::HttpRequestBody, start, size, value))
    }

    fn get_http_request_trailers(&self) -> Vec<(String, String)> {
        headers_of(MapType::HttpRequestTrailers)
    }

    fn set_http_request_trailer(&self, name: &str, value: &str) {
        must("set trailer", hostcalls::replace_map_value(MapType::HttpRequestTrailers, name, value))
    }

    // ---- response headers, body, trailers ----

    fn get_http_response_headers(&self) -> Vec<(String, String)> {
        headers_of(MapType::HttpResponseHeaders)
    }

    fn set_http_response_headers(&self, headers: &[(&str, &str)]) {
        must("set headers", hostcalls::set_map(MapType::HttpResponseHeaders, headers))
    }

    fn get_http_response_header(&self, name: &str) -> Option<String> {
        must("get header", hostcalls::get_map_value(MapType::HttpResponseHeaders, name))
    }

    fn set_http_response_header(&self, name: &str, value: &str) {
        must("set header", hostcalls::replace_map_value(MapType::HttpResponseHeaders, name, value))
    }

    fn add_http_response_header(&self, name: &str, value: &str) {
        must("add header", hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value))
    }

    fn remove_http_response_header(&self, name: &str) {
        must("remove header", hostcalls::remove_map_value(MapType::HttpResponseHeaders, name))
    }

    fn get_http_response_body(&self, start: usize, max_size: usize) -> Option<Vec<u8>> {
        must("get body", hostcalls::get_buffer(BufferType::HttpResponseBody, start, max_size))
    }

    fn set_http_response_body(&self, start: usize, size: usize, value: &[u8]) {
        must("set body", hostcalls::set_buffer(BufferType::HttpResponseBody, start, size, value))
    }

    fn get_http_response_trailers(&self) -> Vec<(String, String)> {
        headers_of(MapType::HttpResponseTrailers)
    }

    fn set_http_response_trailer(&self, name: &str, value: &str) {
        must("set trailer", hostcalls::replace_map_value(MapType::HttpResponseTrailers, name, value))
    }

    // ---- flow ----

    /// Answers the client directly (the upstream is not called); return `Action::Pause` after it.
    fn send_http_response(&self, status_code: u32, headers: &[(&str, &str)], body: Option<&[u8]>) {
        must("send_local_response", hostcalls::send_local_response(status_code, headers, body))
    }

    fn resume_http_request(&self) {
        must("resume request", hostcalls::continue_stream(StreamType::HttpRequest))
    }

    fn resume_http_response(&self) {
        must("resume response", hostcalls::continue_stream(StreamType::HttpResponse))
    }

    fn close_http_stream(&self) {
        must("close stream", hostcalls::close_stream(StreamType::HttpRequest))
    }
}
