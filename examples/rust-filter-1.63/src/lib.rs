//! A proxy-wasm filter pinned to rustc 1.63 by its rust-toolchain.toml: an
//! existing app that keeps building on Debian's toolchain. It tags every
//! response with the toolchain it asked for.

use kiln_proxy_wasm::{log, set_http_context, Action, Context, HttpContext, LogLevel};

struct Tag;

impl Context for Tag {}

impl HttpContext for Tag {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-kiln-rust", "1.63");
        log(LogLevel::Info, "rust-filter-legacy: tagged the response");
        Action::Continue
    }
}

kiln_proxy_wasm::main! {
    set_http_context(|_context_id, _root_context_id| Box::new(Tag));
}
