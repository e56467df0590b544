//! A proxy-wasm filter in edition 2024 on Kiln's Rust SDK: it tags every
//! response with the language features it was built with. `Option::is_none_or`
//! (1.82) and `iter::repeat_n` (1.82) do not exist in rustc 1.63, so this
//! builds only on the modern toolchain.

use kiln_proxy_wasm::{Action, Context, HttpContext, LogLevel, log, set_http_context};

struct Tag;

impl Context for Tag {}

impl HttpContext for Tag {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let untagged = self.get_http_response_header("x-kiln-rust").is_none_or(|value| value.is_empty());
        if untagged {
            let stars: String = std::iter::repeat_n('*', 3).collect();
            self.add_http_response_header("x-kiln-rust", &format!("2024 {stars}"));
            log(LogLevel::Info, "rust-filter-2024: tagged the response");
        }
        Action::Continue
    }
}

kiln_proxy_wasm::main! {
    set_http_context(|_context_id, _root_context_id| Box::new(Tag));
}
