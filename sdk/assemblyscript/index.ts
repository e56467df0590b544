// Kiln's Proxy-Wasm ABI 0.2.1 SDK for AssemblyScript: contexts as classes,
// header and body helpers, logging. Kiln provides it to every build:
//
//   import { HttpContext, Action, LogLevel, log, setHttpContext } from "kiln-proxy-wasm";
//   export * from "kiln-proxy-wasm/exports"; // the ABI callbacks, from your entry file
//
// Register your contexts with top-level statements (they run in _initialize).
import * as env from './env';

// ---- ABI enums ----

export enum Action {
  Continue = 0,
  Pause = 1,
}

export enum LogLevel {
  Trace = 0,
  Debug = 1,
  Info = 2,
  Warn = 3,
  Error = 4,
  Critical = 5,
}

export enum Status {
  Ok = 0,
  NotFound = 1,
  BadArgument = 2,
  SerializationFailure = 3,
  ParseFailure = 4,
  InvalidMemoryAccess = 6,
  Empty = 7,
  CasMismatch = 8,
  InternalFailure = 10,
  Unimplemented = 12,
}

export enum MapType {
  RequestHeaders = 0,
  RequestTrailers = 1,
  ResponseHeaders = 2,
  ResponseTrailers = 3,
  HttpCallResponseHeaders = 6,
  HttpCallResponseTrailers = 7,
}

export enum BufferType {
  RequestBody = 0,
  ResponseBody = 1,
  HttpCallResponseBody = 4,
  VmConfiguration = 6,
  PluginConfiguration = 7,
}

export enum StreamType {
  Request = 0,
  Response = 1,
}

// ---- memory handed back by the host ----

const RETURN_DATA = memory.data(8);
const RETURN_SIZE = memory.data(8);
const RETURN_EXTRA = memory.data(8);

/** Copies what the host wrote into memory from proxy_on_memory_allocate, and frees it. */
function takeReturned(): ArrayBuffer {
  const pointer = load<usize>(RETURN_DATA);
  const size = load<usize>(RETURN_SIZE);
  const out = new ArrayBuffer(<i32>size);
  if (pointer != 0 && size > 0) {
    memory.copy(changetype<usize>(out), pointer, size);
    heap.free(pointer);
  }
  return out;
}

function resetReturned(): void {
  store<usize>(RETURN_DATA, 0);
  store<usize>(RETURN_SIZE, 0);
}

function utf8(text: string): ArrayBuffer {
  return String.UTF8.encode(text);
}

function ptr(buffer: ArrayBuffer): usize {
  return changetype<usize>(buffer);
}

function len(buffer: ArrayBuffer): usize {
  return <usize>buffer.byteLength;
}

// ---- logging, time ----

export function log(level: LogLevel, message: string): void {
  const bytes = utf8(message);
  env.proxy_log(level, ptr(bytes), len(bytes));
}

export function currentTimeNanoseconds(): u64 {
  env.proxy_get_current_time_nanoseconds(RETURN_EXTRA);
  return load<u64>(RETURN_EXTRA);
}

export function setTickPeriodMilliseconds(milliseconds: u32): bool {
  return env.proxy_set_tick_period_milliseconds(milliseconds) == Status.Ok;
}

// ---- header maps ----

export class Header {
  key: string;
  value: string;

  constructor(key: string, value: string) {
    this.key = key;
    this.value = value;
  }
}

/** The ABI's serialization: count, (key length, value length) per pair, then each key and value followed by NUL. */
export function serializeHeaders(headers: Header[]): ArrayBuffer {
  const keys = new Array<ArrayBuffer>(headers.length);
  const values = new Array<ArrayBuffer>(headers.length);
  let size = 4 + headers.length * 8;
  for (let i = 0; i < headers.length; i++) {
    keys[i] = utf8(headers[i].key);
    values[i] = utf8(headers[i].value);
    size += keys[i].byteLength + values[i].byteLength + 2;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, <u32>headers.length);
  let data = base + 4 + <usize>headers.length * 8;
  for (let i = 0; i < headers.length; i++) {
    store<u32>(base + 4 + <usize>i * 8, <u32>keys[i].byteLength);
    store<u32>(base + 8 + <usize>i * 8, <u32>values[i].byteLength);
    memory.copy(data, changetype<usize>(keys[i]), keys[i].byteLength);
    data += <usize>keys[i].byteLength;
    store<u8>(data, 0);
    data += 1;
    memory.copy(data, changetype<usize>(values[i]), values[i].byteLength);
    data += <usize>values[i].byteLength;
    store<u8>(data, 0);
    data += 1;
  }
  return out;
}

