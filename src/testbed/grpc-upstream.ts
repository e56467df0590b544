/**
 * A filter's gRPC calls and streams, performed over HTTP/2 (node:http2) to
 * upstreams on the operator's allow-list — by name, like HTTP calls; the
 * filter never supplies a host (decision 0033).
 *
 * The worker frames the request (POST /service/method, metadata, the
 * length-prefixed messages; proxy-wasm/host/grpc-calls.ts); this module
 * adds what Kiln owns (content-type, te, grpc-timeout, :authority), sends
 * it on the owner's own HTTP/2 session to that origin, and returns the
 * answer as plain data: initial metadata, the framed response body, the
 * trailing metadata. What goes wrong on the way becomes the gRPC status a
 * gRPC client library would make up locally (UNAVAILABLE, DEADLINE_EXCEEDED,
 * RESOURCE_EXHAUSTED), in trailers of a response with HTTP status 0, and
 * names the limit when one ended the call.
 */
import http2 from 'node:http2';
import type { HttpRequestData, HttpResponseData } from './http-message.ts';
import { Lru } from './lru.ts';
import type { HeaderPairs } from './proxy-wasm/header-map.ts';
import { UpstreamError } from './upstream.ts';

export interface GrpcUpstreamLimits {
  /** The longest a call may take (upstreamTimeoutMs); a filter's own timeout may only be shorter. */
  timeoutMs: number;
  /** Response bytes (frames included) per call (maxHttpCallResponseBytes). */
  maxResponseBytes: number;
  /** Owner sessions kept; the least recently used beyond are closed. */
  maxSessions: number;
}

export interface GrpcSendOptions {
  ownerId: string;
  /** 0: the limit. */
  timeoutMs: number;
}

/** gRPC status codes made up here (grpc/doc/statuscodes.md). */
const CANCELLED = 1;
const INTERNAL = 13;
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;

export class GrpcUpstreams {
  /** One HTTP/2 session per owner and origin: a tenant's streams never share a connection with another's. */
  private readonly sessions: Lru<string, http2.ClientHttp2Session>;
  private readonly open = new Set<http2.ClientHttp2Session>();

  constructor(
    private readonly allowed: ReadonlyMap<string, URL>,
    private readonly limits: GrpcUpstreamLimits,
  ) {
    // An evicted session finishes the streams it carries, then closes.
    this.sessions = new Lru(limits.maxSessions, (session) => session.close());
  }

  async send(name: string, request: HttpRequestData, options: GrpcSendOptions): Promise<HttpResponseData> {
    const origin = this.allowed.get(name);
    if (!origin) throw new UpstreamError(name, `no upstream named ${JSON.stringify(name)} for gRPC`, 'refused');
    const timeoutMs = Math.min(options.timeoutMs || this.limits.timeoutMs, this.limits.timeoutMs);
    const session = this.session(options.ownerId, origin);
    return exchange(session, origin, request, timeoutMs, this.limits.maxResponseBytes, options.timeoutMs > 0 && options.timeoutMs <= this.limits.timeoutMs);
  }

  /**
   * Opens a live stream: its headers (and any body already framed) go now,
   * later messages with write(); what arrives is read with next(). The
   * stream's whole life is bounded by the filter's timeout or the limit, and
   * what it receives by maxResponseBytes.
   */
  openStream(name: string, request: HttpRequestData, options: GrpcSendOptions): LiveGrpcStream {
    const origin = this.allowed.get(name);
    if (!origin) return new ClosedStream(madeUp(UNAVAILABLE, `no upstream named ${JSON.stringify(name)} for gRPC`));
    const timeoutMs = Math.min(options.timeoutMs || this.limits.timeoutMs, this.limits.timeoutMs);
    const session = this.session(options.ownerId, origin);
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(requestHeaders(origin, request, timeoutMs));
    } catch (error) {
      return new ClosedStream(madeUp(UNAVAILABLE, `the upstream could not be reached: ${error instanceof Error ? error.message : String(error)}`));
    }
    const live = new Http2LiveStream(stream, timeoutMs, this.limits.maxResponseBytes, options.timeoutMs > 0 && options.timeoutMs <= this.limits.timeoutMs);
    if (request.body.length > 0) live.write(request.body, false);
    return live;
  }

  close(): void {
    for (const session of this.open) session.destroy();
    this.open.clear();
  }

  private session(ownerId: string, origin: URL): http2.ClientHttp2Session {
    const key = `${ownerId} ${origin.origin}`;
    const existing = this.sessions.get(key);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = http2.connect(origin.origin);
    // A session that fails or ends is forgotten; its streams fail on their own.
    const forget = () => {
      this.open.delete(session);
      if (this.sessions.get(key) === session) this.sessions.delete(key);
    };
    session.on('error', forget);
    session.on('close', forget);
    session.on('goaway', forget);
    session.unref();
    this.open.add(session);
    this.sessions.set(key, session);
    return session;
  }
}

