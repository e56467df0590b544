/**
 * The test bed's HTTP client to allow-listed upstreams (src/testbed/upstream.ts)
 * against real servers on loopback: what comes back (status, repeated and
 * hop-by-hop headers, body, trailers), a request with trailers (sent on a
 * connection of its own), and every way a request ends early: the time
 * limit (also while queued for a socket: then never sent), the size limit,
 * the caller giving up, a refused connection; a second owner answered while
 * the first fills its sockets and queue. Both
 * ways of sending are tried where both apply. And an evicted owner's pool
 * does not keep its sockets open.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { UpstreamError, Upstreams } from '../../src/testbed/upstream.ts';
import { until } from '../support/until.ts';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  trailers: NodeJS.Dict<string>;
}

function request(overrides: Partial<HttpRequestData> = {}): HttpRequestData {
  return { method: 'POST', path: '/echo', authority: 'client.test', scheme: 'http', headers: [['x-from-client', '1']], body: new TextEncoder().encode('payload'), trailers: [], ...overrides };
}

const WITH_TRAILERS: Partial<HttpRequestData> = {
  trailers: [
    ['x-client-trailer', 'sent'],
    ['content-length', '99'],
  ],
};

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function failureOf(error: unknown): string {
  assert.ok(error instanceof UpstreamError, String(error));
  return error.failure;
}

describe('upstream client', () => {
  const seen: Seen[] = [];
  const openSockets = new Set<net.Socket>();
  let closedSockets = 0;
  let upstreams: Upstreams;
  let silent: net.Server;
  let refusedPort: number;
  const held: net.Socket[] = [];
  let stopBackend = (): void => undefined;

  before(async () => {
    const server = http.createServer((incoming, response) => {
      const chunks: Buffer[] = [];
      incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
      incoming.on('end', () => {
        seen.push({ method: incoming.method ?? '', url: incoming.url ?? '', headers: incoming.headers, body: Buffer.concat(chunks).toString('utf8'), trailers: incoming.trailers });
        if (incoming.url === '/large') {
          response.writeHead(200, { 'content-type': 'application/octet-stream' });
          response.end(Buffer.alloc(4096, 1));
          return;
        }
        // Repeated headers in order, a hop-by-hop one to drop, and trailers after a chunked body.
        response.writeHead(201, [
          ['set-cookie', 'a=1'],
          ['x-between', 'yes'],
          ['set-cookie', 'b=2'],
          ['keep-alive', 'timeout=5'],
          ['trailer', 'x-upstream-trailer'],
        ]);
        response.write('answer');
        response.addTrailers({ 'x-upstream-trailer': 'done' });
        response.end();
      });
    });
    server.on('connection', (socket: net.Socket) => {
      openSockets.add(socket);
      socket.on('close', () => {
        openSockets.delete(socket);
        closedSockets++;
      });
    });
    const port = await listen(server);
    // Accepts connections and never answers.
    silent = net.createServer((socket) => void held.push(socket));
    const silentPort = await listen(silent);
    // A port nothing listens on (taken, then freed).
    const probe = net.createServer();
    refusedPort = await listen(probe);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    upstreams = new Upstreams(
      new Map([
        ['backend', new URL(`http://127.0.0.1:${port}`)],
        ['silent', new URL(`http://127.0.0.1:${silentPort}`)],
        ['nobody', new URL(`http://127.0.0.1:${refusedPort}`)],
      ]),
      // Generous: only the time-limit cases need a short one, and they pass their own (a per-call limit can only shorten this).
      { timeoutMs: 10_000, maxResponseBytes: 1024, socketsPerOwner: 2, maxOwnerPools: 2 },
    );
    stopBackend = () => {
      server.closeAllConnections();
      server.close();
    };
  });
  after(() => {
    upstreams.close();
    for (const socket of held) socket.destroy();
    silent.close();
    stopBackend();
  });

  it('answers with the status, repeated headers in order, no hop-by-hop ones, the body and the trailers', async () => {
    const response = await upstreams.send('backend', request(), { ownerId: 'alice' });
    assert.equal(response.status, 201);
    assert.deepEqual(
      response.headers.filter(([key]) => key === 'set-cookie' || key === 'x-between'),
      [
        ['set-cookie', 'a=1'],
        ['x-between', 'yes'],
        ['set-cookie', 'b=2'],
      ],
    );
    assert.ok(!response.headers.some(([key]) => key === 'keep-alive' || key === 'transfer-encoding' || key === 'trailer'), JSON.stringify(response.headers));
    assert.equal(new TextDecoder().decode(response.body), 'answer');
    assert.deepEqual(response.trailers, [['x-upstream-trailer', 'done']]);
    const last = seen.at(-1);
    assert.equal(last?.body, 'payload');
    assert.equal(last?.headers['x-from-client'], '1');
    assert.equal(last?.headers['x-forwarded-host'], 'client.test');
  });

  it('sends a request with trailers on a connection of its own, without the trailers Kiln owns', async () => {
    const before = closedSockets;
    const response = await upstreams.send('backend', request(WITH_TRAILERS), { ownerId: 'alice' });
    assert.equal(response.status, 201);
    assert.deepEqual(response.trailers, [['x-upstream-trailer', 'done']]);
    const last = seen.at(-1);
    assert.equal(last?.body, 'payload');
    assert.equal(last?.trailers['x-client-trailer'], 'sent');
    assert.equal(last?.trailers['content-length'], undefined, 'a trailer named like a framing header is dropped');
    // Used once: the connection closes after the answer instead of joining a pool.
    await until(() => closedSockets > before);
    assert.ok(closedSockets > before, 'the one-off connection was closed');
  });

  for (const [path, overrides] of [
    ['pooled', {}],
    ['with trailers', WITH_TRAILERS],
  ] as const) {
    it(`stops at the time limit (${path})`, async () => {
      // The server never answers: only the client's own limit can end this.
      const failure = await upstreams.send('silent', request(overrides), { ownerId: 'alice', timeoutMs: 300 }).then(() => 'answered', failureOf);
      assert.equal(failure, 'timeout');
    });

    it(`stops at the size limit (${path})`, async () => {
      const failure = await upstreams.send('backend', request({ ...overrides, path: '/large' }), { ownerId: 'alice' }).then(() => 'answered', failureOf);
      assert.equal(failure, 'too_large');
    });
  }

  it('stops when the caller gives up, before or while waiting', async () => {
    const gone = new AbortController();
    gone.abort(new Error('the caller is gone'));
    assert.equal(await upstreams.send('silent', request(), { ownerId: 'alice', signal: gone.signal }).then(() => 'answered', failureOf), 'failed');
    const leaving = new AbortController();
    const sent = upstreams.send('silent', request(), { ownerId: 'alice', signal: leaving.signal }).then(() => 'answered', failureOf);
    setTimeout(() => leaving.abort(new Error('the caller is gone')), 20);
    assert.equal(await sent, 'failed', 'abandoned, not timed out');
  });

  it('reports a refused connection as a failed upstream', async () => {
    const error = await upstreams.send('nobody', request(), { ownerId: 'alice' }).catch((caught: unknown) => caught);
    assert.equal(failureOf(error), 'failed');
    assert.match((error as Error).message, /upstream nobody failed/);
  });

  it('never sends a request that ran out of time while it waited for one of the owner\'s sockets', async () => {
    // One socket per owner: the second request waits in the pool's queue behind the first. Its own
    // limit (100 ms) ends long before the first is answered (400 ms), so when the socket is handed on
    // it has been out of time for ~300 ms: sending it then would be the bug. Distinct deadlines keep
    // the outcome free of two timers racing each other.
    const slowSeen: string[] = [];
    const slow = http.createServer((incoming, response) => {
      slowSeen.push(incoming.url ?? '');
      setTimeout(() => response.end('late'), 400);
    });
    const slowPort = await listen(slow);
    const narrow = new Upstreams(new Map([['slow', new URL(`http://127.0.0.1:${slowPort}`)]]), { timeoutMs: 5_000, maxResponseBytes: 1024, socketsPerOwner: 1, maxOwnerPools: 2 });
    try {
      const first = narrow.send('slow', request({ path: '/first' }), { ownerId: 'hana' }).then(() => 'answered', failureOf);
      const second = narrow.send('slow', request({ path: '/second' }), { ownerId: 'hana', timeoutMs: 100 }).then(() => 'answered', failureOf);
      assert.deepEqual(await Promise.all([first, second]), ['answered', 'timeout']);
      // Long enough for the queue to hand the socket on, and for a sent request to arrive.
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.deepEqual(slowSeen, ['/first'], 'the request that timed out in the queue was not sent later');
    } finally {
      narrow.close();
      slow.closeAllConnections();
      slow.close();
    }
  });

  it("a second owner's request is answered while the first owner's fill its sockets and queue", async () => {
    const held: http.ServerResponse[] = [];
    const gated = http.createServer((incoming, response) => {
      // The attacker's requests hang until the test lets them go; the victim's is answered at once.
      if (incoming.url === '/hang') held.push(response);
      else response.end('served');
    });
    const gatedPort = await listen(gated);
    const shared = new Upstreams(new Map([['gated', new URL(`http://127.0.0.1:${gatedPort}`)]]), { timeoutMs: 5_000, maxResponseBytes: 1024, socketsPerOwner: 2, maxOwnerPools: 4 });
    try {
      const attack = Array.from({ length: 6 }, () => shared.send('gated', request({ path: '/hang' }), { ownerId: 'mallory' }).then(() => 'answered', failureOf));
      // Both of mallory's sockets are taken (the rest of her requests wait in her own queue).
      await until(() => held.length >= 2);
      assert.equal(held.length, 2, "mallory's requests reached the upstream on her two sockets only");
      const victim = await shared.send('gated', request({ path: '/fast' }), { ownerId: 'victor' });
      assert.equal(new TextDecoder().decode(victim.body), 'served');
      assert.equal(held.length, 2, 'the victim was answered while all of mallory\'s requests were still open or queued');
      // Let mallory's requests go, a socket's worth at a time.
      const releaser = setInterval(() => held.splice(0).forEach((response) => response.end('late')), 10);
      assert.deepEqual(await Promise.all(attack), Array(6).fill('answered'));
      clearInterval(releaser);
    } finally {
      shared.close();
      gated.closeAllConnections();
      gated.close();
    }
  });

  it("closes an evicted owner's pooled sockets", async () => {
    await upstreams.send('backend', request(), { ownerId: 'erin' });
    await new Promise((resolve) => setImmediate(resolve));
    const erinsSockets = openSockets.size;
    assert.ok(erinsSockets > 0, 'erin has a kept-alive socket');
    const before = closedSockets;
    // Two more owners push erin's pool out (maxOwnerPools 2).
    await upstreams.send('backend', request(), { ownerId: 'frank' });
    await upstreams.send('backend', request(), { ownerId: 'grace' });
    await until(() => closedSockets > before);
    assert.ok(closedSockets > before, "erin's idle socket was closed when her pool was evicted");
    assert.ok(upstreams.poolCount <= 2);
  });
});
