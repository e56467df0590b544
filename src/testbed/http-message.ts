/**
 * HTTP requests and responses as plain data (they cross to worker threads
 * by structured clone), and their conversion to and from the header maps a
 * filter sees, where the request line and status are pseudo-headers
 * (`:method`, `:path`, `:authority`, `:scheme`, `:status`) as in Envoy.
 */
import type { HeaderPairs } from './proxy-wasm/header-map.ts';

export interface HttpRequestData {
  method: string;
  /** Origin-form: path and query, starting with "/". */
  path: string;
  authority: string;
  scheme: string;
  /** Regular headers, lower-case keys, no pseudo-headers. */
  headers: HeaderPairs;
  body: Uint8Array;
  trailers: HeaderPairs;
}

export interface HttpResponseData {
  status: number;
  headers: HeaderPairs;
  body: Uint8Array;
  trailers: HeaderPairs;
}

/** Where the request came from, for properties such as source.address. */
export interface ConnectionInfo {
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
  protocol: string;
  requestId: string;
}

export function requestHeaderPairs(request: HttpRequestData): HeaderPairs {
  return [[':method', request.method], [':path', request.path], [':authority', request.authority], [':scheme', request.scheme], ...request.headers];
}

export function responseHeaderPairs(response: HttpResponseData): HeaderPairs {
  return [[':status', String(response.status)], ...response.headers];
}

const withoutPseudo = (pairs: HeaderPairs): HeaderPairs => pairs.filter(([key]) => !key.startsWith(':'));
const pseudo = (pairs: HeaderPairs, key: string): string | undefined => pairs.find(([k]) => k === key)?.[1];

/** The request as the filter left it; a pseudo-header it removed keeps the original value. */
export function requestFromPairs(pairs: HeaderPairs, original: HttpRequestData, body: Uint8Array, trailers: HeaderPairs): HttpRequestData {
  return {
    method: pseudo(pairs, ':method') ?? original.method,
    path: pseudo(pairs, ':path') ?? original.path,
    authority: pseudo(pairs, ':authority') ?? original.authority,
    scheme: pseudo(pairs, ':scheme') ?? original.scheme,
    headers: withoutPseudo(pairs),
    body,
    trailers: withoutPseudo(trailers),
  };
}

/** A `:status` that is not a valid HTTP status is a filter bug the caller reports; here it falls back to `fallback`. */
export function responseFromPairs(pairs: HeaderPairs, fallback: number, body: Uint8Array, trailers: HeaderPairs): HttpResponseData {
  const status = Number(pseudo(pairs, ':status'));
  return {
    status: Number.isInteger(status) && status >= 100 && status <= 999 ? status : fallback,
    headers: withoutPseudo(pairs),
    body,
    trailers: withoutPseudo(trailers),
  };
}
