/**
 * The synchronous bridge of components' outgoing HTTP (bridge.ts) across a
 * real worker thread: the worker blocks in Atomics.wait while this thread
 * answers, and pulls the body chunk by chunk. The answers here are made by
 * the test (a unit test of the bridge); the real calls run in
 * components.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { BRIDGE_CHUNK_BYTES, isBridgeCall, serveBridgeCall, type BridgeCallMessage, type BridgeOutcome } from '../../src/testbed/component/bridge.ts';

/** A worker that sends one call across the bridge and reports what the guest side would read. */
function workerSource(readSize: number): string {
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const bridge = JSON.stringify(new URL('../../src/testbed/component/bridge.ts', import.meta.url).href);
  return `(async () => {
    const { parentPort } = await import('node:worker_threads');
    const api = await import(${tsx});
    api.register();
    const { bridgeToRunner } = await import(${bridge});
    const send = bridgeToRunner((message, transfer) => parentPort.postMessage(message, transfer));
    const answer = send('backend', { method: 'GET', scheme: 'http', authority: 'a', pathWithQuery: '/', headers: [], body: new Uint8Array() }, 0);
    if (!answer.ok) parentPort.postMessage({ done: true, answer });
    else {
      const reads = [];
      for (let chunk = answer.body.next(${readSize}); chunk !== undefined; chunk = answer.body.next(${readSize})) reads.push(chunk.length);
      parentPort.postMessage({ done: true, status: answer.status, headers: answer.headers, reads });
    }
  })();`;
}

async function roundTrip(outcome: BridgeOutcome, readSize: number): Promise<Record<string, unknown>> {
  const worker = new Worker(workerSource(readSize), { eval: true });
  try {
    return await new Promise((resolve, reject) => {
      worker.on('error', reject);
      worker.on('message', (message: BridgeCallMessage | Record<string, unknown>) => {
        if (isBridgeCall(message)) {
          assert.equal(message.upstream, 'backend');
          void serveBridgeCall(message, () => Promise.resolve(outcome), new AbortController().signal);
        } else resolve(message);
      });
    });
  } finally {
    await worker.terminate();
  }
}

describe('component outgoing bridge', () => {
  it('hands a response to a blocked worker: head, then the body in chunks of at most BRIDGE_CHUNK_BYTES', async () => {
    const size = BRIDGE_CHUNK_BYTES * 2 + 10;
    const result = await roundTrip({ ok: true, response: { status: 201, headers: [['x-a', '1']], body: new Uint8Array(size), trailers: [] } }, 1 << 20);
    assert.equal(result.status, 201);
    assert.deepEqual(result.headers, [['x-a', '1']]);
    assert.deepEqual(result.reads, [BRIDGE_CHUNK_BYTES, BRIDGE_CHUNK_BYTES, 10]);
  });

  it('splits a chunk further when the guest reads less, and ends an empty body at once', async () => {
    const small = await roundTrip({ ok: true, response: { status: 200, headers: [], body: new Uint8Array(25), trailers: [] } }, 10);
    assert.deepEqual(small.reads, [10, 10, 5]);
    const empty = await roundTrip({ ok: true, response: { status: 204, headers: [], body: new Uint8Array(0), trailers: [] } }, 10);
    assert.deepEqual(empty.reads, []);
  });

  it('passes a failure with its error-code, reason and limit', async () => {
    const result = await roundTrip({ ok: false, error: { tag: 'HTTP-response-timeout' }, reason: 'no response within 5 ms', limit: 'upstreamTimeoutMs' }, 10);
    assert.deepEqual(result.answer, { ok: false, error: { tag: 'HTTP-response-timeout' }, reason: 'no response within 5 ms', limit: 'upstreamTimeoutMs' });
  });
});