/** The HTTP/2 request headers of a call: what Kiln owns, then the filter's metadata (a repeated key keeps every value). */
function requestHeaders(origin: URL, request: HttpRequestData, timeoutMs: number): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': request.path,
    ':authority': origin.host,
    ':scheme': origin.protocol.slice(0, -1),
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-timeout': `${timeoutMs}m`,
  };
  // The worker refused pseudo-headers and the names above.
  for (const [key, value] of request.headers) headers[key] = key in headers ? [headers[key] as string, value].flat() : value;
  return headers;
}

function exchange(session: http2.ClientHttp2Session, origin: URL, request: HttpRequestData, timeoutMs: number, maxBytes: number, filterTimeout: boolean): Promise<HttpResponseData> {
  const headers = requestHeaders(origin, request, timeoutMs);
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request(headers);
  } catch (error) {
    return Promise.resolve(madeUp(UNAVAILABLE, `the upstream could not be reached: ${error instanceof Error ? error.message : String(error)}`));
  }
  const deadline = deadlineMessage(timeoutMs, filterTimeout);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (response: HttpResponseData): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      resolve(response);
    };
    const timer = setTimeout(() => finish(madeUp(DEADLINE_EXCEEDED, deadline)), timeoutMs);
    let status = 0;
    let initial: HeaderPairs = [];
    let trailers: HeaderPairs = [];
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('response', (received) => {
      status = Number(received[':status'] ?? 0);
      initial = metadataPairs(received);
    });
    stream.on('trailers', (received) => {
      trailers = metadataPairs(received);
    });
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) finish(madeUp(RESOURCE_EXHAUSTED, `the answer is larger than ${maxBytes} bytes (limit maxHttpCallResponseBytes)`));
      else chunks.push(chunk);
    });
    stream.on('error', (error) => finish(madeUp(UNAVAILABLE, `the upstream failed: ${error.message}`)));
    stream.on('close', () => {
      if (status === 0) finish(madeUp(UNAVAILABLE, `the upstream closed the stream without an answer (HTTP/2 code ${stream.rstCode ?? 0})`));
      else finish({ status, headers: initial, body: new Uint8Array(Buffer.concat(chunks)), trailers });
    });
    stream.end(request.body);
  });
}

function deadlineMessage(timeoutMs: number, filterTimeout: boolean): string {
  return `no answer within ${timeoutMs} ms${filterTimeout ? ' (the filter’s timeout)' : ' (limit upstreamTimeoutMs)'}`;
}

/** What a live stream received since the last update: complete messages only, framed. */
export interface GrpcStreamUpdate {
  /** Status 0 (made up here) or the HTTP status; the initial metadata; new messages; trailers when final. */
  response: HttpResponseData;
  /** Nothing follows: the trailers and status are in `response`. */
  final: boolean;
}

export interface LiveGrpcStream {
  /** Sends length-prefixed messages; `end`: half-closes after them. Ignored once the stream is over. */
  write(framed: Uint8Array, end: boolean): void;
  /** Resets the stream; a pending next() gets a final CANCELLED update. */
  cancel(): void;
  /** Everything received since the last call, once there is something new (or the end). */
  next(): Promise<GrpcStreamUpdate>;
}

/** A stream that failed before it was opened: its only update is the final one. */
class ClosedStream implements LiveGrpcStream {
  constructor(private readonly answer: HttpResponseData) {}
  write(): void {}
  cancel(): void {}
  next(): Promise<GrpcStreamUpdate> {
    return Promise.resolve({ response: this.answer, final: true });
  }
}

/**
 * One live HTTP/2 stream. Received bytes are kept until next() takes them,
 * cut at the last complete message (a message split over DATA frames is
 * delivered whole); a compressed message ends the stream INTERNAL, as the
 * test bed does not decompress.
 */
