//! The ABI callbacks (`proxy_on_*` exports): they find the context the host
//! names and call its trait method. A context is taken out of its table for
//! the duration of a callback, so a callback may call any host function.
//! Tables are BTreeMaps: a HashMap's RandomState would need WASI random_get
//! at start-up, which a proxy-wasm host need not provide.

use crate::hostcalls;
use crate::traits::{Context, HttpContext, RootContext};
use crate::types::{Action, LogLevel};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

type RootFactory = Box<dyn Fn(u32) -> Box<dyn RootContext>>;
type HttpFactory = Box<dyn Fn(u32, u32) -> Box<dyn HttpContext>>;

struct DefaultRoot;
impl Context for DefaultRoot {}
impl RootContext for DefaultRoot {}

#[derive(Default)]
struct Dispatcher {
    root_factory: RefCell<Option<RootFactory>>,
    http_factory: RefCell<Option<HttpFactory>>,
    roots: RefCell<BTreeMap<u32, Box<dyn RootContext>>>,
    https: RefCell<BTreeMap<u32, Box<dyn HttpContext>>>,
    /// HTTP call token → the context that made the call.
    callouts: RefCell<BTreeMap<u32, u32>>,
    /// The context whose callback is running (0 outside callbacks).
    active: Cell<u32>,
}

thread_local! {
    static DISPATCHER: Dispatcher = Dispatcher::default();
}

/// Registers the factory of root contexts (one per plugin).
pub fn set_root_context<F>(factory: F)
where
    F: Fn(u32) -> Box<dyn RootContext> + 'static,
{
    DISPATCHER.with(|d| *d.root_factory.borrow_mut() = Some(Box::new(factory)));
}

/// Registers the factory of HTTP contexts (`(context_id, root_context_id)`),
/// used when the root context's `create_http_context` answers `None`.
pub fn set_http_context<F>(factory: F)
where
    F: Fn(u32, u32) -> Box<dyn HttpContext> + 'static,
{
    DISPATCHER.with(|d| *d.http_factory.borrow_mut() = Some(Box::new(factory)));
}

pub(crate) fn register_callout(token: u32) {
    DISPATCHER.with(|d| {
        let active = d.active.get();
        if active != 0 {
            d.callouts.borrow_mut().insert(token, active);
        }
    });
}

fn with_root<R>(context_id: u32, missing: R, call: impl FnOnce(&mut dyn RootContext) -> R) -> R {
    let taken = DISPATCHER.with(|d| d.roots.borrow_mut().remove(&context_id));
    match taken {
        Some(mut context) => {
            let previous = DISPATCHER.with(|d| d.active.replace(context_id));
            let result = call(context.as_mut());
            DISPATCHER.with(|d| {
                d.active.set(previous);
                d.roots.borrow_mut().insert(context_id, context);
            });
            result
        }
        None => missing,
    }
}

fn with_http<R>(context_id: u32, missing: R, call: impl FnOnce(&mut dyn HttpContext) -> R) -> R {
    let taken = DISPATCHER.with(|d| d.https.borrow_mut().remove(&context_id));
    match taken {
        Some(mut context) => {
            let previous = DISPATCHER.with(|d| d.active.replace(context_id));
            let result = call(context.as_mut());
            DISPATCHER.with(|d| {
                d.active.set(previous);
                d.https.borrow_mut().insert(context_id, context);
            });
            result
        }
        None => missing,
    }
}

fn is_root(context_id: u32) -> bool {
    DISPATCHER.with(|d| d.roots.borrow().contains_key(&context_id))
}

fn action(result: Action) -> u32 {
    result.to_abi()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        let root = DISPATCHER.with(|d| d.root_factory.borrow().as_ref().map(|factory| factory(context_id)));
        let root = root.unwrap_or_else(|| Box::new(DefaultRoot));
        DISPATCHER.with(|d| d.roots.borrow_mut().insert(context_id, root));
        return;
    }
    let created = with_root(root_context_id, None, |root| root.create_http_context(context_id));
    let created = match created {
        Some(context) => Some(context),
        None => DISPATCHER.with(|d| d.http_factory.borrow().as_ref().map(|factory| factory(context_id, root_context_id))),
    };
    match created {
        Some(context) => DISPATCHER.with(|d| {
            d.https.borrow_mut().insert(context_id, context);
        }),
        None => hostcalls::log(
            LogLevel::Warn,
            &format!("kiln-proxy-wasm: no HTTP context for stream {} (register one with set_http_context or RootContext::create_http_context)", context_id),
        ),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, vm_configuration_size: usize) -> u32 {
    with_root(context_id, true, |root| root.on_vm_start(vm_configuration_size)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> u32 {
    with_root(context_id, true, |root| root.on_configure(plugin_configuration_size)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_root(context_id, (), |root| root.on_tick())
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(context_id: u32, queue_id: u32) {
    with_root(context_id, (), |root| root.on_queue_ready(queue_id))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, num_headers: usize, end_of_stream: u32) -> u32 {
    with_http(context_id, 0, |http| action(http.on_http_request_headers(num_headers, end_of_stream != 0)))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, body_size: usize, end_of_stream: u32) -> u32 {
    with_http(context_id, 0, |http| action(http.on_http_request_body(body_size, end_of_stream != 0)))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, num_trailers: usize) -> u32 {
    with_http(context_id, 0, |http| action(http.on_http_request_trailers(num_trailers)))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, num_headers: usize, end_of_stream: u32) -> u32 {
    with_http(context_id, 0, |http| action(http.on_http_response_headers(num_headers, end_of_stream != 0)))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context_id: u32, body_size: usize, end_of_stream: u32) -> u32 {
    with_http(context_id, 0, |http| action(http.on_http_response_body(body_size, end_of_stream != 0)))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, num_trailers: usize) -> u32 {
    with_http(context_id, 0, |http| action(http.on_http_response_trailers(num_trailers)))
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(context_id: u32, token: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
    let owner = DISPATCHER.with(|d| d.callouts.borrow_mut().remove(&token)).unwrap_or(context_id);
    if is_root(owner) {
        with_root(owner, (), |root| root.on_http_call_response(token, num_headers, body_size, num_trailers))
    } else {
        // A stream's host calls act on that stream while it handles the answer.
        if owner != context_id {
            let _ = hostcalls::set_effective_context(owner);
        }
        with_http(owner, (), |http| http.on_http_call_response(token, num_headers, body_size, num_trailers))
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    with_http(context_id, (), |http| http.on_log())
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    if is_root(context_id) {
        with_root(context_id, true, |root| root.on_done()) as u32
    } else {
        with_http(context_id, true, |http| http.on_done()) as u32
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    DISPATCHER.with(|d| {
        d.roots.borrow_mut().remove(&context_id);
        d.https.borrow_mut().remove(&context_id);
        d.callouts.borrow_mut().retain(|_, owner| *owner != context_id);
    });
}
