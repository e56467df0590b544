import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

/**
 * Every documented route, every kind of garbage: the answer must be a 4xx
 * with the error shape, never a 5xx. The route list comes from the server's
 * own OpenAPI document, so a new route is covered without touching this file.
 */
describe('hostile input on every route', { timeout: 120_000 }, () => {
  let t: TestKiln;
  let routes: Array<{ method: string; path: string }>;

  before(async () => {
    t = await startTestKiln();
    const openapi = await call<Json>(t.url, 'GET', '/openapi.json');
    routes = Object.entries(openapi.body.paths as Record<string, Record<string, unknown>>).flatMap(([path, operations]) =>
      Object.keys(operations)
        .map((method) => ({ method: method.toUpperCase(), path }))
        .filter(({ method }) => ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)),
    );
    assert.ok(routes.length >= 15, `expected the whole API in /openapi.json, got ${routes.length} routes`);
  });
  after(() => t.close());

  const parameterValues = ['not-a-uuid', randomUUID(), '%00', '..%2F..%2Fetc%2Fpasswd', 'a'.repeat(300)];
  const bodies: Array<{ name: string; body?: string; type?: string }> = [
    { name: 'no body' },
    { name: 'broken JSON', body: '{"name": ', type: 'application/json' },
    { name: 'JSON array', body: '[1,2,3]', type: 'application/json' },
    { name: 'JSON null', body: 'null', type: 'application/json' },
    { name: 'wrong types', body: '{"name":{"$gt":""},"version":12,"versionId":[],"notes":false}', type: 'application/json' },
    { name: 'prototype pollution', body: '{"__proto__":{"admin":true},"constructor":{"prototype":{"x":1}}}', type: 'application/json' },
    { name: 'deep nesting', body: '['.repeat(5000) + ']'.repeat(5000), type: 'application/json' },
    { name: 'binary junk', body: '\u0000\u00ff\u00fe garbage', type: 'application/octet-stream' },
    { name: 'broken multipart', body: '--x\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{', type: 'multipart/form-data; boundary=x' },
    { name: 'unknown content type', body: 'x', type: 'application/x-kiln-nonsense' },
  ];

  it('never answers a 5xx, and every error has the {error:{code,message}} shape', async () => {
    const failures: string[] = [];
    for (const route of routes) {
      for (const value of parameterValues) {
        const path = route.path.replace(/\{[^}]+\}/g, value);
        for (const { name, body, type } of bodies) {
          if ((route.method === 'GET' || route.method === 'HEAD') && body !== undefined) continue;
          const answer = await call<Json>(t.url, route.method, `${path}?limit=-1&cursor=%ff&state=%00&follow=maybe&variant=../x`, {
            token: t.ownerToken,
            body,
            headers: type ? { 'content-type': type } : {},
          });
          const label = `${route.method} ${path} with ${name} → ${answer.status}`;
          if (answer.status >= 500) failures.push(`${label}: ${JSON.stringify(answer.body)}`);
          else if (answer.status >= 400 && answer.headers.get('content-type')?.includes('application/json') && typeof answer.body?.error?.code !== 'string') {
            failures.push(`${label}: error without a code: ${JSON.stringify(answer.body)}`);
          }
        }
      }
    }
    assert.deepEqual(failures.slice(0, 10).map((failure) => failure.slice(0, 400)), [], `${failures.length} failures`);
    assert.equal((await call(t.url, 'GET', '/healthz')).status, 200);
  });
});