export function deserializeHeaders(buffer: ArrayBuffer): Header[] {
  const headers = new Array<Header>();
  const size = <usize>buffer.byteLength;
  if (size < 4) return headers;
  const base = changetype<usize>(buffer);
  const count = <usize>load<u32>(base);
  let data: usize = 4 + count * 8;
  if (data > size) return headers;
  for (let i: usize = 0; i < count; i++) {
    const keySize = <usize>load<u32>(base + 4 + i * 8);
    const valueSize = <usize>load<u32>(base + 8 + i * 8);
    if (data + keySize + valueSize + 2 > size) break;
    const key = String.UTF8.decodeUnsafe(base + data, keySize);
    data += keySize + 1;
    const value = String.UTF8.decodeUnsafe(base + data, valueSize);
    data += valueSize + 1;
    headers.push(new Header(key, value));
  }
  return headers;
}

/** One of the stream's header maps (request or response headers or trailers). */
export class HeaderMap {
  readonly map: MapType;

  constructor(map: MapType) {
    this.map = map;
  }

  /** Every pair, in order. */
  all(): Header[] {
    resetReturned();
    if (env.proxy_get_header_map_pairs(this.map, RETURN_DATA, RETURN_SIZE) != Status.Ok) return new Array<Header>();
    return deserializeHeaders(takeReturned());
  }

  /** Replaces every pair. */
  setAll(headers: Header[]): bool {
    const bytes = serializeHeaders(headers);
    return env.proxy_set_header_map_pairs(this.map, ptr(bytes), len(bytes)) == Status.Ok;
  }

  /** A header's value (several values joined with ","), or null. */
  get(key: string): string | null {
    const name = utf8(key);
    resetReturned();
    if (env.proxy_get_header_map_value(this.map, ptr(name), len(name), RETURN_DATA, RETURN_SIZE) != Status.Ok) return null;
    return String.UTF8.decode(takeReturned());
  }

  /** Replaces every value of the header (adds it when absent). */
  set(key: string, value: string): bool {
    const name = utf8(key);
    const bytes = utf8(value);
    return env.proxy_replace_header_map_value(this.map, ptr(name), len(name), ptr(bytes), len(bytes)) == Status.Ok;
  }

  add(key: string, value: string): bool {
    const name = utf8(key);
    const bytes = utf8(value);
    return env.proxy_add_header_map_value(this.map, ptr(name), len(name), ptr(bytes), len(bytes)) == Status.Ok;
  }

  remove(key: string): bool {
    const name = utf8(key);
    return env.proxy_remove_header_map_value(this.map, ptr(name), len(name)) == Status.Ok;
  }
}

// ---- buffers (bodies, configuration) ----

export class Body {
  readonly buffer: BufferType;

  constructor(buffer: BufferType) {
    this.buffer = buffer;
  }

  /** The buffer's size so far (0 when there is none). */
  size(): u32 {
    if (env.proxy_get_buffer_status(this.buffer, RETURN_SIZE, RETURN_EXTRA) != Status.Ok) return 0;
    return <u32>load<usize>(RETURN_SIZE);
  }

  /** Up to maxSize bytes from start, or null when there is no such buffer. */
  bytes(start: u32 = 0, maxSize: u32 = u32.MAX_VALUE): ArrayBuffer | null {
    resetReturned();
    if (env.proxy_get_buffer_bytes(this.buffer, start, maxSize, RETURN_DATA, RETURN_SIZE) != Status.Ok) return null;
    return takeReturned();
  }

  /** The whole buffer as UTF-8 text, or null. */
  text(): string | null {
    const bytes = this.bytes();
    return bytes === null ? null : String.UTF8.decode(bytes);
  }

  /** Replaces `size` bytes at `start` with `value`. */
  splice(start: u32, size: u32, value: ArrayBuffer): bool {
    return env.proxy_set_buffer_bytes(this.buffer, start, size, ptr(value), len(value)) == Status.Ok;
  }

