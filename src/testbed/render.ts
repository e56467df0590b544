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

/** How much of each body a result shows (maxResultBodyBytes): results are rendered on the API's event loop. */
export interface RenderLimits {
  maxBodyBytes: number;
}

const UNLIMITED: RenderLimits = { maxBodyBytes: Number.MAX_SAFE_INTEGER };

/** `size` is always the whole body's; past `maxBytes` only the start is shown and `truncated` is set. */
export function bodyJson(whole: Uint8Array, truncated?: boolean, maxBytes = Number.MAX_SAFE_INTEGER): BodyJson {
  const bytes = whole.length > maxBytes ? whole.subarray(0, maxBytes) : whole;
  const out: BodyJson = { text: '', size: whole.length };
  try {
    out.text = strictUtf8.decode(bytes);
  } catch {
    out.text = lossyUtf8.decode(bytes);
    out.base64 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  }
  if (truncated || bytes !== whole) out.truncated = true;
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

export function functionResultJson(result: FunctionResult, limits: RenderLimits = UNLIMITED) {
  return {
    kind: 'wasi-command' as const,
    outcome: result.outcome,
    ...(result.message !== undefined ? { message: result.message } : {}),
    ...(result.stack ? { stack: result.stack } : {}),
    exitCode: result.exitCode,
    stdout: bodyJson(result.stdout, result.stdoutTruncated, limits.maxBodyBytes),
    stderr: bodyJson(result.stderr, result.stderrTruncated, limits.maxBodyBytes),
    durationMs: round(result.durationMs),
    unimplemented: result.unimplemented,
    module: result.module,
  };
}

function requestJson(original: HttpRequestData, report: ExchangeReport, limits: RenderLimits) {
  const forwarded = report.forwarded;
  const seen = forwarded ?? original;
  return {
    forwarded: forwarded !== undefined,
    method: seen.method,
    path: seen.path,
    authority: seen.authority,
    scheme: seen.scheme,
    headers: seen.headers,
    body: bodyJson(seen.body, false, limits.maxBodyBytes),
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

function messageJson(response: HttpResponseData, limits: RenderLimits) {
  return { status: response.status, headers: response.headers, body: bodyJson(response.body, false, limits.maxBodyBytes), trailers: response.trailers };
}

function responseJson(report: ExchangeReport, limits: RenderLimits) {
  const { response, upstreamResponse } = report;
  if (!response) return null;
  const before = report.responseSource === 'upstream' ? upstreamResponse : undefined;
  return {
    source: report.responseSource ?? 'upstream',
    ...messageJson(response, limits),
    changes: before
      ? { headers: headerChanges(before.headers, response.headers), status: before.status !== response.status, body: !sameBytes(before.body, response.body) }
      : null,
  };
}

export function filterResultJson(result: FilterResult, original: HttpRequestData, upstream: { name: string; simulated: boolean }, limits: RenderLimits = UNLIMITED) {
  const { recording } = result;
  return {
    kind: 'proxy-wasm' as const,
    outcome: result.outcome,
    ...(result.message !== undefined ? { message: result.message } : {}),
    ...(result.limit !== undefined ? { limit: result.limit } : {}),
    ...(result.stack ? { stack: result.stack } : {}),
    request: requestJson(original, result, limits),
    upstream: result.upstreamResponse
      ? { name: upstream.simulated ? 'simulated' : upstream.name, ...messageJson(result.upstreamResponse, limits), ...(result.upstreamError ? { error: result.upstreamError } : {}) }
      : null,
    response: responseJson(result, limits),
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
    limitsHit: recording.limits,
    module: result.module,
    timings: { totalMs: round(result.durationMs), guestMs: round(result.guestMs), vmStarted: result.vmStarted },
  };
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
