//! Safe wrappers over the host functions of the Proxy-Wasm ABI 0.2.1
//! (imported from module `env`). Each answers `Err(Status)` when the host
//! does not answer OK; lookups answer `Ok(None)` for NOT_FOUND.

use crate::types::{BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use std::ptr::{null, null_mut};

#[allow(improper_ctypes)]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(buffer: u32, start: usize, max_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_buffer_status(buffer: u32, return_size: *mut usize, return_flags: *mut u32) -> u32;
    fn proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_header_map_value(map: u32, key: *const u8, key_size: usize, return_value: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_add_header_map_value(map: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_replace_header_map_value(map: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_size(map: u32, return_size: *mut usize) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, return_value: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_get_status(return_code: *mut u32, return_message: *mut *mut u8, return_message_size: *mut usize) -> u32;
    fn proxy_get_shared_data(key: *const u8, key_size: usize, return_value: *mut *mut u8, return_size: *mut usize, return_cas: *mut u32) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(vm_id: *const u8, vm_id_size: usize, name: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_enqueue_shared_queue(queue: u32, value: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(queue: u32, return_value: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric: u32, value: u64) -> u32;
    fn proxy_get_metric(metric: u32, return_value: *mut u64) -> u32;
    fn proxy_set_effective_context(context: u32) -> u32;
    fn proxy_done() -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    if status == 0 {
        Ok(())
    } else {
        Err(Status(status))
    }
}

/// NOT_FOUND (and EMPTY) become `Ok(None)`.
fn lookup<T>(status: u32, value: impl FnOnce() -> T) -> Result<Option<T>, Status> {
    match status {
        0 => Ok(Some(value())),
        1 | 7 => Ok(None),
        other => Err(Status(other)),
    }
}

/// Takes ownership of bytes the host wrote into memory from `proxy_on_memory_allocate`.
unsafe fn take_bytes(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

fn text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(value) => value,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

// ---- logging, time, timers ----

pub fn log(level: LogLevel, message: &str) {
    unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

pub fn get_log_level() -> Result<LogLevel, Status> {
    let mut level = 0u32;
    check(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(match level {
        0 => LogLevel::Trace,
        1 => LogLevel::Debug,
        2 => LogLevel::Info,
        3 => LogLevel::Warn,
        4 => LogLevel::Error,
        _ => LogLevel::Critical,
    })
}

pub fn get_current_time_nanoseconds() -> Result<u64, Status> {
    let mut time = 0u64;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

/// Calls `RootContext::on_tick` every `milliseconds` (0 stops the timer).
pub fn set_tick_period_milliseconds(milliseconds: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_tick_period_milliseconds(milliseconds) })
}

// ---- buffers ----

pub fn get_buffer(buffer: BufferType, start: usize, max_size: usize) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_buffer_bytes(buffer as u32, start, max_size, &mut data, &mut size) };
    lookup(status, || unsafe { take_bytes(data, size) })
}

/// The size of a buffer (0 when the host has none).
pub fn get_buffer_size(buffer: BufferType) -> Result<usize, Status> {
    let mut size = 0usize;
    let mut flags = 0u32;
    Ok(lookup(unsafe { proxy_get_buffer_status(buffer as u32, &mut size, &mut flags) }, || size)?.unwrap_or(0))
}

/// Replaces `size` bytes at `start` with `value` (`set_buffer(t, 0, usize::MAX, v)` replaces everything).
pub fn set_buffer(buffer: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_set_buffer_bytes(buffer as u32, start, size, value.as_ptr(), value.len()) })
}

// ---- header maps ----

/// The ABI's serialization: count, (key length, value length) per pair, then each key and value followed by NUL.
pub fn serialize_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut size = 4 + pairs.len() * 8;
    for (key, value) in pairs {
        size += key.as_ref().len() + value.as_ref().len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&(key.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_ref().as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_ref().as_bytes());
        out.push(0);
    }
    out
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let slice = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]) as usize)
}

/// The inverse of `serialize_pairs`; malformed input gives the pairs read so far.
pub fn deserialize_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let count = match read_u32(bytes, 0) {
        Some(count) => count,
        None => return pairs,
    };
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    for index in 0..count {
        let (key_size, value_size) = match (read_u32(bytes, 4 + index * 8), read_u32(bytes, 8 + index * 8)) {
            (Some(k), Some(v)) => (k, v),
            _ => break,
        };
        let key = match bytes.get(data..data + key_size) {
            Some(key) => String::from_utf8_lossy(key).into_owned(),
            None => break,
        };
        data += key_size + 1;
        let value = match bytes.get(data..data + value_size) {
            Some(value) => String::from_utf8_lossy(value).into_owned(),
            None => break,
        };
        data += value_size + 1;
        pairs.push((key, value));
    }
    pairs
}

pub fn get_map(map: MapType) -> Result<Vec<(String, String)>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    Ok(lookup(status, || deserialize_pairs(&unsafe { take_bytes(data, size) }))?.unwrap_or_default())
}

pub fn set_map<K: AsRef<str>, V: AsRef<str>>(map: MapType, pairs: &[(K, V)]) -> Result<(), Status> {
    let bytes = serialize_pairs(pairs);
    check(unsafe { proxy_set_header_map_pairs(map as u32, bytes.as_ptr(), bytes.len()) })
}

