/**
 * gRPC calls from a filter (proxy_grpc_call / _stream / _send / _cancel /
 * _close) through the real pipeline: the C fixture grpc-filter is built by
 * runBuild in the bubblewrap sandbox, published, and invoked through the
 * API, whose test bed calls a tiny gRPC server this test starts (HTTP/2
 * without TLS, length-prefixed messages, grpc-status in trailers), on both
 * storage flavours.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { databaseBackends, s3Skip } from '../support/backends.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';
import { FIXTURES, publish, SandboxBuilder, sandboxSkip } from './support.ts';
import type { Json } from './support.ts';

/** The response limit the tests run with (KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES). */
const CALL_RESPONSE_LIMIT = 64 * 1024;

interface Seen {
  path: string;
  meta: string | undefined;
  contentType: string | undefined;
  messages: string[];
}

/** gRPC's framing, written here independently of the test bed's. */
function frame(text: string): Buffer {
  const message = Buffer.from(text);
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

function unframe(body: Buffer): string[] {
  const messages: string[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    messages.push(body.subarray(at + 5, at + 5 + length).toString());
    at += 5 + length;
  }
  return messages;
}

/**
 * kiln.test.Echo/Chat, live: every message is answered "re:<message>" the
 * moment it arrives, before the client half-closes; the client's end gets
 * grpc-status 0. `events` is what happened, in order ("heard one", "end"
 * for a half-close, "reset <HTTP/2 code>" when the client reset the stream).
 */
function chat(stream: http2.ServerHttp2Stream, events: string[]): void {
  let buffered = Buffer.alloc(0);
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
      const length = buffered.readUInt32BE(1);
      const message = buffered.subarray(5, 5 + length).toString();
      buffered = buffered.subarray(5 + length);
      events.push(`heard ${message}`);
      stream.write(frame(`re:${message}`));
    }
  });
  // Node's client resets a stream by ending its side first, then RST_STREAM, and 'aborted' fires only while
  // this side is still writable: the answer ends only once the whole conversation ("three") was heard.
  stream.on('end', () => {
    events.push('end');
    if (events.includes('heard three')) stream.end();
  });
  stream.on('aborted', () => events.push(`reset ${stream.rstCode}`));
}

/**
 * kiln.test.Echo: Say answers "echo <message>" with x-server metadata; Fail
 * closes with NOT_FOUND (5) and a message; Collect answers each message
 * upper-cased, with trailing metadata x-trailer; Big answers past the limit;
 * Chat (above) answers as the messages come.
 */
async function startGrpcServer(): Promise<{ server: http2.Http2Server; port: number; seen: Seen[]; chats: string[][] }> {
  const seen: Seen[] = [];
  const chats: string[][] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    if (String(headers[':path']) === '/kiln.test.Echo/Chat') {
      const events: string[] = [];
      chats.push(events);
      chat(stream, events);
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const path = String(headers[':path']);
      const messages = unframe(Buffer.concat(chunks));
      seen.push({ path, meta: headers['x-meta'] as string | undefined, contentType: headers['content-type'], messages });
      // date set here, or Node adds its own: the initial metadata is exactly these three.
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-server': 'test-server', date: 'Sun, 06 Dec 2026 00:00:00 GMT' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        if (path.endsWith('/Fail')) stream.sendTrailers({ 'grpc-status': '5', 'grpc-message': 'no such thing' });
        else stream.sendTrailers({ 'grpc-status': '0', 'x-trailer': 'done' });
      });
      if (path.endsWith('/Say')) stream.end(frame(`echo ${messages.join(',')}`));
      else if (path.endsWith('/Collect')) stream.end(Buffer.concat(messages.map((message) => frame(message.toUpperCase()))));
      else if (path.endsWith('/Big')) stream.end(frame('x'.repeat(CALL_RESPONSE_LIMIT)));
      else stream.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, seen, chats };
}

/** The server sees a reset a moment after the filter's answer; polls (bounded) instead of sleeping a guessed time. */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 200 && !condition(); attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
}

const skip = await sandboxSkip();
const flavours: Array<{ flavour: StorageFlavour; skip: string | false }> = [
  { flavour: 'embedded', skip: false },
  { flavour: 'servers', skip: s3Skip() || databaseBackends().find((backend) => backend.name === 'PostgreSQL')?.skip || false },
];

