/**
 * The synchronous bridge for a component's outgoing HTTP (decision 0032).
 *
 * A component runs synchronously in the component worker thread: jco's sync
 * glue calls `wasi:http/outgoing-handler.handle` and expects the answer
 * without returning to an event loop. The network belongs to the thread
 * that owns the worker (the runner's ComponentRunner), which has the
 * allow-listed upstreams and the owner's connection pool. So the worker
 * posts the call with a private MessagePort and a shared counter, then
 * blocks in Atomics.wait; the runner thread performs the call and posts the
 * answer on the port — the head first, then the body in chunks of at most
 * BRIDGE_CHUNK_BYTES — bumping the counter after each message. The worker
 * takes messages with receiveMessageOnPort, one chunk per guest read.
 *
 * Nothing here waits with a timeout of its own: the runner's deadline for
 * the request covers the wait, and past it the worker thread is terminated
 * (Atomics.wait does not outlive that) and replaced.
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { HttpResponseData } from '../http-message.ts';
import type { ByteSource, OutgoingAnswer, OutgoingCall, WasiErrorCode } from './wasi-http-host.ts';

/** The largest body chunk one bridge message carries. */
export const BRIDGE_CHUNK_BYTES = 64 * 1024;

/** Worker → runner thread: perform this allow-listed call and answer on `port`. */
export interface BridgeCallMessage {
  type: 'outgoing';
  /** The allow-listed upstream's name (the worker matched the call's origin to it). */
  upstream: string;
  call: OutgoingCall;
  /** The guest's own first-byte timeout, ms; 0 = the test bed's upstream timeout. */
  timeoutMs: number;
  port: MessagePort;
  /** One Int32: bumped (and notified) after each answer is posted. */
  signal: SharedArrayBuffer;
}

/** The outcome of performing a call, as the runner thread hands it to the bridge. */
export type BridgeOutcome = { ok: true; response: HttpResponseData } | { ok: false; error: WasiErrorCode; reason: string; limit?: string };

type BridgeAnswer =
  | { type: 'head'; status: number; headers: Array<[string, string]> }
  | { type: 'chunk'; bytes: Uint8Array }
  | { type: 'end' }
  | { type: 'error'; error: WasiErrorCode; reason: string; limit?: string };

export function isBridgeCall(message: unknown): message is BridgeCallMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'outgoing';
}

/** Sends one call across the bridge (worker side). */
export type BridgeSend = (upstream: string, call: OutgoingCall, timeoutMs: number) => OutgoingAnswer;

/**
 * The worker side: `post` hands the call to the runner thread (parentPort's
 * postMessage, with the port transferred). Blocks until the head is back.
 */
export function bridgeToRunner(post: (message: BridgeCallMessage, transfer: MessagePort[]) => void): BridgeSend {
  return (upstream, call, timeoutMs) => {
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    const counter = new Int32Array(signal);
    post({ type: 'outgoing', upstream, call, timeoutMs, port: port2, signal }, [port2]);
    let seen = 0;
    const receive = (): BridgeAnswer => {
      for (;;) {
        const received = receiveMessageOnPort(port1);
        if (received !== undefined) return received.message as BridgeAnswer;
        // The runner posts before it bumps the counter, so a bump we have not seen means a message is there.
        Atomics.wait(counter, 0, seen);
        seen = Atomics.load(counter, 0);
      }
    };
    const head = receive();
    if (head.type !== 'head') {
      port1.close();
      if (head.type === 'error') return { ok: false, error: head.error, reason: head.reason, ...(head.limit === undefined ? {} : { limit: head.limit }) };
      return { ok: false, error: { tag: 'internal-error', val: 'the test bed answered an outgoing call without a response head' }, reason: 'no response head' };
    }
    return { ok: true, status: head.status, headers: head.headers, body: chunkSource(receive, () => port1.close()) };
  };
}

/** The response body as the guest pulls it: one bridge message per chunk, split further if it reads less. */
function chunkSource(receive: () => BridgeAnswer, close: () => void): ByteSource {
  let pending: Uint8Array | undefined;
  let ended = false;
  return {
    next(maxBytes) {
      while ((pending === undefined || pending.length === 0) && !ended) {
        const answer = receive();
        if (answer.type === 'chunk') pending = answer.bytes;
        else {
          ended = true;
          close();
        }
      }
      if (pending === undefined || pending.length === 0) return undefined;
      const chunk = pending.subarray(0, maxBytes);
      pending = pending.subarray(chunk.length);
      return chunk;
    },
  };
}

/**
 * The runner-thread side: performs the call with `perform` and answers on
 * the call's port. `abort` fires when the request's worker is gone (deadline,
 * crash): the call stops and nothing more is posted.
 */
export async function serveBridgeCall(message: BridgeCallMessage, perform: (message: BridgeCallMessage, abort: AbortSignal) => Promise<BridgeOutcome>, abort: AbortSignal): Promise<void> {
  const counter = new Int32Array(message.signal);
  const answer = (reply: BridgeAnswer): void => {
    message.port.postMessage(reply);
    Atomics.add(counter, 0, 1);
    Atomics.notify(counter, 0);
  };
  let outcome: BridgeOutcome;
  try {
    outcome = await perform(message, abort);
  } catch (error) {
    outcome = { ok: false, error: { tag: 'internal-error', val: 'the test bed failed to perform the call' }, reason: error instanceof Error ? error.message : String(error) };
  }
  if (abort.aborted) {
    message.port.close();
    return;
  }
  if (!outcome.ok) answer({ type: 'error', error: outcome.error, reason: outcome.reason, ...(outcome.limit === undefined ? {} : { limit: outcome.limit }) });
  else {
    const { status, headers, body } = outcome.response;
    answer({ type: 'head', status, headers });
    for (let offset = 0; offset < body.length; offset += BRIDGE_CHUNK_BYTES) answer({ type: 'chunk', bytes: body.slice(offset, offset + BRIDGE_CHUNK_BYTES) });
    answer({ type: 'end' });
  }
  message.port.close();
}