pub fn get_map_value(map: MapType, key: &str) -> Result<Option<String>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_header_map_value(map as u32, key.as_ptr(), key.len(), &mut data, &mut size) };
    lookup(status, || text(unsafe { take_bytes(data, size) }))
}

pub fn add_map_value(map: MapType, key: &str, value: &str) -> Result<(), Status> {
    check(unsafe { proxy_add_header_map_value(map as u32, key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

pub fn replace_map_value(map: MapType, key: &str, value: &str) -> Result<(), Status> {
    check(unsafe { proxy_replace_header_map_value(map as u32, key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

pub fn remove_map_value(map: MapType, key: &str) -> Result<(), Status> {
    check(unsafe { proxy_remove_header_map_value(map as u32, key.as_ptr(), key.len()) })
}

pub fn get_map_size(map: MapType) -> Result<usize, Status> {
    let mut size = 0usize;
    check(unsafe { proxy_get_header_map_size(map as u32, &mut size) })?;
    Ok(size)
}

// ---- properties ----

fn property_path(path: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (index, segment) in path.iter().enumerate() {
        if index > 0 {
            bytes.push(0);
        }
        bytes.extend_from_slice(segment.as_bytes());
    }
    bytes
}

/// A property by path, e.g. `get_property(&["request", "path"])`.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let path = property_path(path);
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    lookup(status, || unsafe { take_bytes(data, size) })
}

pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), Status> {
    let path = property_path(path);
    check(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

// ---- streams and local responses ----

/// Answers the downstream without the upstream: status, headers, body.
pub fn send_local_response<K: AsRef<str>, V: AsRef<str>>(status_code: u32, headers: &[(K, V)], body: Option<&[u8]>) -> Result<(), Status> {
    let headers = serialize_pairs(headers);
    let body = body.unwrap_or(&[]);
    let details = "";
    check(unsafe {
        proxy_send_local_response(status_code, details.as_ptr(), 0, body.as_ptr(), body.len(), headers.as_ptr(), headers.len(), -1)
    })
}

pub fn continue_stream(stream: StreamType) -> Result<(), Status> {
    check(unsafe { proxy_continue_stream(stream as u32) })
}

pub fn close_stream(stream: StreamType) -> Result<(), Status> {
    check(unsafe { proxy_close_stream(stream as u32) })
}

/// Makes `context_id` the context later host calls act on (e.g. a stream resumed from a root context).
pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Tells the host a context that answered `false` from `on_done` is done now.
pub fn done() -> Result<(), Status> {
    check(unsafe { proxy_done() })
}

// ---- HTTP calls ----

/// Starts an HTTP call to a named upstream; answers its token (see `Context::on_http_call_response`).
pub fn dispatch_http_call<K: AsRef<str>, V: AsRef<str>>(
    upstream: &str,
    headers: &[(K, V)],
    body: Option<&[u8]>,
    trailers: &[(K, V)],
    timeout_ms: u32,
) -> Result<u32, Status> {
    let headers = serialize_pairs(headers);
    let trailers = serialize_pairs(trailers);
    let body = body.unwrap_or(&[]);
    let mut token = 0u32;
    check(unsafe {
        proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// The status code and message of the last HTTP call response (or gRPC call).
pub fn get_status() -> Result<(u32, String), Status> {
    let mut code = 0u32;
    let mut data = null_mut();
    let mut size = 0usize;
    check(unsafe { proxy_get_status(&mut code, &mut data, &mut size) })?;
    Ok((code, text(unsafe { take_bytes(data, size) })))
}

// ---- shared data and queues ----

/// The value and its CAS token, or None.
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match lookup(status, || unsafe { take_bytes(data, size) })? {
        Some(value) => Ok((Some(value), if cas == 0 { None } else { Some(cas) })),
        None => Ok((None, None)),
    }
}

/// Sets a value; with `cas`, only when nobody changed it since (else `Err(Status::CAS_MISMATCH)`).
pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), Status> {
    let (pointer, size) = match value {
        Some(value) => (value.as_ptr(), value.len()),
        None => (null(), 0),
    };
    check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), pointer, size, cas.unwrap_or(0)) })
}

pub fn register_shared_queue(name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    check(unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn resolve_shared_queue(vm_id: &str, name: &str) -> Result<Option<u32>, Status> {
    let mut id = 0u32;
    let status = unsafe { proxy_resolve_shared_queue(vm_id.as_ptr(), vm_id.len(), name.as_ptr(), name.len(), &mut id) };
    lookup(status, || id)
}

pub fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> Result<(), Status> {
    check(unsafe { proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len()) })
}

pub fn dequeue_shared_queue(queue_id: u32) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_dequeue_shared_queue(queue_id, &mut data, &mut size) };
    lookup(status, || unsafe { take_bytes(data, size) })
}

// ---- metrics ----

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id = 0u32;
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(metric_id: u32, offset: i64) -> Result<(), Status> {
    check(unsafe { proxy_increment_metric(metric_id, offset) })
}

pub fn record_metric(metric_id: u32, value: u64) -> Result<(), Status> {
    check(unsafe { proxy_record_metric(metric_id, value) })
}

pub fn get_metric(metric_id: u32) -> Result<u64, Status> {
    let mut value = 0u64;
    check(unsafe { proxy_get_metric(metric_id, &mut value) })?;
    Ok(value)
}
