/**
 * Where filtered requests (and a filter's proxy_http_call) go.
 *
 * The default is the built-in `echo` upstream, answered in-process: a JSON
 * description of the request it received, so the filter's changes to the
 * request are visible in the response. Anything else must be on the
 * operator's allow-list (KILN_TESTBED_UPSTREAMS, `name=origin` pairs), and
 * is addressed by name only: a version or a filter names an upstream, it
 * never supplies a host. The filter controls the path and headers, never the
 * origin — `:path` must be origin-form and `Host` is set to the upstream's —
 * so the test bed cannot become an open proxy.
 */
import http from 'node:http';
import https from 'node:https';
import { Agent as PoolAgent, type Dispatcher } from 'undici';
import type { HttpRequestData, HttpResponseData } from './http-message.ts';
import { Lru } from './lru.ts';
import { firstHeaderProblem, HOP_BY_HOP, KILN_OWNED, methodProblem, pathProblem } from './outgoing-headers.ts';
import type { HeaderPairs } from './proxy-wasm/header-map.ts';

export const ECHO_UPSTREAM = 'echo';

export interface UpstreamLimits {
  timeoutMs: number;
  maxResponseBytes: number;
  /** Sockets per owner and origin protocol (each owner has its own keep-alive pool). */
  socketsPerOwner: number;
  /** Owners whose pools are kept; the least recently used beyond are closed. */
  maxOwnerPools: number;
}

export interface SendOptions {
  /** The tenant whose connection pool carries the request. */
  ownerId: string;
  timeoutMs?: number;
  /** Bounds the response body below the general limit (HTTP calls). */
  maxResponseBytes?: number;
  /** Ends the request early (the caller is gone: a component's deadline passed). */
  signal?: AbortSignal;
}

/**
 * One owner's keep-alive connections: no socket is ever shared between
 * tenants. undici rather than node:http: a request through it cost about
 * half the CPU here (~170 against ~370 µs per small keep-alive request), on
 * the path of every preview request and every proxy_http_call.
 */
type OwnerPool = PoolAgent;

/** Why a request to an upstream failed: not sent, over a size or time limit, or anything else. */
export type UpstreamFailure = 'refused' | 'too_large' | 'timeout' | 'failed';

