/**
 * Test bed results as JSON for the API: bytes become text (plus base64 when
 * they are not UTF-8, so nothing is lost), headers stay ordered pairs, and
 * the filter's effect on the request and response is spelled out as the
 * headers it added and removed.
 */
import type { ExchangeReport } from './exchange.ts';
import type { HttpRequestData, HttpResponseData } from './http-message.ts';
import type { HeaderPairs } from './proxy-wasm/header-map.ts';
import type { FilterResult, FunctionResult } from './testbed.ts';

export interface BodyJson {
  text: string;
  base64?: string;
  size: number;
  truncated?: boolean;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const lossyUtf8 = new TextDecoder('utf-8');

export function bodyJson(bytes: Uint8Array, truncated?: boolean): BodyJson {
  const out: BodyJson = { text: '', size: bytes.length };
  try {
    out.text = strictUtf8.decode(bytes);
  } catch {
    out.text = lossyUtf8.decode(bytes);
    out.base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  }
  if (truncated) out.truncated = true;
  return out;
}

export interface HeaderChanges {
  added: HeaderPairs;
  removed: HeaderPairs;
}

/** Pairs in `after` but not `before` and the reverse, counting repeated pairs. */
export function headerChanges(before: HeaderPairs, after: HeaderPairs): HeaderChanges {
  const remaining = [...before];
  const added: HeaderPairs = [];
  for (const pair of after) {
    const index = remaining.findIndex(([k, v]) => k === pair[0] && v === pair[1]);
    if (index === -1) added.push(pair);
    else remaining.splice(index, 1);
  }
  return { added, removed: remaining };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

export function functionResultJson(result: FunctionResult) {
  return {
    kind: 'wasi-command' as const,
    outcome: result.outcome,
    ...(result.message !== undefined ? { message: result.message } : {}),
    ...(result.stack ? { stack: result.stack } : {}),
    exitCode: result.exitCode,
    stdout: bodyJson(result.stdout, result.stdoutTruncated),
    stderr: bodyJson(result.stderr, result.stderrTruncated),
    durationMs: round(result.durationMs),
    unimplemented: result.unimplemented,
    module: result.module,
  };
}

function requestJson(original: HttpRequestData, report: ExchangeReport) {
  const forwarded = report.forwarded;
  const seen = forwarded ?? original;
  return {
    forwarded: forwarded !== undefined,
    method: seen.method,
    path: seen.path,
    authority: seen.authority,
    scheme: seen.scheme,
    headers: seen.headers,
    body: bodyJson(seen.body),
    trailers: seen.trailers,
    changes: forwarded
      ? {
          headers: headerChanges(original.headers, forwarded.headers),
          trailers: headerChanges(original.trailers, forwarded.trailers),
          method: forwarded.method !== original.method,
          path: forwarded.path !== original.path,
          body: !sameBytes(forwarded.body, original.body),
        }
      : null,
  };
}

function messageJson(response: HttpResponseData) {
  return { status: response.status, headers: response.headers, body: bodyJson(response.body), trailers: response.trailers };
}

function responseJson(report: ExchangeReport) {
  const { response, upstreamResponse } = report;
  if (!response) return null;
  const before = report.responseSource === 'upstream' ? upstreamResponse : undefined;
  return {
    source: report.responseSource ?? 'upstream',
    ...messageJson(response),
    changes: before
      ? { headers: headerChanges(before.headers, response.headers), status: before.status !== response.status, body: !sameBytes(before.body, response.body) }
      : null,
  };
}

export function filterResultJson(result: FilterResult, original: HttpRequestData, upstream: { name: string; simulated: boolean }) {
  const { recording } = result;
  return {
    kind: 'proxy-wasm' as const,
    outcome: result.outcome,
    ...(result.message !== undefined ? { message: result.message } : {}),
    ...(result.stack ? { stack: result.stack } : {}),
    request: requestJson(original, result),
    upstream: result.upstreamResponse
      ? { name: upstream.simulated ? 'simulated' : upstream.name, ...messageJson(result.upstreamResponse), ...(result.upstreamError ? { error: result.upstreamError } : {}) }
      : null,
    response: responseJson(result),
    localResponse: result.localResponse
      ? { status: result.localResponse.status, details: result.localResponse.details, sentFrom: result.localResponse.sentFrom, grpcStatus: result.localResponse.grpcStatus }
      : null,
    logs: recording.logs,
    callbacks: recording.callbacks.map((c) => ({ ...c, durationMs: round(c.durationMs) })),
    httpCalls: result.httpCalls.map((c) => ({ ...c, durationMs: round(c.durationMs) })),
    metrics: result.metrics,
    sharedData: result.sharedData,
    unimplemented: recording.unimplemented,
    notes: recording.notes,
    module: result.module,
    timings: { totalMs: round(result.durationMs), guestMs: round(result.guestMs), vmStarted: result.vmStarted },
  };
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
