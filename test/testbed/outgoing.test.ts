/**
 * Requests that leave Kiln on a filter's behalf cannot smuggle: each trick
 * a module could try through proxy_http_call or the forwarded request is
 * refused (or its header dropped), checked on the rules, on the wire with a
 * raw TCP upstream, and through a real filter. Each owner has its own
 * connection pool.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { firstHeaderProblem, headerProblem, methodProblem, pathProblem } from '../../src/testbed/outgoing-headers.ts';
import { serializePairs } from '../../src/testbed/proxy-wasm/header-map.ts';
import { Testbed } from '../../src/testbed/testbed.ts';
import { requestProblem, UpstreamError, Upstreams } from '../../src/testbed/upstream.ts';
import { filterWat, wat } from './wat.ts';

const PSEUDO = new Set([':method', ':path', ':authority', ':scheme']);

describe('outgoing header rules', () => {
  it('refuses every header Kiln frames the message with, whatever its case', () => {
    for (const name of ['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'upgrade', 'te', 'trailer', 'expect', 'proxy-authorization', 'http2-settings']) {
      assert.match(headerProblem(name, 'x') ?? '', /set by Kiln/, name);
    }
    assert.match(firstHeaderProblem([['HOST'.toLowerCase(), 'evil']]) ?? '', /set by Kiln/);
  });

  it('refuses names that are not tokens (CR/LF, NUL, spaces, colons, empty, non-ASCII)', () => {
    for (const name of ['x\r\ninjected', 'x\ny', 'x\0y', 'x y', 'x:y', '', 'é', 'X-Upper']) {
      assert.match(headerProblem(name, 'v') ?? '', /not a valid token/, JSON.stringify(name));
    }
  });

  it('refuses values with CR, LF, NUL or other control characters, keeps tabs and obs-text', () => {
    for (const value of ['a\r\nGET /smuggled HTTP/1.1', 'a\nb', 'a\rb', 'a\0b', 'a\u0007b', 'a\u007fb']) {
      assert.match(headerProblem('x-v', value) ?? '', /control character/, JSON.stringify(value));
    }
    assert.equal(headerProblem('x-v', 'a\tb é'), undefined);
  });

  it('accepts only request pseudo-headers, with clean values', () => {
    assert.equal(firstHeaderProblem([[':path', '/'], [':method', 'GET'], [':authority', 'a'], [':scheme', 'http']], PSEUDO), undefined);
    assert.match(firstHeaderProblem([[':status', '200']], PSEUDO) ?? '', /pseudo-header/);
    assert.match(firstHeaderProblem([[':authority', 'a\r\nx: y']], PSEUDO) ?? '', /control character/);
  });

  it('refuses request lines that would split: bad methods and non-origin-form paths', () => {
    assert.equal(methodProblem('PATCH'), undefined);
    for (const method of ['GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET', 'GE T', '']) assert.ok(methodProblem(method), JSON.stringify(method));
    assert.equal(pathProblem('/a/b?c=d%20e'), undefined);
    for (const path of ['/a b', '/a\r\nHost: evil', 'http://evil.test/', '//', '*', '/é']) {
      if (path === '//') continue; // "//" is origin-form (an empty segment), only absolute-form and controls are refused
      assert.ok(pathProblem(path), JSON.stringify(path));
    }
  });

  it('refuses a forwarded request with an invalid header but lets Kiln drop the ones it owns', () => {
    const base: HttpRequestData = { method: 'GET', path: '/', authority: 'a', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] };
    assert.equal(requestProblem({ ...base, headers: [['transfer-encoding', 'chunked'], ['Host', 'evil']] }), undefined);
    assert.match(requestProblem({ ...base, headers: [['x-a', 'b\r\nTransfer-Encoding: chunked']] }) ?? '', /control character/);
    assert.match(requestProblem({ ...base, trailers: [['x a', 'b']] }) ?? '', /token/);
    assert.match(requestProblem({ ...base, authority: 'a\r\nx: y' }) ?? '', /control character/);
  });
});

interface RawUpstream {
  port: number;
  /** Everything each connection received, by the connection's remote port. */
  received: Map<number, string>;
  close(): void;
}

