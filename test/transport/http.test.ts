import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { HttpApiError, HttpTransport, HttpUnreachableError, type RetryPolicy } from '../../src/transport/http.ts';

/** Short waits between tries: the tests count tries, they do not time them. */
const QUICK_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 10, maxDelayMs: 20 };

type Handler = (request: IncomingMessage, response: ServerResponse, tryNumber: number) => void;

describe('HTTP transport', () => {
  let server: Server;
  let baseUrl: string;
  let handler: Handler;
  let seen: Array<{ method: string; url: string; authorization?: string; body: string }>;

  before(async () => {
    server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        seen.push({ method: request.method ?? '', url: request.url ?? '', authorization: request.headers.authorization, body: Buffer.concat(chunks).toString('utf8') });
        handler(request, response, seen.length);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  beforeEach(() => {
    seen = [];
  });

  const transport = (options: Partial<ConstructorParameters<typeof HttpTransport>[0]> = {}) => new HttpTransport({ baseUrl, token: 'secret', retry: QUICK_RETRY, ...options });
  const json = (response: ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const unavailable = (response: ServerResponse) => json(response, 503, { error: { code: 'database_unavailable', message: 'the database is unavailable; try again shortly' } });

  it('retries an idempotent request that got 503, then answers the success', async () => {
    handler = (_request, response, tryNumber) => (tryNumber === 1 ? unavailable(response) : json(response, 200, { ok: true }));
    assert.deepEqual(await transport().json('GET', '/v1/things', { query: { limit: 5, cursor: undefined } }), { ok: true });
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.url, '/v1/things?limit=5');
    assert.equal(seen[1]?.authorization, 'Bearer secret');
  });

  it('gives up after the policy\'s attempts and reports the last answer', async () => {
    handler = (_request, response) => unavailable(response);
    await assert.rejects(transport().request('GET', '/v1/things'), (error: unknown) => error instanceof HttpApiError && error.status === 503 && error.retriable && !error.callerFault);
    assert.equal(seen.length, QUICK_RETRY.attempts);
  });

  it('does not repeat a POST that got 503 unless the caller says it is safe', async () => {
    handler = (_request, response, tryNumber) => (tryNumber === 1 ? unavailable(response) : json(response, 201, { created: true }));
    await assert.rejects(transport().json('POST', '/v1/things', { json: { name: 'x' } }), (error: unknown) => error instanceof HttpApiError && error.code === 'database_unavailable');
    assert.equal(seen.length, 1, 'a POST is sent once');

    seen = [];
    assert.deepEqual(await transport().json('POST', '/v1/things', { json: { name: 'x' }, retry: true }), { created: true });
    assert.equal(seen.length, 2);
    assert.equal(seen[1]?.body, '{"name":"x"}', 'the body is sent again whole');
  });

  it('does not repeat a request whose answer is the caller\'s fault', async () => {
    handler = (_request, response) => json(response, 404, { error: { code: 'not_found', message: 'application x does not exist' } });
    await assert.rejects(transport().request('GET', '/v1/applications/x'), (error: unknown) => {
      assert.ok(error instanceof HttpApiError);
      assert.equal(error.status, 404);
      assert.equal(error.code, 'not_found');
      assert.match(error.message, /application x does not exist/);
      assert.equal(error.callerFault, true);
      assert.equal(error.retriable, false);
      return true;
    });
    assert.equal(seen.length, 1);
  });

  it('keeps the start of an error body that is not the API\'s JSON (a proxy\'s page)', async () => {
    handler = (_request, response) => {
      response.writeHead(502, { 'content-type': 'text/html' });
      response.end(`<html><body>Bad Gateway</body></html>${'x'.repeat(10_000)}`);
    };
    await assert.rejects(transport().request('GET', '/v1/things', { retry: false }), (error: unknown) => {
      assert.ok(error instanceof HttpApiError);
      assert.equal(error.status, 502);
      assert.equal(error.code, 'http_502');
      assert.match(error.message, /<html><body>Bad Gateway/);
      assert.ok(error.message.length < 1_000, 'the message is bounded');
      assert.equal(error.callerFault, false);
      return true;
    });
  });

  it('refuses a success body that is not JSON as invalid_response', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html>not an API</html>');
    };
    await assert.rejects(transport().json('GET', '/v1/things'), (error: unknown) => error instanceof HttpApiError && error.code === 'invalid_response' && /is this a Kiln server/.test(error.message));
  });

  it('words failures with the client\'s describe hooks', async () => {
    handler = (_request, response) => json(response, 403, { error: { code: 'forbidden', message: 'no' } });
    const worded = transport({ describe: { apiError: (failure, request) => `${request.method} ${request.path}: ${failure.code} (${failure.status})` } });
    await assert.rejects(worded.request('DELETE', '/v1/things/1?force=1'), { message: 'DELETE /v1/things/1: forbidden (403)' });
  });

  it('gives up at the deadline with an unreachable error, and does not repeat it', async () => {
    handler = () => undefined; // never answers
    await assert.rejects(transport().request('GET', '/v1/slow', { timeoutMs: 200 }), (error: unknown) => error instanceof HttpUnreachableError && error.timedOut && /no answer within 0.2 s/.test(error.message));
    assert.equal(seen.length, 1);
  });

  it('retries a connection that broke before any answer', async () => {
    handler = (request, response, tryNumber) => (tryNumber === 1 ? request.socket.destroy() : json(response, 200, { ok: 'second' }));
    assert.deepEqual(await transport().json('GET', '/v1/things'), { ok: 'second' });
    assert.equal(seen.length, 2);
  });

  it('reports a server that is not there as unreachable', async () => {
    const nowhere = new HttpTransport({ baseUrl: 'http://127.0.0.1:1', retry: QUICK_RETRY, describe: { unreachable: (why) => `cannot reach it (${why})` } });
    await assert.rejects(nowhere.request('GET', '/v1/things'), (error: unknown) => error instanceof HttpUnreachableError && !error.timedOut && /^cannot reach it \(/.test(error.message));
  });

  it('sends the token to its own origin only', async () => {
    await assert.rejects(transport().request('GET', 'http://example.invalid/steal'), TypeError);
    handler = (_request, response) => json(response, 200, { ok: true });
    assert.deepEqual(await transport().json('GET', `${baseUrl}/v1/absolute`), { ok: true });
    assert.equal(seen[0]?.authorization, 'Bearer secret');
  });

  it('keeps a path prefix of the base URL', async () => {
    handler = (_request, response) => json(response, 200, { ok: true });
    await transport({ baseUrl: `${baseUrl}/kiln/` }).json('GET', '/v1/things');
    assert.equal(seen[0]?.url, '/kiln/v1/things');
  });

  it('streams a body and lets go of the caller\'s signal once it is read', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      response.write('first ');
      setTimeout(() => response.end('second'), 20);
    };
    const caller = new AbortController();
    const response = await transport().request('GET', '/v1/stream', { signal: caller.signal, timeoutMs: 0 });
    assert.equal(getEventListeners(caller.signal, 'abort').length, 1, 'the body is still being read');
    assert.equal(await response.text(), 'first second');
    assert.equal(getEventListeners(caller.signal, 'abort').length, 0, 'no listener is left on a long-lived signal');
    await transport().json('GET', '/v1/stream-as-json-fails', { signal: caller.signal }).catch(() => undefined);
    assert.equal(getEventListeners(caller.signal, 'abort').length, 0);
  });

  it('stops a streamed body when the caller aborts', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      response.write('start');
    };
    const caller = new AbortController();
    const response = await transport().request('GET', '/v1/endless', { signal: caller.signal, timeoutMs: 0 });
    const reading = response.text();
    caller.abort(new Error('stopped by the caller'));
    await assert.rejects(reading);
    assert.equal(getEventListeners(caller.signal, 'abort').length, 0);
  });
});