  /** Replaces the whole buffer. */
  replace(value: ArrayBuffer): bool {
    return this.splice(0, this.size(), value);
  }

  replaceText(text: string): bool {
    return this.replace(utf8(text));
  }
}

// ---- properties, local responses ----

/** A property by path, e.g. getProperty(["request", "path"]), or null. */
export function getProperty(path: string[]): ArrayBuffer | null {
  const bytes = utf8(path.join(String.fromCharCode(0)));
  resetReturned();
  if (env.proxy_get_property(ptr(bytes), len(bytes), RETURN_DATA, RETURN_SIZE) != Status.Ok) return null;
  return takeReturned();
}

export function getPropertyString(path: string[]): string | null {
  const value = getProperty(path);
  return value === null ? null : String.UTF8.decode(value);
}

export function setProperty(path: string[], value: ArrayBuffer): bool {
  const bytes = utf8(path.join(String.fromCharCode(0)));
  return env.proxy_set_property(ptr(bytes), len(bytes), ptr(value), len(value)) == Status.Ok;
}

/** Answers the client directly; return Action.Pause from the callback after it. */
export function sendLocalResponse(statusCode: u32, body: ArrayBuffer, headers: Header[] = [], details: string = ''): bool {
  const pairs = serializeHeaders(headers);
  const why = utf8(details);
  return env.proxy_send_local_response(statusCode, ptr(why), len(why), ptr(body), len(body), ptr(pairs), len(pairs), -1) == Status.Ok;
}

// ---- shared data, HTTP calls ----

export function getSharedData(key: string): ArrayBuffer | null {
  const name = utf8(key);
  resetReturned();
  if (env.proxy_get_shared_data(ptr(name), len(name), RETURN_DATA, RETURN_SIZE, RETURN_EXTRA) != Status.Ok) return null;
  return takeReturned();
}

export function setSharedData(key: string, value: ArrayBuffer, cas: u32 = 0): Status {
  const name = utf8(key);
  return env.proxy_set_shared_data(ptr(name), len(name), ptr(value), len(value), cas);
}

/** Calls an allowed upstream; answers the token (0 on failure). The answer arrives in onHttpCallResponse. */
export function dispatchHttpCall(upstream: string, headers: Header[], body: ArrayBuffer, timeoutMs: u32): u32 {
  const name = utf8(upstream);
  const pairs = serializeHeaders(headers);
  const trailers = serializeHeaders([]);
  const status = env.proxy_http_call(ptr(name), len(name), ptr(pairs), len(pairs), ptr(body), len(body), ptr(trailers), len(trailers), timeoutMs, RETURN_EXTRA);
  if (status != Status.Ok) return 0;
  const token = load<u32>(RETURN_EXTRA);
  callouts.set(token, activeContext);
  return token;
}

/** The status code of the last HTTP call response. */
export function httpCallStatus(): u32 {
  resetReturned();
  if (env.proxy_get_status(RETURN_EXTRA, RETURN_DATA, RETURN_SIZE) != Status.Ok) return 0;
  const code = load<u32>(RETURN_EXTRA);
  takeReturned();
  return code;
}

// ---- contexts ----

/** Callbacks and helpers shared by root and HTTP contexts. */
export class BaseContext {
  readonly contextId: u32;

  constructor(contextId: u32) {
    this.contextId = contextId;
  }

  /** false defers the context's deletion until done() is called. */
  onDone(): bool {
    return true;
  }

  onHttpCallResponse(_token: u32, _numHeaders: u32, _bodySize: u32, _numTrailers: u32): void {}

  readonly httpCallResponseHeaders: HeaderMap = new HeaderMap(MapType.HttpCallResponseHeaders);
  readonly httpCallResponseBody: Body = new Body(BufferType.HttpCallResponseBody);
}

/** The plugin's context: created first; it creates the HTTP context of each request. */
export class RootContext extends BaseContext {
  onVmStart(_vmConfigurationSize: u32): bool {
    return true;
  }

  /** The plugin configuration is ready: read it with pluginConfiguration.text(). */
  onConfigure(_pluginConfigurationSize: u32): bool {
    return true;
  }

  onTick(): void {}

  onQueueReady(_queueId: u32): void {}

  /** The context of a new HTTP stream; by default the factory given to setHttpContext. */
  createHttpContext(contextId: u32): HttpContext {
    return httpFactory(contextId, this);
  }

