import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { DEFAULT_ARCHIVE_LIMITS } from '../../src/archive/limits.ts';
import { DEFAULT_LIMITS } from '../../src/sandbox/sandbox.ts';
import { LeaseLost, ProtocolMismatch, WorkerApiClient } from '../../src/worker/client.ts';
import { ClaimAnswerSchema, DETAILS_LIMITS, type JobSpec } from '../../src/worker/protocol.ts';
import { databaseBackends, s3Skip } from '../support/backends.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const flavours: Array<{ flavour: StorageFlavour; skip: string | false }> = [
  { flavour: 'embedded', skip: false },
  { flavour: 'servers', skip: s3Skip() || databaseBackends().find((backend) => backend.name === 'PostgreSQL')?.skip || false },
];

/** `{ a: { a: … { a: 1 } } }`, `levels` objects deep. */
function nested(levels: number): unknown {
  let value: unknown = 1;
  for (let level = 0; level < levels; level++) value = { a: value };
  return value;
}

for (const { flavour, skip } of flavours) {
  describe(`the internal routes speak the worker protocol (${flavour})`, { skip }, () => {
    let t: TestKiln;
    let job: Json;
    const asWorker = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.workerToken, ...options });
    const report = (body: unknown) => asWorker('POST', `/internal/v1/jobs/${job.id}/result`, { json: body, headers: { 'x-kiln-lease': job.leaseToken } });

    before(async () => {
      t = await startTestKiln({ flavour });
      const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: `proto-${randomUUID().slice(0, 8)}` } });
      assert.equal(app.status, 201, JSON.stringify(app.body));
      const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0', language: 'c' }, await tinyCProject()) });
      assert.equal(upload.status, 202, JSON.stringify(upload.body));
      const claimed = await asWorker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'protocol-test', waitMs: 5_000 } });
      assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
      job = claimed.body.job as Json;
    });
    after(() => t?.close());

    it('hands out a job that carries every limit and passes the protocol check the worker applies', () => {
      const checker = TypeCompiler.Compile(ClaimAnswerSchema);
      assert.ok(checker.Check({ job }), JSON.stringify([...checker.Errors({ job })].slice(0, 3)));
      assert.deepEqual(job.limits, t.kiln.services.config.buildLimits);
      assert.deepEqual(job.archiveLimits, t.kiln.services.config.archiveLimits);
      assert.match(job.cacheNamespace, /\S/);
    });

    it('refuses a result with an outcome the protocol does not know, with 400', async () => {
      const answer = await report({ outcome: 'exploded', stages: [] });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      assert.equal(answer.body.error.code, 'invalid_request');
    });

    it('refuses a result with a field the protocol does not declare, with 400', async () => {
      const answer = await report({ outcome: 'failed', stages: [], verdict: 'trust me' });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
      const stage = await report({ outcome: 'failed', stages: [{ name: 'compile', startedAt: new Date().toISOString(), durationMs: 1, extra: true }] });
      assert.equal(stage.status, 400, JSON.stringify(stage.body));
    });

    it('refuses details nested deeper than the protocol bounds, with 400', async () => {
      const answer = await report({ outcome: 'failed', stages: [], details: { deep: nested(DETAILS_LIMITS.maxDepth + 2) } });
      assert.equal(answer.status, 400, JSON.stringify(answer.body));
    });

    it('accepts a well-formed result after the refused ones (the lease was kept)', async () => {
      const answer = await report({ outcome: 'failed', reason: 'refused by the test', stages: [], details: { facts: { toolchain: 'none' }, steps: [{ name: 'x', ok: false }] } });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.build.state, 'failed');
      assert.equal(answer.body.requeued, false);
    });
  });
}

/** A complete job as the API would send it. */
function validJob(): JobSpec {
  return {
    id: randomUUID(),
    buildId: randomUUID(),
    versionId: randomUUID(),
    attempt: 1,
    leaseToken: 'lease-token',
    leaseExpiresAt: new Date().toISOString(),
    language: null,
    kind: null,
    phases: [],
    config: '',
    optimize: { strip: true, wasmOpt: 'O2', wizer: true, memoryCapPages: null },
    sourceSha256: 'a'.repeat(64),
    sourceFormat: 'tar.gz',
    limits: { ...DEFAULT_LIMITS },
    archiveLimits: { ...DEFAULT_ARCHIVE_LIMITS },
    cacheNamespace: 'b'.repeat(32),
  };
}

describe('the worker client checks what the API answers against the protocol', () => {
  let server: Server;
  let url: string;
  let answer: { status: number; body?: unknown } = { status: 204 };

  before(async () => {
    server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        response.writeHead(answer.status, answer.body === undefined ? {} : { 'content-type': 'application/json' });
        response.end(answer.body === undefined ? undefined : JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('takes a complete job as it came', async () => {
    const job = validJob();
    answer = { status: 200, body: { job } };
    assert.deepEqual(await new WorkerApiClient(url, 'worker-token').claim('w', 0), job);
  });

  it('refuses a job without its sandbox limits or without its archive limits', async () => {
    const client = new WorkerApiClient(url, 'worker-token');
    for (const missing of ['limits', 'archiveLimits'] as const) {
      const job: Partial<JobSpec> = validJob();
      delete job[missing];
      answer = { status: 200, body: { job } };
      await assert.rejects(client.claim('w', 0), (error: Error) => error instanceof ProtocolMismatch && error.message.includes(missing), `a job without ${missing}`);
    }
  });

  it('refuses a job whose limits are incomplete rather than filling in defaults', async () => {
    const { pids: _dropped, ...limits } = DEFAULT_LIMITS;
    answer = { status: 200, body: { job: { ...validJob(), limits } } };
    await assert.rejects(new WorkerApiClient(url, 'worker-token').claim('w', 0), ProtocolMismatch);
  });

  it('reads 204 as no job, and 409 on a job as a lost lease', async () => {
    const client = new WorkerApiClient(url, 'worker-token');
    answer = { status: 204 };
    assert.equal(await client.claim('w', 0), undefined);
    answer = { status: 409, body: { error: { code: 'lease_lost', message: 'gone' } } };
    await assert.rejects(client.heartbeat(validJob()), LeaseLost);
  });
});
