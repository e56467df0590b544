/**
 * The API ↔ runner wire (a unit test over a loopback socket pair): answers
 * and both error families cross intact, byte arrays cross as bytes, and a
 * frame above the limit closes the connection instead of being buffered.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PlatformError, UserError } from '../../src/errors.ts';
import { Peer, PeerClosedError } from '../../src/testbed/runner/wire.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

async function socketPair(): Promise<[net.Socket, net.Socket, net.Server]> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  return [client, await accepted, server];
}

describe('runner wire', () => {
  let server: net.Server;
  let left: Peer;
  let right: Peer;

  before(async () => {
    const [a, b, s] = await socketPair();
    server = s;
    left = new Peer(a);
    right = new Peer(b, 1024);
  });

  after(() => {
    left.close('done');
    right.close('done');
    server.close();
  });

  it('answers requests in both directions, bytes as bytes', async () => {
    right.handle('double', (body) => {
      const bytes = body as Uint8Array;
      return Uint8Array.from([...bytes, ...bytes]);
    });
    left.handle('hello', () => ({ from: 'left' }));
    const doubled = await left.request<Uint8Array>('double', Uint8Array.from([1, 2]));
    assert.ok(doubled instanceof Uint8Array);
    assert.deepEqual([...doubled], [1, 2, 1, 2]);
    assert.deepEqual(await right.request('hello', null), { from: 'left' });
  });

  it('carries user errors with their status and platform errors with their code', async () => {
    right.handle('user', () => {
      throw new UserError('unprocessable', 'invalid_wasm', 'does not compile');
    });
    right.handle('platform', () => {
      throw new PlatformError('runner_artifact_mismatch', 'bad bytes');
    });
    await assert.rejects(left.request('user', null), (error: unknown) => error instanceof UserError && httpStatusOf(error) === 422 && error.code === 'invalid_wasm');
    await assert.rejects(left.request('platform', null), (error: unknown) => error instanceof PlatformError && error.code === 'runner_artifact_mismatch');
    await assert.rejects(left.request('no-such-op', null), (error: unknown) => error instanceof PlatformError && error.code === 'runner_unknown_op');
  });

  it('closes the connection on a frame above the limit, failing what was pending', async () => {
    right.handle('slow', () => new Promise(() => undefined));
    const pending = left.request('slow', null);
    const closed = new Promise<string>((resolve) => right.onClose(resolve));
    void left.request('big', new Uint8Array(4096)).catch(() => undefined);
    assert.match(await closed, /above the 1024-byte limit/);
    await assert.rejects(pending, PeerClosedError);
    assert.ok(right.closed);
  });
});

describe('runner wire framing', () => {
  it('reassembles a frame that arrives in many small chunks', async () => {
    const [a, b, server] = await socketPair();
    const sender = new Peer(a);
    const receiver = new Peer(b);
    receiver.handle('size', (body) => (body as Uint8Array).length);
    // Writes of 1 byte at a time would be merged by the kernel; a big frame is split by it instead.
    const size = await sender.request<number>('size', new Uint8Array(3 * 1024 * 1024).fill(7));
    assert.equal(size, 3 * 1024 * 1024);
    sender.close('done');
    receiver.close('done');
    server.close();
  });
});
