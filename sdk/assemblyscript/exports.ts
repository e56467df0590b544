// The Proxy-Wasm ABI 0.2.1 callbacks, dispatching to the registered
// contexts. Re-export them from your entry file:
//
//   export * from "kiln-proxy-wasm/exports";
import {
  Action,
  createContext,
  deleteContext,
  HttpContext,
  RootContext,
  roots,
  setActiveContext,
  setEffectiveContext,
  streams,
  takeCallout,
} from './index';

export function proxy_abi_version_0_2_1(): void {}

/** The host copies headers, bodies and configuration into memory handed out here (freed by the SDK). */
export function proxy_on_memory_allocate(size: usize): usize {
  return heap.alloc(size);
}

export function proxy_on_context_create(contextId: u32, rootContextId: u32): void {
  createContext(contextId, rootContextId);
}

function root(contextId: u32): RootContext | null {
  return roots.has(contextId) ? roots.get(contextId) : null;
}

function stream(contextId: u32): HttpContext | null {
  return streams.has(contextId) ? streams.get(contextId) : null;
}

export function proxy_on_vm_start(contextId: u32, vmConfigurationSize: u32): bool {
  const context = root(contextId);
  if (context === null) return true;
  const previous = setActiveContext(contextId);
  const result = context.onVmStart(vmConfigurationSize);
  setActiveContext(previous);
  return result;
}

export function proxy_on_configure(contextId: u32, pluginConfigurationSize: u32): bool {
  const context = root(contextId);
  if (context === null) return true;
  const previous = setActiveContext(contextId);
  const result = context.onConfigure(pluginConfigurationSize);
  setActiveContext(previous);
  return result;
}

export function proxy_on_tick(contextId: u32): void {
  const context = root(contextId);
  if (context === null) return;
  const previous = setActiveContext(contextId);
  context.onTick();
  setActiveContext(previous);
}

export function proxy_on_queue_ready(contextId: u32, queueId: u32): void {
  const context = root(contextId);
  if (context === null) return;
  const previous = setActiveContext(contextId);
  context.onQueueReady(queueId);
  setActiveContext(previous);
}

// Stream callbacks: `kind` selects the method.
const REQUEST_HEADERS = 0;
const REQUEST_BODY = 1;
const REQUEST_TRAILERS = 2;
const RESPONSE_HEADERS = 3;
const RESPONSE_BODY = 4;
const RESPONSE_TRAILERS = 5;

function onStream(kind: i32, contextId: u32, size: u32, endOfStream: bool): u32 {
  const context = stream(contextId);
  if (context === null) return <u32>Action.Continue;
  const previous = setActiveContext(contextId);
  let action = Action.Continue;
  if (kind == REQUEST_HEADERS) action = context.onRequestHeaders(size, endOfStream);
  else if (kind == REQUEST_BODY) action = context.onRequestBody(size, endOfStream);
  else if (kind == REQUEST_TRAILERS) action = context.onRequestTrailers(size);
  else if (kind == RESPONSE_HEADERS) action = context.onResponseHeaders(size, endOfStream);
  else if (kind == RESPONSE_BODY) action = context.onResponseBody(size, endOfStream);
  else if (kind == RESPONSE_TRAILERS) action = context.onResponseTrailers(size);
  setActiveContext(previous);
  return <u32>action;
}

export function proxy_on_request_headers(contextId: u32, numHeaders: u32, endOfStream: bool): u32 {
  return onStream(REQUEST_HEADERS, contextId, numHeaders, endOfStream);
}

export function proxy_on_request_body(contextId: u32, bodySize: u32, endOfStream: bool): u32 {
  return onStream(REQUEST_BODY, contextId, bodySize, endOfStream);
}

export function proxy_on_request_trailers(contextId: u32, numTrailers: u32): u32 {
  return onStream(REQUEST_TRAILERS, contextId, numTrailers, true);
}

export function proxy_on_response_headers(contextId: u32, numHeaders: u32, endOfStream: bool): u32 {
  return onStream(RESPONSE_HEADERS, contextId, numHeaders, endOfStream);
}

export function proxy_on_response_body(contextId: u32, bodySize: u32, endOfStream: bool): u32 {
  return onStream(RESPONSE_BODY, contextId, bodySize, endOfStream);
}

export function proxy_on_response_trailers(contextId: u32, numTrailers: u32): u32 {
  return onStream(RESPONSE_TRAILERS, contextId, numTrailers, true);
}

export function proxy_on_http_call_response(contextId: u32, token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  const owner = takeCallout(token, contextId);
  const previous = setActiveContext(owner);
  const rootContext = root(owner);
  if (rootContext !== null) {
    rootContext.onHttpCallResponse(token, numHeaders, bodySize, numTrailers);
  } else {
    const context = stream(owner);
    if (context !== null) {
      // The stream's host calls act on that stream while it handles the answer.
      if (owner != contextId) setEffectiveContext(owner);
      context.onHttpCallResponse(token, numHeaders, bodySize, numTrailers);
    }
  }
  setActiveContext(previous);
}

export function proxy_on_log(contextId: u32): void {
  const context = stream(contextId);
  if (context !== null) context.onLog();
}

export function proxy_on_done(contextId: u32): bool {
  const rootContext = root(contextId);
  if (rootContext !== null) return rootContext.onDone();
  const context = stream(contextId);
  return context === null ? true : context.onDone();
}

export function proxy_on_delete(contextId: u32): void {
  deleteContext(contextId);
}
