//! A proxy-wasm HTTP filter on Kiln's Rust SDK (`kiln-proxy-wasm`): it adds
//! `x-kiln: hello` to every response and logs that it did.

use kiln_proxy_wasm::{log, set_root_context, Action, Context, HttpContext, LogLevel, RootContext};

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AddHeader { context_id }))
    }
}

struct AddHeader {
    context_id: u32,
}

impl Context for AddHeader {}

impl HttpContext for AddHeader {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-kiln", "hello");
        log(LogLevel::Info, &format!("rust-filter: added x-kiln to the response of context {}", self.context_id));
        Action::Continue
    }
}

kiln_proxy_wasm::main! {
    set_root_context(|context_id| {
        log(LogLevel::Info, &format!("rust-filter: root context {} created", context_id));
        Box::new(Root)
    });
}