/** An upstream that records raw bytes and answers each request it sees with a fixed response. */
async function rawUpstream(): Promise<RawUpstream> {
  const received = new Map<number, string>();
  const server = net.createServer((socket) => {
    const key = socket.remotePort ?? 0;
    let answered = 0;
    socket.on('data', (chunk: Buffer) => {
      const text = (received.get(key) ?? '') + chunk.toString('latin1');
      received.set(key, text);
      // One answer per complete request head seen so far on this connection.
      const heads = text.split('\r\n\r\n').length - 1;
      for (; answered < heads; answered++) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\n\r\nok');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, received, close: () => server.close() };
}

// Bodies are not CRLF-terminated, so a request line may follow a body directly.
const requestLines = (text: string) => [...text.matchAll(/[A-Z]+ \/\S* HTTP\/1\.1\r\n/g)].map((m) => m[0].trim());

describe('upstream requests on the wire', () => {
  let raw: RawUpstream;
  let upstreams: Upstreams;

  before(async () => {
    raw = await rawUpstream();
    upstreams = new Upstreams(new Map([['raw', new URL(`http://127.0.0.1:${raw.port}`)]]), { timeoutMs: 5_000, maxResponseBytes: 1024, socketsPerOwner: 2, maxOwnerPools: 2 });
  });
  after(() => {
    upstreams.close();
    raw.close();
  });

  const base = (headers: Array<[string, string]>): HttpRequestData => ({ method: 'POST', path: '/p', authority: 'client', scheme: 'http', headers, body: new TextEncoder().encode('hello'), trailers: [] });

  it('sends one request framed by Kiln: its Host and Content-Length, no Transfer-Encoding or Connection from the module', async () => {
    raw.received.clear();
    const response = await upstreams.send(
      'raw',
      base([
        ['Transfer-Encoding', 'chunked'],
        ['content-length', '0'],
        ['host', 'evil.test'],
        ['connection', 'keep-alive, upgrade'],
        ['X-Custom', '1'],
      ]),
      { ownerId: 'alice' },
    );
    assert.equal(response.status, 200);
    const wire = [...raw.received.values()].join('');
    assert.deepEqual(requestLines(wire), ['POST /p HTTP/1.1']);
    const head = wire.split('\r\n\r\n')[0]?.toLowerCase() ?? '';
    assert.ok(head.includes(`\r\nhost: 127.0.0.1:${raw.port}`), head);
    assert.ok(head.includes('\r\ncontent-length: 5'), head);
    assert.ok(!head.includes('transfer-encoding'), head);
    assert.ok(!head.includes('evil.test'), head);
    assert.ok(!head.includes('upgrade'), head);
    assert.ok(head.includes('\r\nx-custom: 1'), head);
    assert.equal(wire.split('\r\n\r\n')[1], 'hello');
  });

  it('writes nothing when a header value tries to start a second request', async () => {
    raw.received.clear();
    await assert.rejects(upstreams.send('raw', base([['x-a', 'b\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x']]), { ownerId: 'alice' }), UpstreamError);
    await assert.rejects(upstreams.send('raw', { ...base([]), path: '/p HTTP/1.1\r\nhost: x\r\n\r\nGET /smuggled' }, { ownerId: 'alice' }), UpstreamError);
    assert.equal(raw.received.size, 0);
  });

  it('keeps one connection pool per owner: an owner reuses its sockets, another owner never gets them', async () => {
    raw.received.clear();
    await upstreams.send('raw', base([]), { ownerId: 'carol' });
    // The agent takes the socket back just after the response ends.
    await new Promise((resolve) => setImmediate(resolve));
    await upstreams.send('raw', base([]), { ownerId: 'carol' });
    await upstreams.send('raw', base([]), { ownerId: 'dave' });
    const perConnection = [...raw.received.values()].map((text) => requestLines(text).length).sort();
    assert.deepEqual(perConnection, [1, 2], 'carol\'s two requests share a kept-alive socket; dave\'s went on a socket of his own');
    assert.ok(upstreams.poolCount <= 2, 'pools of owners beyond maxOwnerPools are closed');
  });
});

describe('proxy_http_call smuggling attempts through a real filter', () => {
  let testbed: Testbed;
  before(() => {
    testbed = new Testbed({ ...loadTestbedConfig({}), workers: 1, spares: 0, timeoutMs: 5_000 });
  });
  after(() => testbed.close());

  const tricks: Array<[string, Array<[string, string]>]> = [
    ['a second Host', [['Host', 'evil.test']]],
    ['Transfer-Encoding with Content-Length', [['transfer-encoding', 'chunked'], ['content-length', '4']]],
    ['Connection: upgrade', [['connection', 'upgrade']]],
    ['CRLF in a value', [['x-a', 'b\r\n\r\nGET /smuggled HTTP/1.1']]],
    ['CRLF in a name', [['x-a\r\nhost', 'evil']]],
    ['NUL in a value', [['x-a', 'b\0c']]],
    ['a request line in :method', [[':method', 'GET / HTTP/1.1\r\nhost: evil\r\n\r\nGET']]],
  ];

  for (const [name, extra] of tricks) {
    it(`refuses ${name}`, async () => {
      const base: Array<[string, string]> = [[':path', '/'], [':authority', 'echo']];
      const pairs: Array<[string, string]> = extra.some(([k]) => k === ':method') ? [...base, ...extra] : [[':method', 'GET'], ...base, ...extra];
      const headers = serializePairs(pairs);
      const module = wat(
        filterWat(
          `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (drop (call $call (i32.const 200) (i32.const 4) (i32.const 300) (i32.const ${headers.length}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 96)))
            (i32.const 0))
          (data (i32.const 200) "echo") (data (i32.const 300) "${[...headers].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('')}")`,
          '(import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))',
        ),
      );
      const plugin = { info: { ownerId: 'mallory', name: 'smuggler', rootId: '', vmId: 'v', versionId: 'v', version: '1', applicationId: 'a' }, config: '' };
      const artifact = { sha256: createHash('sha256').update(module).digest('hex'), load: async () => module };
      const result = await testbed.invokeFilter(artifact, plugin, { request: { method: 'GET', path: '/', authority: 'x', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] } });
      assert.equal(result.outcome, 'ok', result.message);
      assert.equal(result.httpCalls.length, 0, 'the call was never made');
      assert.ok(result.recording.notes.some((note) => note.startsWith('proxy_http_call to "echo" refused')), result.recording.notes.join('\n'));
    });
  }
});