describe('gRPC calls from a filter', { skip, timeout: 600_000 }, () => {
  const builder = new SandboxBuilder();
  let module: Uint8Array;
  let grpc: Awaited<ReturnType<typeof startGrpcServer>>;

  before(async () => {
    module = await builder.build(`${FIXTURES}grpc-filter`);
    grpc = await startGrpcServer();
  });

  after(async () => {
    await builder.dispose();
    grpc?.server.close();
  });

  for (const { flavour, skip: flavourSkip } of flavours) {
    describe(flavour === 'embedded' ? 'PGlite + filesystem' : 'PostgreSQL + Ceph S3', { skip: flavourSkip }, () => {
      let t: TestKiln;
      let id = '';
      const invoke = (path: string, headers: Record<string, string> = {}) => call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json: { request: { path, headers } } });

      before(async () => {
        process.env.KILN_TESTBED_UPSTREAMS = `grpc=http://127.0.0.1:${grpc.port}`;
        process.env.KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES = String(CALL_RESPONSE_LIMIT);
        t = await startTestKiln({ flavour });
        id = await publish(t, module, { kind: 'proxy-wasm', name: 'grpc-filter' });
      });

      after(async () => {
        await t?.close();
        delete process.env.KILN_TESTBED_UPSTREAMS;
        delete process.env.KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES;
      });

      it('a unary call succeeds: the request carries the metadata and the framed message, proxy_on_grpc_receive gets the reply', async () => {
        const before = grpc.seen.length;
        const { status, body } = await invoke('/unary/Say');
        assert.equal(status, 200, JSON.stringify(body));
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.response.status, 200, JSON.stringify(body.notes));
        assert.equal(body.response.body.text, 'reply echo ping (9 bytes) server=test-server');
        assert.deepEqual(grpc.seen.slice(before), [{ path: '/kiln.test.Echo/Say', meta: 'from-filter', contentType: 'application/grpc', messages: ['ping'] }]);
        assert.deepEqual(body.unimplemented, []);
      });

      it('a non-zero grpc-status reaches proxy_on_grpc_close, with its message through proxy_get_status', async () => {
        const { body } = await invoke('/unary/Fail');
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.response.status, 503);
        assert.equal(body.response.body.text, 'closed 5 (get_status 5): no such thing');
      });

      it('a disallowed upstream is refused with PARSE_FAILURE and never reached; the echo upstream does not speak gRPC', async () => {
        const before = grpc.seen.length;
        for (const upstream of ['elsewhere', 'echo']) {
          const { body } = await invoke('/unary/Say', { 'x-upstream': upstream });
          assert.equal(body.response.status, 502, upstream);
          assert.equal(body.response.body.text, 'dispatch 4', `${upstream}: PARSE_FAILURE`);
          assert.ok(
            body.notes.some((note: string) => note.includes(`proxy_grpc_call to "${upstream}" refused`)),
            JSON.stringify(body.notes),
          );
        }
        assert.equal(grpc.seen.length, before, 'nothing reached the gRPC server');
      });

      it('an answer past maxHttpCallResponseBytes closes the call with RESOURCE_EXHAUSTED and names the limit', async () => {
        const { body } = await invoke('/unary/Big');
        assert.equal(body.response.status, 503);
        assert.match(body.response.body.text, /^closed 8 \(get_status 8\): the answer is larger than 65536 bytes \(limit maxHttpCallResponseBytes\)$/);
        assert.ok(body.limitsHit.includes('maxHttpCallResponseBytes'), JSON.stringify(body.limitsHit));
      });

      it('a stream that only sends before it half-closes gets its messages there; initial metadata, each message, trailing metadata and close arrive in order', async () => {
        const before = grpc.seen.length;
        const { body } = await invoke('/stream');
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.response.body.text, 'stream status=0 messages=A|B|C initial=3 server=test-server trailer=done');
        assert.deepEqual(grpc.seen.slice(before), [{ path: '/kiln.test.Echo/Collect', meta: 'from-filter', contentType: 'application/grpc', messages: ['a', 'b', 'c'] }]);
        const callbacks = (body.callbacks as Array<{ name: string }>).map((entry) => entry.name).filter((name) => name.startsWith('proxy_on_grpc'));
        assert.deepEqual(callbacks, ['proxy_on_grpc_receive_initial_metadata', 'proxy_on_grpc_receive', 'proxy_on_grpc_receive', 'proxy_on_grpc_receive', 'proxy_on_grpc_receive_trailing_metadata', 'proxy_on_grpc_close']);
      });

      it('a stream is live: each reply reaches the filter before it half-closes, and the filter answers it on the same stream', async () => {
        const before = grpc.chats.length;
        const { body } = await invoke('/chat');
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.response.body.text, 'chat status=0 heard=re:one|re:two|re:three');
        // The server heard "two" only because the filter got "re:one" while the stream was open.
        assert.deepEqual(grpc.chats.slice(before), [['heard one', 'heard two', 'heard three', 'end']]);
        const callbacks = (body.callbacks as Array<{ name: string }>).map((entry) => entry.name).filter((name) => name.startsWith('proxy_on_grpc'));
        assert.deepEqual(callbacks, ['proxy_on_grpc_receive_initial_metadata', 'proxy_on_grpc_receive', 'proxy_on_grpc_receive', 'proxy_on_grpc_receive', 'proxy_on_grpc_receive_trailing_metadata', 'proxy_on_grpc_close']);
      });

      it('a live stream cancelled from its own callback is reset upstream; a send after it is NOT_FOUND and nothing more is delivered', async () => {
        const before = grpc.chats.length;
        const { body } = await invoke('/chat-cancel');
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.response.body.text, 'cancelled 0, send after 1, heard re:one');
        const callbacks = (body.callbacks as Array<{ name: string }>).map((entry) => entry.name).filter((name) => name.startsWith('proxy_on_grpc'));
        assert.deepEqual(callbacks, ['proxy_on_grpc_receive_initial_metadata', 'proxy_on_grpc_receive']);
        const reset = `reset ${http2.constants.NGHTTP2_CANCEL}`;
        await waitFor(() => grpc.chats[before]?.includes(reset) === true);
        assert.deepEqual(grpc.chats.slice(before), [['heard one', 'end', reset]]);
      });

      it('a cancelled call is never sent; cancelling it again is NOT_FOUND', async () => {
        const before = grpc.seen.length;
        const { body } = await invoke('/cancel');
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.request.forwarded, true);
        const headers = new Map(body.request.headers as Array<[string, string]>);
        assert.equal(headers.get('x-cancel'), '0');
        assert.equal(headers.get('x-cancel-again'), '1');
        assert.equal(grpc.seen.length, before);
      });
    });
  }
});
