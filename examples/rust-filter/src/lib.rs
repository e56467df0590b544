//! A proxy-wasm HTTP filter on the raw Proxy-Wasm ABI 0.2.1 (no SDK yet):
//! it adds `x-kiln: hello` to every response and logs that it did.

// Host functions, imported from module "env".
extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
}

const LOG_INFO: u32 = 2;
const RESPONSE_HEADERS: u32 = 2;
const ACTION_CONTINUE: u32 = 0;

fn log(message: &str) {
    unsafe { proxy_log(LOG_INFO, message.as_ptr(), message.len()) };
}

fn add_response_header(key: &str, value: &str) {
    unsafe { proxy_add_header_map_value(RESPONSE_HEADERS, key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
}

// Kiln convention for Rust filters (rustc 1.63): export `_initialize`, which
// the host calls once, running the static constructors. Without it wasm-ld
// wraps every export to run them again on each call.
extern "C" {
    fn __wasm_call_ctors();
}

#[no_mangle]
pub extern "C" fn _initialize() {
    unsafe { __wasm_call_ctors() };
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host copies headers, bodies and configuration into memory we hand out.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(size);
    let pointer = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    pointer
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        log(&format!("rust-filter: root context {} created", context_id));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, _plugin_configuration_size: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    add_response_header("x-kiln", "hello");
    log(&format!("rust-filter: added x-kiln to the response of context {}", context_id));
    ACTION_CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}
