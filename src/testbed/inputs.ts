/**
 * API input → the test bed's plain data: bodies given as text, base64 or
 * JSON become bytes, headers become lower-case pairs. Limits are checked
 * here so a request the test bed would refuse is a 4xx before any worker is
 * involved.
 */
import { badRequest, tooLarge } from '../errors.ts';
import type { BodyInput, HeadersInput, RequestInput, ResponseInput } from './api-schemas.ts';
import type { HttpRequestData, HttpResponseData } from './http-message.ts';
import type { HeaderPairs } from './proxy-wasm/header-map.ts';

const encoder = new TextEncoder();

export function bodyBytes(input: BodyInput | undefined, maxBytes: number, where: string): Uint8Array {
  let bytes: Uint8Array;
  if (input === undefined) bytes = new Uint8Array(0);
  else if ('text' in input) bytes = encoder.encode(input.text);
  else if ('base64' in input) bytes = new Uint8Array(Buffer.from(input.base64, 'base64'));
  else bytes = encoder.encode(JSON.stringify(input.json) ?? 'null');
  if (bytes.length > maxBytes) throw tooLarge('body_too_large', `${where} is ${bytes.length} bytes; the test bed takes at most ${maxBytes}`);
  return bytes;
}

export function headerPairs(input: HeadersInput | undefined, where: string): HeaderPairs {
  if (input === undefined) return [];
  const pairs: HeaderPairs = Array.isArray(input)
    ? input.map(([key, value]) => [key.toLowerCase(), value])
    : Object.entries(input).flatMap(([key, value]) => (Array.isArray(value) ? value : [value]).map((v): [string, string] => [key.toLowerCase(), v]));
  const pseudo = pairs.find(([key]) => key.startsWith(':'));
  if (pseudo) throw badRequest('invalid_headers', `${where}: ${pseudo[0]} is a pseudo-header; set method, path, authority and scheme (or status) as fields instead`);
  return pairs;
}

export function requestData(input: RequestInput | undefined, defaultAuthority: string, maxBodyBytes: number): HttpRequestData {
  return {
    method: (input?.method ?? 'GET').toUpperCase(),
    path: input?.path ?? '/',
    authority: input?.authority ?? defaultAuthority,
    scheme: input?.scheme ?? 'http',
    headers: headerPairs(input?.headers, 'request.headers'),
    body: bodyBytes(input?.body, maxBodyBytes, 'request.body'),
    trailers: headerPairs(input?.trailers, 'request.trailers'),
  };
}

export function responseData(input: ResponseInput, maxBodyBytes: number, where: string): HttpResponseData {
  return {
    status: input.status,
    headers: headerPairs(input.headers, `${where}.headers`),
    body: bodyBytes(input.body, maxBodyBytes, `${where}.body`),
    trailers: headerPairs(input.trailers, `${where}.trailers`),
  };
}
