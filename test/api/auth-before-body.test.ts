import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';

const DECLARED_BYTES = 50 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

interface Refusal {
  status: number;
  connection: string | undefined;
  /** Bytes of the body the client had managed to hand to its socket when the answer came. */
  sentBeforeAnswer: number;
  body: string;
}

/**
 * Streams a 50 MiB body and stops the moment an answer arrives. A server that
 * reads the body before authenticating cannot answer until all 50 MiB are in;
 * one that refuses first answers while the client is stuck on backpressure
 * (the server stopped reading), with most of the body never sent.
 */
function streamLargeBody(url: string, method: string, route: string, headers: Record<string, string>): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const request = http.request(new URL(route, url), { method, headers: { ...headers, 'content-length': String(DECLARED_BYTES) } });
    request.on('response', (response) => {
      answered = true;
      const sentBeforeAnswer = sent;
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, connection: response.headers.connection, sentBeforeAnswer, body: Buffer.concat(chunks).toString('utf8') });
        request.destroy();
      });
    });
    // The server closing on us while we still write is the expected end.
    request.on('error', (error) => {
      if (!answered) reject(error);
    });
    const pump = (): void => {
      while (!answered && sent < DECLARED_BYTES) {
        sent += CHUNK.length;
        if (!request.write(CHUNK)) {
          request.once('drain', pump);
          return;
        }
      }
      if (!answered) request.end();
    };
    pump();
  });
}

describe('authentication comes before the body', { timeout: 120_000 }, () => {
  let t: TestKiln;
  before(async () => {
    t = await startTestKiln();
  });
  after(() => t.close());

  const cases: Array<{ name: string; method: string; route: () => string; type: string }> = [
    { name: 'JSON to an owner route', method: 'POST', route: () => '/v1/applications', type: 'application/json' },
    { name: 'octet-stream to the worker log route', method: 'POST', route: () => `/internal/v1/jobs/${randomUUID()}/logs`, type: 'application/octet-stream' },
    { name: 'Wasm to the artifact route', method: 'PUT', route: () => `/internal/v1/jobs/${randomUUID()}/artifacts/original`, type: 'application/wasm' },
    { name: 'text/plain to an owner route', method: 'POST', route: () => '/v1/applications', type: 'text/plain' },
    { name: 'octet-stream to the preview', method: 'POST', route: () => `/preview/${randomUUID()}/upload`, type: 'application/octet-stream' },
    { name: 'multipart upload', method: 'POST', route: () => `/v1/applications/${randomUUID()}/versions`, type: 'multipart/form-data; boundary=x' },
  ];

  for (const { name, method, route, type } of cases) {
    for (const credentials of ['none', 'wrong'] as const) {
      it(`${name} with ${credentials} token: 401 before the body is read, connection closed`, async () => {
        const headers: Record<string, string> = { 'content-type': type };
        if (credentials === 'wrong') headers.authorization = 'Bearer kiln_owner_not-a-real-token';
        const refusal = await streamLargeBody(t.url, method, route(), headers);
        assert.equal(refusal.status, 401, refusal.body);
        assert.equal(JSON.parse(refusal.body).error.code, 'unauthorized');
        assert.ok(refusal.sentBeforeAnswer < DECLARED_BYTES / 2, `the server answered only after ${refusal.sentBeforeAnswer} bytes of the body`);
        assert.equal(refusal.connection, 'close', 'the rest of the body is never read');
      });
    }
  }

  it('a token of the wrong kind is refused (403) before the body too', async () => {
    const refusal = await streamLargeBody(t.url, 'PUT', `/internal/v1/jobs/${randomUUID()}/artifacts/original`, {
      'content-type': 'application/wasm',
      authorization: `Bearer ${t.ownerToken}`,
    });
    assert.equal(refusal.status, 403, refusal.body);
    assert.ok(refusal.sentBeforeAnswer < DECLARED_BYTES / 2);
  });

  it('a malformed path answers 401 to a caller without a token, 400 to one with', async () => {
    for (const path of ['/v1/applications/not-a-uuid', `/v1/builds/${'a'.repeat(300)}`, '/internal/v1/jobs/%zz/heartbeat']) {
      const anonymous = await call(t.url, 'GET', path);
      assert.equal(anonymous.status, 401, `${path} without a token`);
    }
    const known = await call(t.url, 'GET', '/v1/applications/not-a-uuid', { token: t.ownerToken });
    assert.equal(known.status, 400);
    const tooLong = await call(t.url, 'GET', `/v1/builds/${'a'.repeat(300)}`, { token: t.ownerToken });
    assert.ok(tooLong.status >= 400 && tooLong.status < 500 && tooLong.status !== 401, `got ${tooLong.status}`);
  });

  it('an authenticated JSON body above the JSON limit is refused with 413, and the server still answers', async () => {
    const answer = await call(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'x'.repeat(2 * 1024 * 1024) } });
    assert.equal(answer.status, 413);
    assert.equal((await call(t.url, 'GET', '/healthz')).status, 200);
  });
});
