/**
 * Unit tests of the gRPC host pieces that need no network: which types of
 * proxy_grpc_call / proxy_grpc_stream a module may import (ABI 0.2.x and
 * 0.1.0), and the length-prefixed message framing. Calls themselves run in
 * test/testbed/grpc.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planImports } from '../../src/testbed/link.ts';
import { PROXY_HOST_SIGNATURES } from '../../src/testbed/proxy-wasm/abi.ts';
import { frameMessages, unframeMessages } from '../../src/testbed/proxy-wasm/host/grpc-calls.ts';
import { sig } from '../../src/testbed/signatures.ts';

const policy = { stubbed: { env: 12 }, describeAllowed: 'env only' };
const importing = (name: string, params: number) => ({ imports: [{ module: 'env', name, type: sig(params) }], otherImports: [], exports: new Map() });

describe('gRPC host calls', () => {
  it('are host-implemented in both ABI arities, and a third arity is refused with the current type named', () => {
    for (const [name, params] of [
      ['proxy_grpc_call', 12],
      ['proxy_grpc_call', 10],
      ['proxy_grpc_stream', 9],
      ['proxy_grpc_stream', 7],
      ['proxy_grpc_send', 4],
      ['proxy_grpc_cancel', 1],
      ['proxy_grpc_close', 1],
    ] as const) {
      const [plan] = planImports(importing(name, params), { env: PROXY_HOST_SIGNATURES }, policy);
      assert.equal(plan?.binding, 'host', `${name} with ${params} parameters`);
    }
    assert.throws(() => planImports(importing('proxy_grpc_call', 11), { env: PROXY_HOST_SIGNATURES }, policy), /proxy_grpc_call .*host function has type \(i32(, i32){11}\)/);
  });

  it('frames messages with a zero flag and a big-endian length, and reads them back', () => {
    const framed = frameMessages([new Uint8Array([1, 2, 3]), new Uint8Array(0)]);
    assert.deepEqual([...framed], [0, 0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0]);
    assert.deepEqual(unframeMessages(framed)?.map((message) => [...message]), [[1, 2, 3], []]);
    assert.deepEqual(unframeMessages(new Uint8Array(0)), []);
  });

  it('refuses a broken length prefix and a compressed message', () => {
    assert.equal(unframeMessages(new Uint8Array([0, 0, 0, 0, 9, 1])), undefined, 'the length runs past the body');
    assert.equal(unframeMessages(new Uint8Array([0, 0, 0])), undefined, 'a truncated prefix');
    assert.equal(unframeMessages(new Uint8Array([1, 0, 0, 0, 1, 7])), undefined, 'compressed');
  });
});