class Http2LiveStream implements LiveGrpcStream {
  private status = 0;
  private initial: HeaderPairs = [];
  private initialTaken = false;
  private buffered: Buffer = Buffer.alloc(0);
  private received = 0;
  private ended: HttpResponseData | undefined;
  private endTaken = false;
  private waiter: ((update: GrpcStreamUpdate) => void) | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    timeoutMs: number,
    maxBytes: number,
    filterTimeout: boolean,
  ) {
    this.timer = setTimeout(() => this.finish(madeUp(DEADLINE_EXCEEDED, deadlineMessage(timeoutMs, filterTimeout))), timeoutMs);
    let trailers: HeaderPairs = [];
    stream.on('response', (received) => {
      this.status = Number(received[':status'] ?? 0);
      this.initial = metadataPairs(received);
      this.wake();
    });
    stream.on('trailers', (received) => {
      trailers = metadataPairs(received);
    });
    stream.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.received > maxBytes) return this.finish(madeUp(RESOURCE_EXHAUSTED, `the answer is larger than ${maxBytes} bytes (limit maxHttpCallResponseBytes)`));
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      this.wake();
    });
    stream.on('error', (error) => this.finish(madeUp(UNAVAILABLE, `the upstream failed: ${error.message}`)));
    stream.on('close', () => {
      if (this.status === 0) this.finish(madeUp(UNAVAILABLE, `the upstream closed the stream without an answer (HTTP/2 code ${stream.rstCode ?? 0})`));
      // What is left unframed goes with the end, where a broken prefix makes the status INTERNAL.
      else this.finish({ status: this.status, headers: this.initial, body: new Uint8Array(0), trailers });
    });
  }

  write(framed: Uint8Array, end: boolean): void {
    if (this.ended || this.stream.destroyed) return;
    if (framed.length > 0) this.stream.write(framed);
    if (end) this.stream.end();
  }

  cancel(): void {
    this.finish(madeUp(CANCELLED, 'cancelled by the filter'));
  }

  next(): Promise<GrpcStreamUpdate> {
    const update = this.take();
    if (update) return Promise.resolve(update);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  private finish(answer: HttpResponseData): void {
    if (this.ended) return;
    this.ended = answer;
    clearTimeout(this.timer);
    this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.wake();
  }

  private wake(): void {
    if (!this.waiter) return;
    const update = this.take();
    if (!update) return;
    const resolve = this.waiter;
    this.waiter = undefined;
    resolve(update);
  }

  /** The next update, or undefined when nothing new arrived. */
  private take(): GrpcStreamUpdate | undefined {
    if (this.endTaken) return undefined;
    if (this.ended) {
      this.endTaken = true;
      const body = new Uint8Array(this.ended.status === 0 ? 0 : this.buffered.length);
      if (this.ended.status !== 0) body.set(this.buffered);
      return { response: { ...this.ended, body }, final: true };
    }
    const complete = completeMessagesLength(this.buffered);
    if (complete === 'compressed') {
      this.finish(madeUp(INTERNAL, 'the upstream sent a compressed message; the test bed does not decompress'));
      return this.take();
    }
    if (this.status === 0 || (complete === 0 && this.initialTaken)) return undefined;
    this.initialTaken = true;
    const body = new Uint8Array(this.buffered.subarray(0, complete));
    this.buffered = this.buffered.subarray(complete);
    return { response: { status: this.status, headers: this.initial, body, trailers: [] }, final: false };
  }
}

/** Bytes of `buffer` that hold whole messages; 'compressed' when one has the compressed flag. */
function completeMessagesLength(buffer: Buffer): number | 'compressed' {
  let at = 0;
  while (at + 5 <= buffer.length) {
    if (buffer[at] !== 0) return 'compressed';
    const end = at + 5 + buffer.readUInt32BE(at + 1);
    if (end > buffer.length) break;
    at = end;
  }
  return at;
}

/** A status made up here, as a gRPC client library does when no answer came: HTTP status 0, the status in trailers. */
function madeUp(code: number, message: string): HttpResponseData {
  return { status: 0, headers: [], body: new Uint8Array(0), trailers: [['grpc-status', String(code)], ['grpc-message', message]] };
}

/** Received HTTP/2 headers as metadata pairs: no pseudo-headers, lower-case names, repeated values kept. */
function metadataPairs(headers: http2.IncomingHttpHeaders): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(':') || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) pairs.push([key.toLowerCase(), String(item)]);
  }
  return pairs;
}
