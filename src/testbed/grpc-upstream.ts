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

function exchange(session: http2.ClientHttp2Session, origin: URL, request: HttpRequestData, timeoutMs: number, maxBytes: number, filterTimeout: boolean): Promise<HttpResponseData> {
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': request.path,
    ':authority': origin.host,
    ':scheme': origin.protocol.slice(0, -1),
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-timeout': `${timeoutMs}m`,
  };
  // The worker refused pseudo-headers and the names above; a repeated metadata key keeps every value.
  for (const [key, value] of request.headers) headers[key] = key in headers ? [headers[key] as string, value].flat() : value;
  let stream: http2.ClientHttp2Stream;
  try {
    stream = session.request(headers);
  } catch (error) {
    return Promise.resolve(madeUp(UNAVAILABLE, `the upstream could not be reached: ${error instanceof Error ? error.message : String(error)}`));
  }
  const deadline = `no answer within ${timeoutMs} ms${filterTimeout ? ' (the filter’s timeout)' : ' (limit upstreamTimeoutMs)'}`;
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
