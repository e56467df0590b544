import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { rollbackTarget } from '../../src/cli/commands/rollback.ts';
import type { Deployment } from '../../src/cli/commands/deployments.ts';
import { versionForm, tinyCProject } from '../support/archives.ts';
import { filterModule, sha256, startHarness, type Harness, type Json } from './helpers.ts';

describe('deployments and the edge API', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({ KILN_ENVIRONMENTS: 'canary, eu-west' });
  });
  after(() => h.close());

  it('promotes only succeeded versions, to configured environments', async () => {
    const app = await h.createApp();
    const failed = await h.failedVersion(app.id, '0.9.0');
    const refused = await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: failed.id, environment: 'production' } });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'not_succeeded');
    const { version } = await h.succeededVersion(app.id, '1.0.0', filterModule('a'));
    const cases: Array<[unknown, number, string]> = [
      [{ versionId: version.id, environment: 'prodution' }, 400, 'unknown_environment'],
      [{ versionId: version.id, environment: 'Production' }, 400, 'invalid_request'],
      [{ versionId: version.id, environment: 'x'.repeat(33) }, 400, 'invalid_request'],
      [{ versionId: version.id }, 400, 'invalid_request'],
      [{ versionId: version.id, environment: 'production', extra: 1 }, 400, 'invalid_request'],
      [{ versionId: 'nope', environment: 'production' }, 400, 'invalid_request'],
      [{ versionId: randomUUID(), environment: 'production' }, 404, 'not_found'],
      [{ versionId: version.id, environment: 'production', buildId: randomUUID() }, 404, 'not_found'],
      [{ versionId: version.id, environment: 'production', variant: 'optimized' }, 409, 'no_artifact'],
    ];
    for (const [body, status, code] of cases) {
      const answer = await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: body });
      assert.equal(answer.status, status, `${JSON.stringify(body)} → ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error.code, code, JSON.stringify(answer.body));
    }
    assert.match((await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: version.id, environment: 'prodution' } })).body.error.message, /staging, production, canary, eu-west/);
    const otherApp = await h.createApp();
    assert.equal((await h.api('POST', `/v1/applications/${otherApp.id}/deployments`, { json: { versionId: version.id, environment: 'production' } })).status, 404, "another application's version");
    assert.equal((await h.api('POST', `/v1/applications/${randomUUID()}/deployments`, { json: { versionId: version.id, environment: 'production' } })).status, 404);
    const canary = await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: version.id, environment: 'canary' } });
    assert.equal(canary.status, 201, 'an operator-defined environment');
  });

  it('records the exact artifact, is idempotent, and keeps history newest first with the active one per environment', async () => {
    const app = await h.createApp();
    const v1Module = filterModule('v1');
    const v1 = await h.succeededVersion(app.id, '1.0.0', v1Module);
    const first = await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: v1.version.id, environment: 'production' } });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const deployment = first.body.deployment;
    assert.equal(first.body.changed, true);
    assert.equal(first.body.previous, null);
    assert.equal(deployment.buildId, v1.build.id);
    assert.equal(deployment.variant, 'original');
    assert.deepEqual(deployment.artifact, { sha256: sha256(v1Module), size: v1Module.length });
    assert.equal(deployment.kind, 'proxy-wasm');
    assert.deepEqual(deployment.phases, ['request_headers']);
    assert.equal(deployment.config, '{"v":"1.0.0"}');
    assert.equal(deployment.active, true);

    const again = await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: v1.version.id, environment: 'production' } });
    assert.equal(again.status, 200, 'promoting what is active records nothing');
    assert.equal(again.body.changed, false);
    assert.equal(again.body.deployment.id, deployment.id);

    // Later edits of the version do not leak into what is deployed...
    await h.api('PATCH', `/v1/versions/${v1.version.id}`, { json: { config: '{"v":"edited"}' } });
    const history1 = await h.api('GET', `/v1/applications/${app.id}/deployments`);
    assert.equal(history1.body.active.production.config, '{"v":"1.0.0"}');
    // ...until the version is promoted again, which records the new configuration.
    const repromoted = await h.api('POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: v1.version.id, environment: 'production' } });
    assert.equal(repromoted.status, 201);
    assert.equal(repromoted.body.deployment.config, '{"v":"edited"}');
    assert.equal(repromoted.body.previous.id, deployment.id);

    const v2Module = filterModule('v2');
    const v2 = await h.succeededVersion(app.id, '2.0.0', v2Module);
    await h.promote(app.id, v2.version.id, 'staging');
    const promoted = await h.promote(app.id, v2.version.id, 'production');
    assert.equal(promoted.previous.version, '1.0.0');

    const history = await h.api('GET', `/v1/applications/${app.id}/deployments`);
    assert.equal(history.status, 200);
    const items = history.body.items as Json[];
    assert.deepEqual(
      items.map((item) => [item.number, item.environment, item.version, item.active]),
      [
        [4, 'production', '2.0.0', true],
        [3, 'staging', '2.0.0', true],
        [2, 'production', '1.0.0', false],
        [1, 'production', '1.0.0', false],
      ],
    );
    assert.deepEqual(Object.keys(history.body.active).sort(), ['production', 'staging']);
    assert.equal(history.body.active.production.artifact.sha256, sha256(v2Module));

    const onlyStaging = await h.api('GET', `/v1/applications/${app.id}/deployments?environment=staging`);
    assert.deepEqual(onlyStaging.body.items.map((item: Json) => item.number), [3]);
    const page1 = await h.api('GET', `/v1/applications/${app.id}/deployments?limit=3`);
    assert.equal(page1.body.items.length, 3);
    const page2 = await h.api('GET', `/v1/applications/${app.id}/deployments?limit=3&cursor=${page1.body.nextCursor}`);
    assert.deepEqual(page2.body.items.map((item: Json) => item.number), [1]);
    assert.equal(page2.body.nextCursor, undefined);
    assert.equal((await h.api('GET', `/v1/applications/${app.id}/deployments?cursor=garbage`)).status, 400);
    assert.equal((await h.api('GET', `/v1/applications/${app.id}/deployments?environment=NOPE`)).status, 400);
  });

  it('rolls back by promoting the earlier deployment’s exact artifact', async () => {
    const app = await h.createApp();
    const v1Module = filterModule('rb1');
    const v1 = await h.succeededVersion(app.id, '1.0.0', v1Module);
    await h.promote(app.id, v1.version.id, 'production');
    // A rebuild of 1.0.0 with other bytes must not change what a rollback restores.
    const rebuild = await h.api('POST', `/v1/versions/${v1.version.id}/builds`);
    assert.equal(rebuild.status, 202);
    await h.finishNextJob(filterModule('rb1-rebuilt'));
    const v2 = await h.succeededVersion(app.id, '2.0.0', filterModule('rb2'));
    await h.promote(app.id, v2.version.id, 'production');

    const history = (await h.api('GET', `/v1/applications/${app.id}/deployments?environment=production`)).body;
    const target = rollbackTarget(history.items as Deployment[], history.active.production as Deployment);
    assert.ok(target);
    assert.equal(target.version, '1.0.0');
    assert.equal(target.buildId, v1.build.id, 'the first build, not the rebuild');
    const rolledBack = await h.api('POST', `/v1/applications/${app.id}/deployments`, {
      json: { versionId: target.versionId, environment: 'production', buildId: target.buildId, variant: target.variant },
    });
    assert.equal(rolledBack.status, 201, JSON.stringify(rolledBack.body));
    assert.equal(rolledBack.body.deployment.artifact.sha256, sha256(v1Module));
    assert.equal(rolledBack.body.previous.version, '2.0.0');

    const after = (await h.api('GET', `/v1/applications/${app.id}/deployments?environment=production`)).body;
    const again = rollbackTarget(after.items as Deployment[], after.active.production as Deployment);
    assert.equal(again?.version, '2.0.0', 'rolling back twice returns where it started (like cd -)');
    assert.equal(rollbackTarget(after.items as Deployment[], after.active.production as Deployment, '1.0.0')?.version, '1.0.0');
    assert.equal(rollbackTarget([], undefined), undefined);
  });

  it('serves the manifest with an ETag, 304 when unchanged, and the listed artifacts', async () => {
    const edge = await h.edgeToken();
    const app = await h.createApp('manifest-app');
    const module = filterModule('m1');
    const v1 = await h.succeededVersion(app.id, '1.0.0', module, { config: '{"greeting":"hi"}' });
    const manifestOf = (environment: string, headers: Record<string, string> = {}) => h.as(edge, 'GET', `/v1/edge/manifest?environment=${environment}`, { headers });
    const before = await manifestOf('production');
    assert.equal(before.status, 200);
    assert.equal(before.body.applications.some((entry: Json) => entry.applicationId === app.id), false);

    await h.promote(app.id, v1.version.id, 'production');
    const manifest = await manifestOf('production');
    assert.equal(manifest.status, 200);
    const etag = manifest.headers.get('etag');
    assert.match(etag ?? '', /^"[0-9a-f]{64}"$/);
    assert.equal(etag, `"${sha256(manifest.raw)}"`, 'the ETag is the hash of the body as sent');
    const entry = manifest.body.applications.find((item: Json) => item.applicationId === app.id);
    assert.deepEqual(
      { ...entry, deploymentId: undefined, deployedAt: undefined, ownerId: undefined },
      {
        applicationId: app.id,
        application: 'manifest-app',
        owner: 'local',
        ownerId: undefined,
        deploymentId: undefined,
        versionId: v1.version.id,
        version: '1.0.0',
        buildId: v1.build.id,
        variant: 'original',
        sha256: sha256(module),
        size: module.length,
        kind: 'proxy-wasm',
        phases: ['request_headers'],
        config: '{"greeting":"hi"}',
        deployedAt: undefined,
        url: `/v1/edge/artifacts/${sha256(module)}`,
      },
    );
    const unchanged = await manifestOf('production', { 'if-none-match': etag ?? '' });
    assert.equal(unchanged.status, 304);
    assert.equal(unchanged.raw.length, 0);
    assert.equal(unchanged.headers.get('content-length'), null, 'a 304 announces no body (clients would wait for it)');
    assert.equal(unchanged.headers.get('etag'), etag);
    assert.equal((await manifestOf('production', { 'if-none-match': `"other", W/${etag}` })).status, 304);
    assert.equal((await manifestOf('production', { 'if-none-match': '"stale"' })).status, 200);
    assert.equal((await manifestOf('staging', { 'if-none-match': etag ?? '' })).status, 200, 'another environment, another ETag');
    assert.equal((await manifestOf('nowhere')).status, 400);
    assert.equal((await h.as(edge, 'GET', '/v1/edge/manifest')).status, 400, 'the environment is required');

    const download = await h.as(edge, 'GET', entry.url);
    assert.equal(download.status, 200);
    assert.deepEqual(download.raw, module);
    assert.equal(download.headers.get('x-kiln-sha256'), sha256(module));
    assert.equal(download.headers.get('content-type'), 'application/wasm');
    assert.equal((await h.as(edge, 'GET', entry.url, { headers: { 'if-none-match': `"${sha256(module)}"` } })).status, 304);

    // An artifact that is not active anywhere cannot be fetched, even with the right hash.
    const v2Module = filterModule('m2');
    const v2 = await h.succeededVersion(app.id, '2.0.0', v2Module);
    assert.equal((await h.as(edge, 'GET', `/v1/edge/artifacts/${sha256(v2Module)}`)).status, 404);
    assert.equal((await h.as(edge, 'GET', '/v1/edge/artifacts/not-a-hash')).status, 400);
    await h.promote(app.id, v2.version.id, 'production');
    const changed = await manifestOf('production', { 'if-none-match': etag ?? '' });
    assert.equal(changed.status, 200, 'a promotion changes the ETag');
    assert.notEqual(changed.headers.get('etag'), etag);
    assert.equal((await h.as(edge, 'GET', `/v1/edge/artifacts/${sha256(v2Module)}`)).status, 200);
    assert.equal((await h.as(edge, 'GET', `/v1/edge/artifacts/${sha256(module)}`)).status, 404, 'replaced: no longer in any manifest');
  });

  it('keeps edge tokens read-only and away from sources and owner routes', async () => {
    const edge = await h.edgeToken();
    const app = await h.createApp();
    const { version, build } = await h.succeededVersion(app.id, '1.0.0', filterModule('ro'));
    await h.promote(app.id, version.id, 'production');
    const forbidden: Array<[string, string, Parameters<Harness['api']>[2]?]> = [
      ['GET', '/v1/applications'],
      ['POST', '/v1/applications', { json: { name: 'edge-made' } }],
      ['GET', `/v1/applications/${app.id}`],
      ['DELETE', `/v1/applications/${app.id}`],
      ['GET', `/v1/applications/${app.id}/versions`],
      ['POST', `/v1/applications/${app.id}/versions`, { body: versionForm({ version: '9.0.0' }, await tinyCProject()) }],
      ['GET', `/v1/versions/${version.id}`],
      ['PATCH', `/v1/versions/${version.id}`, { json: { notes: 'x' } }],
      ['DELETE', `/v1/versions/${version.id}?force=true`],
      ['GET', `/v1/versions/${version.id}/source`],
      ['GET', `/v1/versions/${version.id}/artifact`],
      ['POST', `/v1/versions/${version.id}/builds`],
      ['GET', `/v1/builds/${build.id}`],
      ['GET', `/v1/builds/${build.id}/logs`],
      ['POST', `/v1/builds/${build.id}/cancel`],
      ['GET', `/v1/applications/${app.id}/deployments`],
      ['POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: version.id, environment: 'staging' } }],
      ['POST', '/v1/tokens', { json: { name: 'more' } }],
      ['POST', '/v1/edge-tokens', { json: { name: 'more' } }],
      ['GET', '/v1/edge-tokens'],
      ['POST', '/v1/owners', { json: { name: 'mallory' } }],
      ['POST', '/internal/v1/jobs/claim', { json: { workerId: 'edge' } }],
    ];
    for (const [method, route, options] of forbidden) {
      const answer = await h.as(edge, method, route, options);
      assert.equal(answer.status, 403, `${method} ${route} → ${answer.status}`);
    }
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const answer = await h.as(edge, method, '/v1/edge/manifest?environment=production', { json: {} });
      assert.equal(answer.status, 404, `${method} on the manifest: no such route`);
    }
    assert.equal((await h.as(edge, 'GET', `/v1/edge/artifacts/${version.source.sha256}`)).status, 404, 'a source hash is never served');
    assert.equal((await h.api('GET', `/v1/versions/${version.id}`)).status, 200, 'nothing was deleted');
    assert.equal((await h.api('GET', '/v1/edge/manifest?environment=production')).status, 403, 'owner tokens do not read manifests');
    assert.equal((await h.as(h.t.adminToken, 'GET', '/v1/edge/manifest?environment=production')).status, 403);
    assert.equal((await h.as(h.t.workerToken, 'GET', '/v1/edge/manifest?environment=production')).status, 403);
  });

  it('scopes edge tokens to all owners or a chosen set, and revokes them', async () => {
    const carol = await h.newOwner(`carol-${randomUUID().slice(0, 6)}`);
    const carolApp = await h.createApp('carol-filter', carol.token);
    const carolModule = filterModule('carol');
    const carolVersion = await h.succeededVersion(carolApp.id, '1.0.0', carolModule, { token: carol.token });
    await h.promote(carolApp.id, carolVersion.version.id, 'production', carol.token);
    const localApp = await h.createApp();
    const localModule = filterModule('local-scope');
    const localVersion = await h.succeededVersion(localApp.id, '1.0.0', localModule);
    await h.promote(localApp.id, localVersion.version.id, 'production');

    const everyone = await h.edgeToken();
    const carolOnly = await h.edgeToken([carol.id]);
    const appsIn = async (token: string) => ((await h.as(token, 'GET', '/v1/edge/manifest?environment=production')).body.applications as Json[]).map((entry) => entry.applicationId);
    assert.ok((await appsIn(everyone)).includes(carolApp.id));
    assert.ok((await appsIn(everyone)).includes(localApp.id));
    assert.deepEqual(await appsIn(carolOnly), [carolApp.id]);
    assert.equal((await h.as(carolOnly, 'GET', `/v1/edge/artifacts/${sha256(carolModule)}`)).status, 200);
    assert.equal((await h.as(carolOnly, 'GET', `/v1/edge/artifacts/${sha256(localModule)}`)).status, 404, "another owner's artifact");

    assert.equal((await h.as(h.t.adminToken, 'POST', '/v1/edge-tokens', { json: { name: 'x', owners: [randomUUID()] } })).status, 400);
    assert.equal((await h.as(h.t.adminToken, 'POST', '/v1/edge-tokens', { json: { name: 'x', owners: [] } })).status, 400);
    assert.equal((await h.api('POST', '/v1/edge-tokens', { json: { name: 'x' } })).status, 403, 'only the admin makes edge tokens');

    const listed = await h.as(h.t.adminToken, 'GET', '/v1/edge-tokens');
    const carolInfo = (listed.body.items as Json[]).find((info) => info.allOwners === false && info.owners.includes(carol.id));
    assert.ok(carolInfo);
    assert.equal(JSON.stringify(listed.body).includes(carolOnly), false, 'token values are never listed');
    assert.equal((await h.as(h.t.adminToken, 'DELETE', `/v1/edge-tokens/${carolInfo.id}`)).status, 204);
    assert.equal((await h.as(carolOnly, 'GET', '/v1/edge/manifest?environment=production')).status, 401);
    assert.equal((await h.as(h.t.adminToken, 'DELETE', `/v1/edge-tokens/${carolInfo.id}`)).status, 404);
  });

  it('refuses to delete a deployed version without force, and withdraws it with force', async () => {
    const edge = await h.edgeToken();
    const app = await h.createApp();
    const v1 = await h.succeededVersion(app.id, '1.0.0', filterModule('del1'));
    const v2 = await h.succeededVersion(app.id, '2.0.0', filterModule('del2'));
    await h.promote(app.id, v1.version.id, 'production');
    await h.promote(app.id, v2.version.id, 'production');
    await h.promote(app.id, v2.version.id, 'staging');

    const refused = await h.api('DELETE', `/v1/versions/${v2.version.id}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'version_deployed');
    assert.match(refused.body.error.message, /production, staging/);
    assert.equal((await h.api('DELETE', `/v1/versions/${v2.version.id}?force=false`)).status, 409);
    assert.equal((await h.api('GET', `/v1/versions/${v2.version.id}/artifact`)).status, 200, 'nothing was deleted');

    // 1.0.0 is only in the history: it can go without force, and the history keeps its record.
    assert.equal((await h.api('DELETE', `/v1/versions/${v1.version.id}`)).status, 204);
    const history = (await h.api('GET', `/v1/applications/${app.id}/deployments`)).body;
    const oldRecord = (history.items as Json[]).find((item) => item.version === '1.0.0');
    assert.equal(oldRecord?.versionId, null);

    assert.equal((await h.api('DELETE', `/v1/versions/${v2.version.id}?force=true`)).status, 204);
    assert.equal((await h.api('GET', `/v1/versions/${v2.version.id}`)).status, 404);
    const manifest = await h.as(edge, 'GET', '/v1/edge/manifest?environment=production');
    assert.equal(manifest.body.applications.some((entry: Json) => entry.applicationId === app.id), false, 'withdrawn from the manifest');
    const after = (await h.api('GET', `/v1/applications/${app.id}/deployments`)).body;
    assert.deepEqual(after.active, {});
    const withdrawn = (after.items as Json[]).filter((item) => item.version === '2.0.0');
    assert.equal(withdrawn.length, 2);
    for (const item of withdrawn) {
      assert.equal(item.active, false);
      assert.equal(item.versionId, null);
      assert.ok(item.withdrawnAt);
    }
    assert.equal((await h.api('DELETE', `/v1/versions/${randomUUID()}?force=true`)).status, 404);
    assert.equal((await h.api('DELETE', `/v1/versions/${v2.version.id}?force=maybe`)).status, 400);
  });

  it('refuses to delete an application that is live without force', async () => {
    const edge = await h.edgeToken();
    const app = await h.createApp();
    const v1 = await h.succeededVersion(app.id, '1.0.0', filterModule('app-del'));
    await h.promote(app.id, v1.version.id, 'production');
    const refused = await h.api('DELETE', `/v1/applications/${app.id}`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.error.code, 'application_deployed');
    assert.equal((await h.api('GET', `/v1/applications/${app.id}`)).status, 200, 'nothing was deleted');
    assert.equal((await h.api('DELETE', `/v1/applications/${app.id}?force=true`)).status, 204);
    const manifest = await h.as(edge, 'GET', '/v1/edge/manifest?environment=production');
    assert.equal(manifest.body.applications.some((entry: Json) => entry.applicationId === app.id), false, 'withdrawn from the manifest');
  });

  it("keeps every owner's deployments invisible to every other owner", async () => {
    const dave = await h.newOwner(`dave-${randomUUID().slice(0, 6)}`);
    const app = await h.createApp();
    const { version } = await h.succeededVersion(app.id, '1.0.0', filterModule('iso'));
    await h.promote(app.id, version.id, 'production');
    const daveApp = await h.createApp('dave-app', dave.token);
    const attempts: Array<[string, string, Parameters<Harness['api']>[2]?]> = [
      ['GET', `/v1/applications/${app.id}/deployments`],
      ['POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: version.id, environment: 'staging' } }],
      ['POST', `/v1/applications/${daveApp.id}/deployments`, { json: { versionId: version.id, environment: 'production' } }],
      ['DELETE', `/v1/versions/${version.id}?force=true`],
    ];
    for (const [method, route, options] of attempts) {
      const answer = await h.as(dave.token, method, route, options);
      assert.equal(answer.status, 404, `${method} ${route} → ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    const history = (await h.api('GET', `/v1/applications/${app.id}/deployments`)).body;
    assert.equal(history.items.length, 1, "dave's attempts recorded nothing");
    assert.equal((await h.as(dave.token, 'GET', `/v1/applications/${daveApp.id}/deployments`)).body.items.length, 0);
  });

  it('documents the new routes in OpenAPI', async () => {
    const openapi = await h.api('GET', '/openapi.json');
    for (const route of ['/v1/applications/{applicationId}/deployments', '/v1/edge/manifest', '/v1/edge/artifacts/{sha256}', '/v1/edge-tokens']) assert.ok(openapi.body.paths[route], route);
  });
});
