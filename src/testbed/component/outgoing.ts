/**
 * A component's allow-listed outgoing call, performed by the runner thread
 * (the worker asked through the bridge, bridge.ts). The same machinery and
 * limits as a filter's proxy_http_call: the upstream by name from the
 * operator's allow-list, the owner's own connection pool, Kiln's framing and
 * header rules (outgoing-headers.ts, applied by Upstreams.send), header
 * limits (maxHeaderCount, maxHeaderBytes), the response body bounded by
 * maxHttpCallResponseBytes and the wait by upstreamTimeoutMs. Each failure
 * becomes the wasi:http error-code a proxy would give, and names its limit.
 */
import type { TestbedConfig } from '../config.ts';
import type { HttpRequestData } from '../http-message.ts';
import { UpstreamError, type Upstreams } from '../upstream.ts';
import type { BridgeCallMessage, BridgeOutcome } from './bridge.ts';
import type { OutgoingPerformer } from './runner.ts';

type OutgoingLimits = Pick<TestbedConfig, 'maxHeaderCount' | 'maxHeaderBytes' | 'maxHttpCallResponseBytes'>;

export function outgoingPerformer(upstreams: Upstreams, limits: OutgoingLimits, ownerId: string): OutgoingPerformer {
  return async (message: BridgeCallMessage, abort: AbortSignal): Promise<BridgeOutcome> => {
    const { call } = message;
    const refusal = headerLimitRefusal(call.headers, limits);
    if (refusal !== undefined) return refusal;
    const request: HttpRequestData = {
      method: call.method,
      path: call.pathWithQuery,
      authority: call.authority,
      scheme: call.scheme,
      headers: call.headers,
      body: call.body,
      trailers: [],
    };
    try {
      const response = await upstreams.send(message.upstream, request, { ownerId, timeoutMs: message.timeoutMs, maxResponseBytes: limits.maxHttpCallResponseBytes, signal: abort });
      return { ok: true, response };
    } catch (error) {
      if (error instanceof UpstreamError) return failureOf(error, limits);
      throw error;
    }
  };
}

function headerLimitRefusal(headers: ReadonlyArray<readonly [string, string]>, limits: OutgoingLimits): BridgeOutcome | undefined {
  if (headers.length > limits.maxHeaderCount) {
    const reason = `the request has ${headers.length} headers; the test bed allows ${limits.maxHeaderCount} (limit maxHeaderCount)`;
    return { ok: false, error: { tag: 'HTTP-request-header-section-size', val: headers.length }, reason, limit: 'maxHeaderCount' };
  }
  const bytes = headers.reduce((sum, [key, value]) => sum + key.length + Buffer.byteLength(value), 0);
  if (bytes > limits.maxHeaderBytes) {
    const reason = `the request's headers are ${bytes} bytes; the test bed allows ${limits.maxHeaderBytes} (limit maxHeaderBytes)`;
    return { ok: false, error: { tag: 'HTTP-request-header-section-size', val: undefined }, reason, limit: 'maxHeaderBytes' };
  }
  return undefined;
}

function failureOf(error: UpstreamError, limits: OutgoingLimits): BridgeOutcome {
  switch (error.failure) {
    case 'too_large':
      return { ok: false, error: { tag: 'HTTP-response-body-size', val: BigInt(limits.maxHttpCallResponseBytes) }, reason: `${error.message} (limit maxHttpCallResponseBytes)`, limit: 'maxHttpCallResponseBytes' };
    case 'timeout':
      return { ok: false, error: { tag: 'HTTP-response-timeout' }, reason: `${error.message} (limit upstreamTimeoutMs)`, limit: 'upstreamTimeoutMs' };
    default:
      // Not sent (an invalid method, path or header) or failed on the way: the guest gets the reason.
      return { ok: false, error: { tag: 'internal-error', val: error.message }, reason: error.message };
  }
}
