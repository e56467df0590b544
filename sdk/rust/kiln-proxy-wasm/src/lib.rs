//! Kiln's SDK for Proxy-Wasm ABI 0.2.1 filters, with no dependencies
//! (builds with rustc 1.63 for `wasm32-wasi`).
//!
//! ```ignore
//! use kiln_proxy_wasm::*;
//!
//! struct AddHeader;
//! impl Context for AddHeader {}
//! impl HttpContext for AddHeader {
//!     fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
//!         self.add_http_response_header("x-kiln", "hello");
//!         Action::Continue
//!     }
//! }
//!
//! kiln_proxy_wasm::main! {
//!     set_http_context(|_context_id, _root_id| Box::new(AddHeader));
//! }
//! ```
//!
//! The SDK exports the ABI version marker (`proxy_abi_version_0_2_1`),
//! `proxy_on_memory_allocate` and every `proxy_on_*` callback of HTTP
//! filters; `main!` exports `_initialize` (static constructors, a panic hook
//! that logs panics through `proxy_log`, then your registration code).

mod dispatcher;
pub mod hostcalls;
mod traits;
mod types;

pub use dispatcher::{set_http_context, set_root_context};
pub use traits::{Context, HttpContext, RootContext};
pub use types::{Action, BufferType, LogLevel, MapType, MetricType, Status, StreamType};

/// Logs through the host (`proxy_log`).
pub fn log(level: LogLevel, message: &str) {
    hostcalls::log(level, message)
}

/// Sends a local response from the current HTTP context (see `HttpContext::send_http_response`).
pub fn send_local_response(status_code: u32, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<(), Status> {
    hostcalls::send_local_response(status_code, headers, body)
}

/// A property by path of the current context, e.g. `get_property(&["plugin_name"])`.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_property(path)
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host copies headers, bodies and configuration into memory the module hands out;
/// the SDK takes ownership of it back (as a `Vec<u8>`) when a host call returns.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(size);
    let pointer = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    pointer
}

extern "C" {
    fn __wasm_call_ctors();
}

/// Run by `main!`'s `_initialize`: static constructors, then the panic hook.
#[doc(hidden)]
pub fn __initialize() {
    unsafe { __wasm_call_ctors() };
    std::panic::set_hook(Box::new(|info| {
        hostcalls::log(LogLevel::Critical, &format!("panic: {}", info));
    }));
}

/// Exports `_initialize` (the host calls it once, first), which runs the
/// SDK's start-up and then the body: register your contexts there.
///
/// ```ignore
/// kiln_proxy_wasm::main! {
///     kiln_proxy_wasm::set_root_context(|_| Box::new(MyRoot::default()));
/// }
/// ```
#[macro_export]
macro_rules! main {
    ($($body:tt)*) => {
        #[no_mangle]
        pub extern "C" fn _initialize() {
            $crate::__initialize();
            $($body)*
        }
    };
}