  readonly vmConfiguration: Body = new Body(BufferType.VmConfiguration);
  readonly pluginConfiguration: Body = new Body(BufferType.PluginConfiguration);
}

/** One HTTP request/response exchange. */
export class HttpContext extends BaseContext {
  readonly root: RootContext;

  constructor(contextId: u32, root: RootContext) {
    super(contextId);
    this.root = root;
  }

  onRequestHeaders(_numHeaders: u32, _endOfStream: bool): Action {
    return Action.Continue;
  }

  /** A chunk of the request body; Action.Pause buffers until endOfStream. */
  onRequestBody(_bodySize: u32, _endOfStream: bool): Action {
    return Action.Continue;
  }

  onRequestTrailers(_numTrailers: u32): Action {
    return Action.Continue;
  }

  onResponseHeaders(_numHeaders: u32, _endOfStream: bool): Action {
    return Action.Continue;
  }

  onResponseBody(_bodySize: u32, _endOfStream: bool): Action {
    return Action.Continue;
  }

  onResponseTrailers(_numTrailers: u32): Action {
    return Action.Continue;
  }

  /** The exchange is over (access-log time). */
  onLog(): void {}

  readonly requestHeaders: HeaderMap = new HeaderMap(MapType.RequestHeaders);
  readonly requestTrailers: HeaderMap = new HeaderMap(MapType.RequestTrailers);
  readonly responseHeaders: HeaderMap = new HeaderMap(MapType.ResponseHeaders);
  readonly responseTrailers: HeaderMap = new HeaderMap(MapType.ResponseTrailers);
  readonly requestBody: Body = new Body(BufferType.RequestBody);
  readonly responseBody: Body = new Body(BufferType.ResponseBody);

  /** Answers the client directly (text body); return Action.Pause after it. */
  sendLocalResponse(statusCode: u32, body: string, headers: Header[] = []): bool {
    return sendLocalResponse(statusCode, utf8(body), headers);
  }

  resumeRequest(): bool {
    return env.proxy_continue_stream(StreamType.Request) == Status.Ok;
  }

  resumeResponse(): bool {
    return env.proxy_continue_stream(StreamType.Response) == Status.Ok;
  }
}

// ---- registration and dispatch (used by ./exports) ----

function defaultRootFactory(contextId: u32): RootContext {
  return new RootContext(contextId);
}

function defaultHttpFactory(contextId: u32, root: RootContext): HttpContext {
  return new HttpContext(contextId, root);
}

let rootFactory: (contextId: u32) => RootContext = defaultRootFactory;
let httpFactory: (contextId: u32, root: RootContext) => HttpContext = defaultHttpFactory;

/** Registers the factory of root contexts (call it at the top level). */
export function setRootContext(factory: (contextId: u32) => RootContext): void {
  rootFactory = factory;
}

/** Registers the factory of HTTP contexts, used by RootContext.createHttpContext unless overridden. */
export function setHttpContext(factory: (contextId: u32, root: RootContext) => HttpContext): void {
  httpFactory = factory;
}

export const roots = new Map<u32, RootContext>();
export const streams = new Map<u32, HttpContext>();
const callouts = new Map<u32, u32>();
let activeContext: u32 = 0;

export function setActiveContext(contextId: u32): u32 {
  const previous = activeContext;
  activeContext = contextId;
  return previous;
}

/** The context that made the HTTP call with this token (forgotten after), else fallback. */
export function takeCallout(token: u32, fallback: u32): u32 {
  if (!callouts.has(token)) return fallback;
  const owner = callouts.get(token);
  callouts.delete(token);
  return owner;
}

export function createContext(contextId: u32, rootContextId: u32): void {
  if (rootContextId == 0) {
    roots.set(contextId, rootFactory(contextId));
  } else if (roots.has(rootContextId)) {
    streams.set(contextId, roots.get(rootContextId).createHttpContext(contextId));
  } else {
    streams.set(contextId, httpFactory(contextId, new RootContext(rootContextId)));
  }
}

export function deleteContext(contextId: u32): void {
  roots.delete(contextId);
  streams.delete(contextId);
}

/** Makes later host calls act on this context (e.g. a stream resumed from a root context). */
export function setEffectiveContext(contextId: u32): bool {
  return env.proxy_set_effective_context(contextId) == Status.Ok;
}