export class UpstreamError extends Error {
  constructor(
    readonly upstream: string,
    message: string,
    readonly failure: UpstreamFailure = 'failed',
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** The response passed the size limit (thrown inside sendHttp, classified by send). */
class ResponseTooLargeError extends Error {}
/** No response within the time limit (thrown inside sendHttp, classified by send). */
class UpstreamTimeoutError extends Error {}

export { HOP_BY_HOP };

const UPSTREAM_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** Parses `name=http://host:port,other=https://host`; throws a message naming the bad entry. */
export function parseUpstreamList(text: string | undefined): Map<string, URL> {
  const upstreams = new Map<string, URL>();
  for (const entry of (text ?? '').split(',').map((part) => part.trim()).filter((part) => part !== '')) {
    const at = entry.indexOf('=');
    const name = entry.slice(0, at).trim();
    const url = at === -1 ? undefined : parseUrl(entry.slice(at + 1).trim());
    if (!UPSTREAM_NAME.test(name) || name === ECHO_UPSTREAM) throw new Error(`test bed upstream ${JSON.stringify(entry)}: the name must be lower-case letters, digits, ".", "_" or "-" (and not "${ECHO_UPSTREAM}")`);
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
      throw new Error(`test bed upstream ${JSON.stringify(entry)}: give an origin such as http://127.0.0.1:9000 (no path, query or credentials)`);
    }
    upstreams.set(name, url);
  }
  return upstreams;
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

export class Upstreams {
  private readonly pools: Lru<string, OwnerPool>;
  private readonly open = new Set<OwnerPool>();

  constructor(
    private readonly allowed: ReadonlyMap<string, URL>,
    private readonly limits: UpstreamLimits,
  ) {
    this.pools = new Lru(limits.maxOwnerPools, (pool) => this.closePool(pool));
  }

  /** The owner's pool, created on first use. */
  private poolFor(ownerId: string): OwnerPool {
    let pool = this.pools.get(ownerId);
    if (!pool) {
      // `connections` bounds the sockets per origin, as maxSockets did for node:http's agent.
      pool = new PoolAgent({ connections: this.limits.socketsPerOwner, pipelining: 1 });
      this.open.add(pool);
      this.pools.set(ownerId, pool);
    }
    return pool;
  }

  private closePool(pool: OwnerPool): void {
    // Requests still running on an evicted pool finish; its idle sockets close now.
    void pool.close().catch(() => undefined);
    this.open.delete(pool);
  }

  /** Owner pools currently open (for tests and metrics). */
  get poolCount(): number {
    return this.open.size;
  }

  names(): string[] {
    return [ECHO_UPSTREAM, ...this.allowed.keys()];
  }

  has(name: string): boolean {
    return name === ECHO_UPSTREAM || this.allowed.has(name);
  }

  async send(name: string, request: HttpRequestData, options: SendOptions): Promise<HttpResponseData> {
    if (name === ECHO_UPSTREAM) return echoResponse(request);
    const origin = this.allowed.get(name);
    if (!origin) throw new UpstreamError(name, `no upstream named ${JSON.stringify(name)}; allowed: ${this.names().join(', ')}`, 'refused');
    const problem = requestProblem(request);
    if (problem !== undefined) throw new UpstreamError(name, `the request to ${name} was not sent: ${problem}`, 'refused');
    const pool = this.poolFor(options.ownerId);
    const timeoutMs = Math.min(options.timeoutMs || this.limits.timeoutMs, this.limits.timeoutMs);
    const maxBytes = Math.min(options.maxResponseBytes ?? this.limits.maxResponseBytes, this.limits.maxResponseBytes);
    // undici cannot send request trailers: the rare request that has them goes on a connection of its own.
    const sent = request.trailers.length > 0 ? sendWithTrailers(origin, request, timeoutMs, maxBytes, options.signal) : sendPooled(pool, origin, request, timeoutMs, maxBytes, options.signal);
    return sent.catch((error: unknown) => {
      if (error instanceof UpstreamError) throw error;
      const failure: UpstreamFailure = error instanceof ResponseTooLargeError ? 'too_large' : error instanceof UpstreamTimeoutError ? 'timeout' : 'failed';
      throw new UpstreamError(name, `upstream ${name} failed: ${error instanceof Error ? error.message : String(error)}`, failure);
    });
  }

  close(): void {
    for (const pool of [...this.open]) this.closePool(pool);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The echo upstream's answer: the request it received, as JSON. */
export function echoResponse(request: HttpRequestData): HttpResponseData {
  let body: { text: string } | { base64: string };
  try {
    body = { text: decoder.decode(request.body) };
  } catch {
    body = { base64: Buffer.from(request.body).toString('base64') };
  }
  const description = { upstream: ECHO_UPSTREAM, method: request.method, path: request.path, authority: request.authority, headers: request.headers, body, trailers: request.trailers };
  return { status: 200, headers: [['content-type', 'application/json'], ['x-kiln-upstream', ECHO_UPSTREAM]], body: new TextEncoder().encode(JSON.stringify(description)), trailers: [] };
}

/** An upstream that failed, as the response the filter and the client see (a proxy's 502). */
export function upstreamFailureResponse(error: UpstreamError): HttpResponseData {
  const body = JSON.stringify({ error: { code: 'upstream_failed', message: error.message } });
  return { status: 502, headers: [['content-type', 'application/json'], ['x-kiln-upstream-error', error.upstream]], body: new TextEncoder().encode(body), trailers: [] };
}

/** A request without trailers, on the owner's pool. */
function sendPooled(pool: Dispatcher, origin: URL, request: HttpRequestData, timeoutMs: number, maxBytes: number, signal?: AbortSignal): Promise<HttpResponseData> {
  return new Promise<HttpResponseData>((resolve, reject) => {
    let abortRequest: ((reason: Error) => void) | undefined;
    let settled = false;
    let status = 502;
    let headers: HeaderPairs = [];
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (): void => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (error: Error): void => {
      if (settled) return;
      settle();
      reject(error);
    };
    let stopped: Error | undefined;
    // Through undici's abort once dispatched (it then reports the same error to onError). Before that the
    // request may still wait in the pool's queue: it fails now, and is aborted when its turn comes (onConnect).
    const stop = (error: Error): void => {
      if (abortRequest) return abortRequest(error);
      stopped = error;
      fail(error);
    };
    const onAbort = (): void => stop(signal?.reason instanceof Error ? signal.reason : new Error('the request was abandoned'));
    // One timer per request, cleared on the answer: cheaper than an AbortSignal on the hot path.
    const timer = setTimeout(() => stop(new UpstreamTimeoutError(`no response within ${timeoutMs} ms`)), timeoutMs);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const options: Dispatcher.DispatchOptions = {
      origin: origin.origin,
      // Checked to be a token by requestProblem before anything is sent.
      method: request.method as Dispatcher.HttpMethod,
      path: request.path,
      headers: outgoingHeaders(origin, request).flat(),
      body: request.body,
    };
    const handler: Dispatcher.DispatchHandlers = {
      onConnect: (abort) => {
        if (stopped) return abort(stopped);
        abortRequest = abort;
      },
      onHeaders: (statusCode, rawHeaders) => {
        status = statusCode;
        headers = incomingPairs(rawHeaders);
        return true;
      },
      onData: (chunk) => {
        size += chunk.length;
        if (size > maxBytes) {
          stop(new ResponseTooLargeError(`the response is larger than ${maxBytes} bytes`));
          return false;
        }
        chunks.push(chunk);
        return true;
      },
      onComplete: (rawTrailers) => {
        if (settled) return;
        settle();
        resolve({ status, headers, body: new Uint8Array(Buffer.concat(chunks)), trailers: incomingPairs(rawTrailers ?? []) });
      },
      onError: fail,
    };
    try {
      pool.dispatch(options, handler);
    } catch (error) {
      fail(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

/**
 * A request with trailers, through node:http on a connection used once
 * (chunked, with the trailers Kiln allows). Such requests are rare (a
 * client's or a filter's trailers), so they get no pool of their own: the
 * owner's pooled sockets stay the one bound of its connections.
 */
function sendWithTrailers(origin: URL, request: HttpRequestData, timeoutMs: number, maxBytes: number, signal?: AbortSignal): Promise<HttpResponseData> {
  const client = origin.protocol === 'https:' ? https : http;
  const headers = outgoingHeaders(origin, request);
  return new Promise<HttpResponseData>((resolve, reject) => {
    const outgoing = client.request({ protocol: origin.protocol, hostname: origin.hostname, port: origin.port, method: request.method, path: request.path, headers: headers.flat(), agent: false, ...(signal ? { signal } : {}) }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          response.destroy(new ResponseTooLargeError(`the response is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('error', reject);
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 502,
          headers: incomingPairs(response.rawHeaders),
          body: new Uint8Array(Buffer.concat(chunks)),
          trailers: incomingPairs(response.rawTrailers),
        }),
      );
    });
    const timer = setTimeout(() => outgoing.destroy(new UpstreamTimeoutError(`no response within ${timeoutMs} ms`)), timeoutMs);
    outgoing.on('close', () => clearTimeout(timer));
    outgoing.on('error', reject);
    outgoing.addTrailers(request.trailers.map(([key, value]): [string, string] => [key.toLowerCase(), value]).filter(([key]) => !KILN_OWNED.has(key)));
    outgoing.end(request.body);
  });
}

/**
 * A request Kiln refuses to write: an invalid method, path, header name or
 * value. Kiln-owned headers (Host, Content-Length, hop-by-hop) are not a
 * problem here: outgoingHeaders drops them and sets its own.
 */
export function requestProblem(request: HttpRequestData): string | undefined {
  const fields = (pairs: HeaderPairs): HeaderPairs => pairs.map(([key, value]): [string, string] => [key.toLowerCase(), value]).filter(([key]) => !KILN_OWNED.has(key));
  return (
    methodProblem(request.method) ??
    pathProblem(request.path) ??
    firstHeaderProblem(fields(request.headers)) ??
    firstHeaderProblem(fields(request.trailers)) ??
    firstHeaderProblem([['x-forwarded-host', request.authority]])
  );
}

function outgoingHeaders(origin: URL, request: HttpRequestData): Array<[string, string]> {
  const headers: Array<[string, string]> = request.headers.map(([key, value]): [string, string] => [key.toLowerCase(), value]).filter(([key]) => !KILN_OWNED.has(key));
  headers.push(['host', origin.host], ['x-forwarded-host', request.authority]);
  if (request.trailers.length > 0) headers.push(['trailer', request.trailers.map(([key]) => key).join(', ')]);
  else headers.push(['content-length', String(request.body.length)]);
  return headers;
}

/** Raw header lines as pairs, hop-by-hop ones dropped; undici hands them over as bytes (latin1, as node:http reads them). */
function incomingPairs(raw: ReadonlyArray<string | Buffer>): HeaderPairs {
  const text = (part: string | Buffer | undefined): string => (part === undefined ? '' : typeof part === 'string' ? part : part.toString('latin1'));
  const pairs: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = text(raw[i]).toLowerCase();
    if (!HOP_BY_HOP.has(key)) pairs.push([key, text(raw[i + 1])]);
  }
  return pairs;
}
