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

/** One owner's keep-alive agents: no socket is ever shared between tenants. */
interface OwnerPool {
  http: http.Agent;
  https: https.Agent;
}

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
      const options = { keepAlive: true, maxSockets: this.limits.socketsPerOwner, maxFreeSockets: this.limits.socketsPerOwner };
      pool = { http: new http.Agent(options), https: new https.Agent(options) };
      this.open.add(pool);
      this.pools.set(ownerId, pool);
    }
    return pool;
  }

  private closePool(pool: OwnerPool): void {
    // Requests still running on an evicted pool finish; destroy() only closes its sockets.
    pool.http.destroy();
    pool.https.destroy();
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
    return sendHttp(origin, request, timeoutMs, maxBytes, origin.protocol === 'https:' ? pool.https : pool.http, options.signal).catch((error: unknown) => {
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

function sendHttp(origin: URL, request: HttpRequestData, timeoutMs: number, maxBytes: number, agent: http.Agent, signal?: AbortSignal): Promise<HttpResponseData> {
  const client = origin.protocol === 'https:' ? https : http;
  const headers = outgoingHeaders(origin, request);
  return new Promise<HttpResponseData>((resolve, reject) => {
    const outgoing = client.request({ protocol: origin.protocol, hostname: origin.hostname, port: origin.port, method: request.method, path: request.path, headers: headers.flat(), agent, ...(signal ? { signal } : {}) }, (response) => {
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
    // One timer per request, cleared on the response: cheaper than an AbortSignal on the hot path.
    const timer = setTimeout(() => outgoing.destroy(new UpstreamTimeoutError(`no response within ${timeoutMs} ms`)), timeoutMs);
    outgoing.on('close', () => clearTimeout(timer));
    outgoing.on('error', reject);
    if (request.trailers.length > 0) outgoing.addTrailers(request.trailers.map(([key, value]): [string, string] => [key.toLowerCase(), value]).filter(([key]) => !KILN_OWNED.has(key)));
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

function incomingPairs(raw: string[]): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = (raw[i] ?? '').toLowerCase();
    if (!HOP_BY_HOP.has(key)) pairs.push([key, raw[i + 1] ?? '']);
  }
  return pairs;
}
