import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { jobs } from '../../src/store/metadata/schema.ts';
import { databaseBackends, s3Skip } from '../support/backends.ts';
import { tarGz, tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';
import { proxyWasmModule, wasiCommandModule } from '../support/wasm.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const flavours: Array<{ flavour: StorageFlavour; skip: string | false }> = [
  { flavour: 'embedded', skip: false },
  // Both real servers or neither; in CI a missing one is a failure, not a skip (see backends.ts).
  { flavour: 'servers', skip: s3Skip() || databaseBackends().find((backend) => backend.name === 'PostgreSQL')?.skip || false },
];

for (const { flavour, skip } of flavours) {
  describe(`HTTP API (${flavour === 'embedded' ? 'PGlite + filesystem' : 'PostgreSQL + Ceph S3'})`, { skip }, () => {
    let t: TestKiln;
    let bobToken: string;
    const api = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.ownerToken, ...options });
    const asWorker = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.workerToken, ...options });

    before(async () => {
      // The default lease: a short one raced every test's claim-to-result path on a loaded machine. The
      // test of a vanished worker ends its lease itself.
      t = await startTestKiln({ flavour, env: { KILN_MAX_ATTEMPTS: '2' } });
      const bob = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: 'bob' } });
      assert.equal(bob.status, 201);
      bobToken = bob.body.token;
    });
    after(() => t.close());

    async function createApp(name = `app-${randomUUID().slice(0, 8)}`): Promise<Json> {
      const created = await api('POST', '/v1/applications', { json: { name, notes: 'hello' } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return created.body;
    }

    async function upload(appId: string, metadata: unknown, archive?: Buffer, filename?: string) {
      const answer = await api('POST', `/v1/applications/${appId}/versions`, { body: versionForm(metadata, archive, filename) });
      const buildId = (answer.body as Json | undefined)?.build?.id;
      if (answer.status === 202 && typeof buildId === 'string') ownBuilds.add(buildId);
      return answer;
    }

    /** The builds the running test uploaded: claim() plays a worker for those only. */
    const ownBuilds = new Set<string>();
    beforeEach(() => ownBuilds.clear());

    /** Plays a worker: claims the next job and runs `work` with a lease-carrying caller. */
    async function claim(waitMs = 5_000) {
      let job: Json;
      while (true) {
        const claimed = await asWorker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'test-worker', waitMs } });
        assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
        job = claimed.body.job as Json;
        if (ownBuilds.has(job.buildId as string)) break;
        // An earlier test left this job leased on purpose (a lost race); once its lease ran out the queue
        // handed it out again, which lands in a later test. End it.
        await asWorker('POST', `/internal/v1/jobs/${job.id}/result`, { json: { outcome: 'failed', reason: 'left by an earlier test', stages: [] }, headers: { 'x-kiln-lease': job.leaseToken } });
      }
      const leased = (method: string, route: string, options: Parameters<typeof call>[3] = {}) =>
        asWorker(method, `/internal/v1/jobs/${job.id}${route}`, { ...options, headers: { 'x-kiln-lease': job.leaseToken, ...options.headers } });
      return { job, leased };
    }

    /** Ends every queued job so each test starts from an empty queue. */
    async function drainJobs() {
      while (true) {
        const claimed = await asWorker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'drain', waitMs: 0 } });
        if (claimed.status !== 200) return;
        const job = claimed.body.job as Json;
        await asWorker('POST', `/internal/v1/jobs/${job.id}/result`, { json: { outcome: 'failed', reason: 'drained by the test', stages: [] }, headers: { 'x-kiln-lease': job.leaseToken } });
      }
    }

    it('answers health, readiness, OpenAPI and docs without a token; metrics only to an admin token', async () => {
      assert.equal((await call(t.url, 'GET', '/healthz')).status, 200);
      const ready = await call<Json>(t.url, 'GET', '/readyz');
      assert.equal(ready.status, 200);
      assert.equal(ready.body.database, 'ok');
      assert.equal((await call(t.url, 'GET', '/metrics')).status, 401, 'metrics are not public');
      assert.equal((await call(t.url, 'GET', '/metrics', { token: t.ownerToken })).status, 403, 'an owner cannot read platform metrics');
      const metrics = await call<string>(t.url, 'GET', '/metrics', { token: t.adminToken });
      assert.match(metrics.body, /kiln_http_requests_total/);
      const openapi = await call<Json>(t.url, 'GET', '/openapi.json');
      assert.equal(openapi.status, 200);
      assert.ok(openapi.body.paths['/v1/applications']);
      assert.ok(openapi.body.paths['/v1/builds/{buildId}/logs']);
      assert.equal(Object.keys(openapi.body.paths).some((route) => route.startsWith('/internal')), false, 'the worker protocol is not advertised');
      const docs = await call<string>(t.url, 'GET', '/docs/');
      assert.equal(docs.status, 200);
    });

    it('refuses missing, unknown and wrong-kind tokens with clear errors', async () => {
      const missing = await call<Json>(t.url, 'GET', '/v1/applications');
      assert.equal(missing.status, 401);
      assert.match(missing.body.error.message, /Bearer/);
      assert.equal((await call<Json>(t.url, 'GET', '/v1/applications', { token: 'kiln_own_nope' })).status, 401);
      const workerOnOwnerRoute = await call<Json>(t.url, 'GET', '/v1/applications', { token: t.workerToken });
      assert.equal(workerOnOwnerRoute.status, 403);
      assert.equal((await api('POST', '/internal/v1/jobs/claim', { json: { workerId: 'x' } })).status, 403, 'an owner token cannot act as a worker');
      assert.equal((await api('POST', '/v1/owners', { json: { name: 'mallory' } })).status, 403, 'only the admin creates owners');
    });

    it('creates owners and tokens, and revoked tokens stop working', async () => {
      const duplicate = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: 'bob' } });
      assert.equal(duplicate.status, 409);
      const made = await api('POST', '/v1/tokens', { json: { name: 'ci' } });
      assert.equal(made.status, 201);
      assert.equal((await call(t.url, 'GET', '/v1/applications', { token: made.body.token })).status, 200);
      const listed = await api('GET', '/v1/tokens');
      assert.ok(listed.body.items.some((token: Json) => token.id === made.body.info.id));
      assert.equal(JSON.stringify(listed.body).includes(made.body.token), false, 'token values are never listed');
      assert.equal((await call(t.url, 'DELETE', `/v1/tokens/${made.body.info.id}`, { token: bobToken })).status, 404, "bob cannot revoke the local owner's token");
      assert.equal((await api('DELETE', `/v1/tokens/${made.body.info.id}`)).status, 204);
      assert.equal((await call(t.url, 'GET', '/v1/applications', { token: made.body.token })).status, 401);
    });

    it('creates, lists, reads, updates and deletes applications', async () => {
      const app = await createApp('crud-app');
      assert.equal(app.name, 'crud-app');
      assert.equal(app.notes, 'hello');
      assert.equal((await api('POST', '/v1/applications', { json: { name: 'crud-app' } })).status, 409);
      const listed = await api('GET', '/v1/applications?limit=200');
      assert.ok(listed.body.items.some((item: Json) => item.id === app.id));
      assert.equal((await api('GET', `/v1/applications/${app.id}`)).body.name, 'crud-app');
      const patched = await api('PATCH', `/v1/applications/${app.id}`, { json: { notes: 'changed' } });
      assert.equal(patched.status, 200);
      assert.equal(patched.body.notes, 'changed');
      assert.equal((await api('DELETE', `/v1/applications/${app.id}`)).status, 204);
      assert.equal((await api('GET', `/v1/applications/${app.id}`)).status, 404);
    });

    it('answers bad input with a 4xx that says what to fix, never a 500', async () => {
      const cases: Array<[string, string, Parameters<typeof call>[3], number, RegExp]> = [
        ['POST', '/v1/applications', { body: '{"name":', headers: { 'content-type': 'application/json' } }, 400, /JSON/i],
        ['POST', '/v1/applications', { json: { name: 42 } }, 400, /name/],
        ['POST', '/v1/applications', { json: { name: 'Has Spaces' } }, 400, /name/],
        ['POST', '/v1/applications', { json: { name: 'ok', extra: true } }, 400, /additional/i],
        ['POST', '/v1/applications', { json: { name: 'x'.repeat(2 * 1024 * 1024) } }, 413, /large/i],
        ['POST', '/v1/applications', { body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, /./],
        ['GET', '/v1/applications/not-a-uuid', {}, 400, /applicationId/],
        ['GET', '/v1/applications?limit=0', {}, 400, /limit/],
        ['GET', '/v1/applications?cursor=garbage', {}, 400, /cursor/],
        ['GET', '/v1/builds?state=exploded', {}, 400, /state/],
        ['PATCH', `/v1/applications/${randomUUID()}`, { json: {} }, 400, /at least one/],
        ['GET', `/v1/builds/${randomUUID()}`, {}, 404, /does not exist/],
        ['GET', '/v1/nothing-here', {}, 404, /no route/],
      ];
      for (const [method, route, options, status, message] of cases) {
        const answer = await api(method, route, options);
        assert.equal(answer.status, status, `${method} ${route}: ${JSON.stringify(answer.body)}`);
        assert.equal(typeof answer.body.error?.code, 'string', `${method} ${route} has an error code`);
        assert.match(answer.body.error.message, message, `${method} ${route}`);
      }
    });

    it('validates version uploads: parts, metadata, semver, enums and the archive', async () => {
      const app = await createApp();
      const archive = await tinyCProject();
      const bad: Array<[unknown, Buffer | undefined, number, string]> = [
        [undefined, archive, 400, 'missing_metadata'],
        [{ version: '1.0.0' }, undefined, 400, 'missing_source'],
        ['{not json', archive, 400, 'invalid_metadata'],
        [{ version: 'one' }, archive, 400, 'invalid_metadata'],
        [{ version: '1.0.0', language: 'cobol' }, archive, 400, 'invalid_metadata'],
        [{ version: '1.0.0', kind: 'daemon' }, archive, 400, 'invalid_metadata'],
        [{ version: '1.0.0', surprise: 1 }, archive, 400, 'invalid_metadata'],
        [{ version: '1.0.0' }, Buffer.from('this is not an archive'), 415, ''],
      ];
      for (const [metadata, body, status, code] of bad) {
        const answer = await upload(app.id, metadata, body);
        assert.ok(answer.status >= 400 && answer.status < 500, `${JSON.stringify(metadata)} → ${answer.status} ${JSON.stringify(answer.body)}`);
        if (code) {
          assert.equal(answer.status, status);
          assert.equal(answer.body.error.code, code, JSON.stringify(answer.body));
        }
      }
      const semver = await upload(app.id, { version: '1.0' }, archive);
      assert.match(semver.body.error.message, /semantic version/);
      const json = await api('POST', `/v1/applications/${app.id}/versions`, { json: { version: '1.0.0' } });
      assert.equal(json.status, 415);
      assert.equal((await upload(randomUUID(), { version: '1.0.0' }, archive)).status, 404);
      const traversal = await upload(app.id, { version: '1.0.0' }, await tarGz({ '../evil.c': 'x' }));
      assert.ok(traversal.status >= 400 && traversal.status < 500);
      assert.match(traversal.body.error.message, /evil\.c/);
      const listed = await api('GET', `/v1/applications/${app.id}/versions`);
      assert.equal(listed.body.items.length, 0, 'no rejected upload created a version');
    });

    it('stores an upload, queues its build and answers 202 at once', async () => {
      const app = await createApp();
      const archive = await tinyCProject();
      const answer = await upload(app.id, { version: '1.2.3', language: 'c', kind: 'wasi-command', notes: 'first' }, archive);
      assert.equal(answer.status, 202, JSON.stringify(answer.body));
      const { version, build } = answer.body;
      assert.equal(version.version, '1.2.3');
      assert.equal(version.source.sha256, createHash('sha256').update(archive).digest('hex'));
      assert.equal(version.optimize.strip, true);
      assert.equal(build.state, 'queued');
      assert.equal(build.number, 1);
      assert.equal((await upload(app.id, { version: '1.2.3' }, archive)).status, 409, 'the same version twice is a conflict');
      const source = await api('GET', `/v1/versions/${version.id}/source`);
      assert.equal(source.status, 200);
      assert.deepEqual(source.raw, archive);
      const read = await api('GET', `/v1/versions/${version.id}`);
      assert.equal(read.body.notes, 'first');
      const patched = await api('PATCH', `/v1/versions/${version.id}`, { json: { notes: 'second', phases: ['request_headers'], config: '{"a":1}' } });
      assert.equal(patched.status, 200);
      assert.deepEqual(patched.body.phases, ['request_headers']);
      assert.equal((await api('PATCH', `/v1/versions/${version.id}`, { json: { version: 'x.y' } })).status, 400);
      const noArtifact = await api('GET', `/v1/versions/${version.id}/artifact`);
      assert.equal(noArtifact.status, 409);
      const builds = await api('GET', `/v1/builds?versionId=${version.id}`);
      assert.equal(builds.body.items.length, 1);
      assert.equal((await api('POST', `/v1/versions/${version.id}/builds`)).status, 409, 'no rebuild while a build is queued');
    });

    it('runs the worker protocol: claim, heartbeat, logs, artifact, result, download', async () => {
      await drainJobs();
      const app = await createApp();
      const { body } = await upload(app.id, { version: '1.0.0', kind: 'proxy-wasm' }, await tinyCProject());
      const { job, leased } = await claim();
      assert.equal(job.buildId, body.build.id);
      assert.equal(job.kind, 'proxy-wasm');
      assert.equal(job.limits.memoryBytes > 0, true);
      assert.equal((await leased('POST', '/heartbeat')).body.cancelRequested, false);
      const source = await leased('GET', '/source');
      assert.equal(createHash('sha256').update(source.raw).digest('hex'), job.sourceSha256);
      assert.equal((await leased('POST', '/logs', { body: 'compiling…\n', headers: { 'content-type': 'application/octet-stream' } })).status, 204);
      const running = await api('GET', `/v1/builds/${job.buildId}`);
      assert.equal(running.body.state, 'running');
      assert.match(String((await api('GET', `/v1/builds/${job.buildId}/logs`)).body), /compiling…/);
      const module = proxyWasmModule();
      const put = await leased('PUT', '/artifacts/original', { body: new Uint8Array(module), headers: { 'content-type': 'application/wasm' } });
      assert.equal(put.body.sha256, createHash('sha256').update(module).digest('hex'));
      const result = await leased('POST', '/result', { json: { outcome: 'succeeded', language: 'c', stages: [{ name: 'compile', startedAt: new Date().toISOString(), durationMs: 12 }] } });
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.equal(result.body.build.state, 'succeeded');
      assert.equal((await leased('POST', '/result', { json: { outcome: 'failed', stages: [] } })).status, 409, 'a job completes once');
      assert.equal((await leased('POST', '/heartbeat')).status, 409);

      const build = (await api('GET', `/v1/builds/${job.buildId}`)).body;
      assert.equal(build.state, 'succeeded');
      assert.equal(build.kind, 'proxy-wasm');
      assert.equal(build.artifacts.original.size, module.length);
      assert.equal(build.stages[0].name, 'compile');
      const artifact = await api('GET', `/v1/versions/${body.version.id}/artifact`);
      assert.equal(artifact.status, 200);
      assert.deepEqual(artifact.raw, module);
      assert.equal(artifact.headers.get('etag'), `"${build.artifacts.original.sha256}"`);
      assert.equal(artifact.headers.get('x-kiln-variant'), 'original', 'without an optimized variant the original is served');
      const cached = await api('GET', `/v1/versions/${body.version.id}/artifact`, { headers: { 'if-none-match': `"${build.artifacts.original.sha256}"` } });
      assert.equal(cached.status, 304);
      assert.equal((await api('GET', `/v1/versions/${body.version.id}/artifact?variant=optimized`)).status, 404);
      assert.equal((await api('GET', `/v1/versions/${body.version.id}/artifact?variant=weird`)).status, 400);
      assert.match(String((await api('GET', `/v1/builds/${job.buildId}/logs`)).body), /compiling…/, 'the log survives the end of the build');

      const rebuild = await api('POST', `/v1/versions/${body.version.id}/builds`);
      assert.equal(rebuild.status, 202);
      assert.equal(rebuild.body.number, 2);
    });

    it('lets the evaluator fail a build whose module does not fit its kind', async () => {
      await drainJobs();
      const app = await createApp();
      await upload(app.id, { version: '1.0.0', kind: 'proxy-wasm' }, await tinyCProject());
      const { job, leased } = await claim();
      await leased('PUT', '/artifacts/original', { body: new Uint8Array(wasiCommandModule()), headers: { 'content-type': 'application/wasm' } });
      const result = await leased('POST', '/result', { json: { outcome: 'succeeded', stages: [] } });
      assert.equal(result.body.build.state, 'failed');
      assert.match(result.body.build.reason, /proxy-wasm/);
      const garbage = await upload(app.id, { version: '1.0.1' }, await tinyCProject());
      const second = await claim();
      await second.leased('PUT', '/artifacts/original', { body: 'not wasm at all', headers: { 'content-type': 'application/wasm' } });
      const refused = await second.leased('POST', '/result', { json: { outcome: 'succeeded', stages: [] } });
      assert.equal(refused.body.build.state, 'failed');
      assert.match(refused.body.build.reason, /invalid WebAssembly/);
      assert.equal((await api('GET', `/v1/versions/${garbage.body.version.id}/artifact`)).status, 409);
      assert.ok(job.id);
    });

    it('re-queues a job whose worker vanished and lets another worker finish it', async () => {
      await drainJobs();
      const app = await createApp();
      const { body } = await upload(app.id, { version: '1.0.0', kind: 'wasi-command' }, await tinyCProject());
      const first = await claim();
      // The first worker goes silent until its lease has run out; the sweeper then re-queues the job.
      await t.kiln.services.database.db.update(jobs).set({ leaseExpiresAt: sql`now() - interval '1 second'` }).where(sql`${jobs.id} = ${first.job.id}`);
      const second = await claim(10_000);
      assert.equal(second.job.id, first.job.id);
      assert.equal(second.job.attempt, 2);
      assert.equal((await first.leased('POST', '/heartbeat')).status, 409, 'the vanished worker has lost its lease');
      assert.equal((await first.leased('PUT', '/artifacts/original', { body: new Uint8Array(wasiCommandModule()), headers: { 'content-type': 'application/wasm' } })).status, 409);
      await second.leased('PUT', '/artifacts/original', { body: new Uint8Array(wasiCommandModule()), headers: { 'content-type': 'application/wasm' } });
      const result = await second.leased('POST', '/result', { json: { outcome: 'succeeded', stages: [] } });
      assert.equal(result.body.build.state, 'succeeded');
      assert.equal(result.body.build.attempts, 2);
      assert.match(String((await api('GET', `/v1/builds/${body.build.id}/logs`)).body), /re-queued/);
    });

    it('does not hand a job to a worker that stopped waiting', async () => {
      await drainJobs();
      const gone = new AbortController();
      const waiting = fetch(new URL('/internal/v1/jobs/claim', t.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${t.workerToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ workerId: 'leaver', waitMs: 20_000 }),
        signal: gone.signal,
      }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      gone.abort();
      await waiting;
      await new Promise((resolve) => setTimeout(resolve, 100));
      const app = await createApp();
      const { body } = await upload(app.id, { version: '1.0.0' }, await tinyCProject());
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      const build = await api('GET', `/v1/builds/${body.build.id}`);
      assert.equal(build.body.state, 'queued', 'the departed worker did not keep the job');
      const { job } = await claim();
      assert.equal(job.buildId, body.build.id);
      assert.equal(job.attempt, 1, 'the attempt it never started is not counted');
    });

    it('gives a job to exactly one of two concurrent claimers', async () => {
      await drainJobs();
      const app = await createApp();
      await upload(app.id, { version: '1.0.0' }, await tinyCProject());
      const answers = await Promise.all([1, 2].map((n) => asWorker('POST', '/internal/v1/jobs/claim', { json: { workerId: `racer-${n}`, waitMs: 0 } })));
      assert.deepEqual(answers.map((answer) => answer.status).sort(), [200, 204]);
    });

    it('cancels a queued build and a running one, and streams logs to the end', async () => {
      await drainJobs();
      const app = await createApp();
      const first = await upload(app.id, { version: '1.0.0' }, await tinyCProject());
      const cancelled = await api('POST', `/v1/builds/${first.body.build.id}/cancel`);
      assert.equal(cancelled.status, 202);
      assert.equal(cancelled.body.state, 'cancelled');
      assert.equal((await api('POST', `/v1/builds/${first.body.build.id}/cancel`)).status, 409);

      const second = await upload(app.id, { version: '1.0.1' }, await tinyCProject());
      const { leased } = await claim();
      await leased('POST', '/logs', { body: 'line one\n', headers: { 'content-type': 'application/octet-stream' } });
      const follow = fetch(new URL(`/v1/builds/${second.body.build.id}/logs?follow=1`, t.url), { headers: { authorization: `Bearer ${t.ownerToken}` } });
      const flagged = await api('POST', `/v1/builds/${second.body.build.id}/cancel`);
      assert.equal(flagged.body.cancelRequested, true);
      assert.equal((await leased('POST', '/heartbeat')).body.cancelRequested, true);
      await leased('POST', '/logs', { body: 'line two\n', headers: { 'content-type': 'application/octet-stream' } });
      await leased('POST', '/result', { json: { outcome: 'cancelled', reason: 'cancelled by the user', stages: [] } });
      const stream = await follow;
      assert.equal(stream.headers.get('content-type'), 'text/event-stream');
      const text = await stream.text();
      assert.match(text, /event: log\ndata: .*line one/);
      assert.match(text, /line two/);
      assert.match(text, /event: end\ndata: \{.*"state":"cancelled"/);
    });

    it("keeps every owner's resources invisible to every other owner", async () => {
      await drainJobs();
      const app = await createApp();
      const { body } = await upload(app.id, { version: '1.0.0', kind: 'wasi-command' }, await tinyCProject());
      const { leased } = await claim();
      await leased('PUT', '/artifacts/original', { body: new Uint8Array(wasiCommandModule()), headers: { 'content-type': 'application/wasm' } });
      await leased('POST', '/result', { json: { outcome: 'succeeded', stages: [] } });
      const versionId = body.version.id;
      const buildId = body.build.id;
      const bob = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: bobToken, ...options });
      const routes: Array<[string, string, Parameters<typeof call>[3]?]> = [
        ['GET', `/v1/applications/${app.id}`],
        ['PATCH', `/v1/applications/${app.id}`, { json: { notes: 'pwned' } }],
        ['DELETE', `/v1/applications/${app.id}`],
        ['GET', `/v1/applications/${app.id}/versions`],
        ['POST', `/v1/applications/${app.id}/versions`, { body: versionForm({ version: '9.9.9' }, await tinyCProject()) }],
        ['GET', `/v1/versions/${versionId}`],
        ['PATCH', `/v1/versions/${versionId}`, { json: { notes: 'pwned' } }],
        ['DELETE', `/v1/versions/${versionId}`],
        ['GET', `/v1/versions/${versionId}/artifact`],
        ['GET', `/v1/versions/${versionId}/source`],
        ['POST', `/v1/versions/${versionId}/builds`],
        ['GET', `/v1/builds/${buildId}`],
        ['GET', `/v1/builds/${buildId}/logs`],
        ['GET', `/v1/builds/${buildId}/logs?follow=1`],
        ['POST', `/v1/builds/${buildId}/cancel`],
      ];
      for (const [method, route, options] of routes) {
        const answer = await bob(method, route, options);
        assert.equal(answer.status, 404, `${method} ${route} → ${answer.status}`);
      }
      assert.equal((await bob('GET', '/v1/applications')).body.items.length, 0);
      assert.equal((await bob('GET', `/v1/builds?applicationId=${app.id}`)).body.items.length, 0);
      assert.equal((await api('GET', `/v1/applications/${app.id}`)).body.notes, 'hello', "bob's attempts changed nothing");
      assert.equal((await api('GET', `/v1/versions/${versionId}/artifact`)).status, 200);
    });

    it('deletes a version and an application with every stored object', async () => {
      await drainJobs();
      const app = await createApp();
      const { body } = await upload(app.id, { version: '1.0.0', kind: 'wasi-command' }, await tinyCProject());
      const { leased } = await claim();
      await leased('PUT', '/artifacts/original', { body: new Uint8Array(wasiCommandModule()), headers: { 'content-type': 'application/wasm' } });
      await leased('POST', '/result', { json: { outcome: 'succeeded', stages: [] } });
      const second = await upload(app.id, { version: '2.0.0' }, await tinyCProject());
      const ownerId = (await t.kiln.services.versions.get(await ownerIdOf(t), body.version.id))?.ownerId;
      const keys = async (versionId: string) => {
        const found: string[] = [];
        for await (const object of t.kiln.services.objects.list(`owners/${ownerId}/versions/${versionId}/`)) found.push(object.key);
        return found;
      };
      assert.ok((await keys(body.version.id)).length >= 3, 'source, artifact and log are stored');
      assert.equal((await api('GET', `/v1/builds/${body.build.id}`)).body.state, 'succeeded', 'read once, so a cached copy exists');
      assert.equal((await api('DELETE', `/v1/versions/${body.version.id}`)).status, 204);
      assert.deepEqual(await keys(body.version.id), []);
      assert.equal((await api('GET', `/v1/versions/${body.version.id}`)).status, 404);
      assert.equal((await api('GET', `/v1/builds/${body.build.id}`)).status, 404);
      assert.equal((await api('DELETE', `/v1/applications/${app.id}`)).status, 204);
      assert.deepEqual(await keys(second.body.version.id), []);
      assert.equal((await api('GET', `/v1/versions/${second.body.version.id}`)).status, 404);
    });

    it('answers an ended build read again (kept serialized) with the same JSON, and never to another owner', async () => {
      await drainJobs();
      const app = await createApp();
      const { body } = await upload(app.id, { version: '1.0.0', kind: 'wasi-command' }, await tinyCProject());
      const { leased } = await claim();
      await leased('PUT', '/artifacts/original', { body: new Uint8Array(wasiCommandModule()), headers: { 'content-type': 'application/wasm' } });
      await leased('POST', '/result', { json: { outcome: 'succeeded', stages: [] } });
      const read = () => fetch(new URL(`/v1/builds/${body.build.id}`, t.url), { headers: { authorization: `Bearer ${t.ownerToken}` } });
      const first = await read();
      assert.ok(t.kiln.services.finishedBuilds.get(await ownerIdOf(t), body.build.id), 'the ended build is kept after one read');
      const second = await read();
      for (const answer of [first, second]) {
        assert.equal(answer.status, 200);
        assert.equal(answer.headers.get('content-type'), 'application/json; charset=utf-8');
      }
      const text = await first.text();
      assert.equal(await second.text(), text);
      const parsed = JSON.parse(text) as Json;
      assert.equal(parsed.state, 'succeeded');
      assert.equal(parsed.id, body.build.id);
      assert.equal((await call<Json>(t.url, 'GET', `/v1/builds/${body.build.id}`, { token: bobToken })).status, 404, 'the kept answer is its owner\'s only');
    });
  });
}

async function ownerIdOf(t: TestKiln): Promise<string> {
  const owner = await t.kiln.services.owners.getByName('local');
  assert.ok(owner);
  return owner.id;
}
