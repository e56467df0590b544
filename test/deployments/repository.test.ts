import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { deleteVersionUnlessDeployed } from '../../src/use-cases/delete-version.ts';
import { promoteVersion } from '../../src/use-cases/promote.ts';
import { UserError } from '../../src/errors.ts';
import type { Database } from '../../src/store/metadata/database.ts';
import { SqlApplicationRepository } from '../../src/store/metadata/repositories/applications.ts';
import { SqlBuildRepository } from '../../src/store/metadata/repositories/builds.ts';
import { SqlDeploymentRepository, SqlEdgeTokenRepository } from '../../src/store/metadata/repositories/deployments.ts';
import { SqlOwnerRepository } from '../../src/store/metadata/repositories/owners.ts';
import { SqlTokenRepository } from '../../src/store/metadata/repositories/tokens.ts';
import { SqlVersionRepository } from '../../src/store/metadata/repositories/versions.ts';
import { builds } from '../../src/store/metadata/schema.ts';
import { databaseBackends } from '../support/backends.ts';

const isCode = (code: string) => (error: unknown) => error instanceof UserError && error.code === code;

for (const backend of databaseBackends()) {
  describe(`deployment repository on ${backend.name}`, { skip: backend.skip }, () => {
    let database: Database;
    let deployments: SqlDeploymentRepository;
    let edgeTokens: SqlEdgeTokenRepository;

    before(async () => {
      database = await backend.open();
      deployments = new SqlDeploymentRepository(database.db);
      edgeTokens = new SqlEdgeTokenRepository(database.db);
    });
    after(() => database.close());

    /** An owner with an application; `version()` adds a version whose build succeeded with a given sha256. */
    async function world() {
      const owner = await new SqlOwnerRepository(database.db).create(`owner-${randomUUID().slice(0, 8)}`);
      const app = await new SqlApplicationRepository(database.db).create(owner.id, { name: 'filter', notes: '' });
      const version = async (semver: string, state: 'succeeded' | 'failed' = 'succeeded') => {
        const created = await new SqlVersionRepository(database.db).create({
          id: randomUUID(),
          ownerId: owner.id,
          applicationId: app.id,
          version: semver,
          kind: 'proxy-wasm',
          config: `{"v":"${semver}"}`,
          optimize: { strip: true, wasmOpt: 'O2', wizer: true, memoryCapPages: null },
          sourceKey: `k/${semver}`,
          sourceSha256: 'a'.repeat(64),
          sourceSize: 1,
          sourceFormat: 'tar.gz',
        });
        const build = await new SqlBuildRepository(database.db).createQueued({ ownerId: owner.id, applicationId: app.id, versionId: created.id });
        const sha256 = randomBytes(32).toString('hex');
        await database.db
          .update(builds)
          .set({ state, artifacts: state === 'succeeded' ? { original: { key: `artifacts/${created.id}`, sha256, size: 100 } } : {} })
          .where(eq(builds.id, build.id));
        return { version: created, buildId: build.id, sha256 };
      };
      return { owner, app, version };
    }

    it('promotes, numbers, replaces the active deployment and keeps the history', async () => {
      const { owner, app, version } = await world();
      const v1 = await version('1.0.0');
      const v2 = await version('2.0.0');
      const first = await promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: v1.version.id, environment: 'production' });
      assert.equal(first.changed, true);
      assert.equal(first.deployment.number, 1);
      assert.equal(first.deployment.sha256, v1.sha256);
      assert.equal(first.deployment.buildId, v1.buildId);
      assert.equal(first.deployment.artifactKey, `artifacts/${v1.version.id}`);
      assert.equal((await promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: v1.version.id, environment: 'production' })).changed, false);
      const second = await promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: v2.version.id, environment: 'production' });
      assert.equal(second.deployment.number, 2);
      assert.equal(second.previous?.id, first.deployment.id);
      await promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: v1.version.id, environment: 'staging' });

      assert.equal((await deployments.activeIn(owner.id, app.id, 'production'))?.id, second.deployment.id);
      assert.deepEqual((await deployments.activeForApplication(owner.id, app.id)).map((d) => [d.environment, d.version]), [['production', '2.0.0'], ['staging', '1.0.0']]);
      assert.deepEqual((await deployments.activeForVersion(owner.id, v1.version.id)).map((d) => d.environment), ['staging']);
      const page = await deployments.history(owner.id, app.id, {}, { limit: 2 });
      assert.deepEqual(page.items.map((d) => d.number), [3, 2]);
      const rest = await deployments.history(owner.id, app.id, {}, { limit: 2, cursor: page.nextCursor });
      assert.deepEqual(rest.items.map((d) => d.number), [1]);
      assert.deepEqual((await deployments.history(owner.id, app.id, { environment: 'staging' }, { limit: 10 })).items.map((d) => d.number), [3]);

      const stranger = await new SqlOwnerRepository(database.db).create(`stranger-${randomUUID().slice(0, 8)}`);
      assert.equal((await deployments.history(stranger.id, app.id, {}, { limit: 10 })).items.length, 0);
      assert.equal(await deployments.activeIn(stranger.id, app.id, 'production'), undefined);
      await assert.rejects(promoteVersion(database, { ownerId: stranger.id, applicationId: app.id, versionId: v1.version.id, environment: 'production' }), isCode('not_found'));
      const failed = await version('3.0.0', 'failed');
      await assert.rejects(promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: failed.version.id, environment: 'production' }), isCode('not_succeeded'));
    });

    it('orders concurrent promotions of one application: unique numbers, the last one active', async () => {
      const { owner, app, version } = await world();
      const candidates = await Promise.all(['1.0.0', '1.1.0', '1.2.0', '1.3.0', '1.4.0', '1.5.0'].map((semver) => version(semver)));
      const results = await Promise.all(candidates.map((c) => promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: c.version.id, environment: 'production' })));
      const numbers = results.map((r) => r.deployment.number).sort((a, b) => a - b);
      assert.deepEqual(numbers, [1, 2, 3, 4, 5, 6]);
      const newest = results.reduce((a, b) => (a.deployment.number > b.deployment.number ? a : b));
      assert.equal((await deployments.activeIn(owner.id, app.id, 'production'))?.id, newest.deployment.id);
    });

    it('refuses to delete a live version unless forced, then withdraws it', async () => {
      const { owner, app, version } = await world();
      const v1 = await version('1.0.0');
      const v2 = await version('2.0.0');
      await promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: v1.version.id, environment: 'production' });
      await promoteVersion(database, { ownerId: owner.id, applicationId: app.id, versionId: v2.version.id, environment: 'production' });
      await assert.rejects(deleteVersionUnlessDeployed(database, v2.version, false), isCode('version_deployed'));
      assert.equal(await deleteVersionUnlessDeployed(database, v1.version, false), true, 'history alone does not block deletion');
      assert.equal(await deleteVersionUnlessDeployed(database, v2.version, true), true);
      assert.equal(await deployments.activeIn(owner.id, app.id, 'production'), undefined);
      const history = await deployments.history(owner.id, app.id, {}, { limit: 10 });
      assert.deepEqual(history.items.map((d) => [d.version, d.versionId, d.withdrawnAt !== null]), [['2.0.0', null, true], ['1.0.0', null, false]]);
      assert.equal(await deleteVersionUnlessDeployed(database, v2.version, true), false, 'already gone');
    });

    it('scopes the manifest and artifacts to an edge token’s owners, denying by default', async () => {
      const a = await world();
      const b = await world();
      const va = await a.version('1.0.0');
      const vb = await b.version('1.0.0');
      await promoteVersion(database, { ownerId: a.owner.id, applicationId: a.app.id, versionId: va.version.id, environment: 'production' });
      await promoteVersion(database, { ownerId: b.owner.id, applicationId: b.app.id, versionId: vb.version.id, environment: 'production' });
      const ids = async (scope: { allOwners: boolean; ownerIds: string[] }) => (await deployments.manifest('production', scope)).map((row) => row.deployment.applicationId);
      const everyone = await ids({ allOwners: true, ownerIds: [] });
      assert.ok(everyone.includes(a.app.id) && everyone.includes(b.app.id));
      assert.deepEqual(await ids({ allOwners: false, ownerIds: [a.owner.id] }), [a.app.id]);
      assert.deepEqual(await ids({ allOwners: false, ownerIds: [] }), []);
      assert.equal((await deployments.manifest('staging', { allOwners: true, ownerIds: [] })).some((row) => row.deployment.applicationId === a.app.id), false);
      const [row] = await deployments.manifest('production', { allOwners: false, ownerIds: [a.owner.id] });
      assert.equal(row?.applicationName, 'filter');
      assert.equal(row?.ownerName, a.owner.name);
      assert.equal((await deployments.findVisibleArtifact(vb.sha256, { allOwners: false, ownerIds: [a.owner.id] })), undefined);
      assert.equal((await deployments.findVisibleArtifact(vb.sha256, { allOwners: true, ownerIds: [] }))?.applicationId, b.app.id);

      const { record } = await new SqlTokenRepository(database.db).create({ kind: 'edge', ownerId: null, name: 'unscoped' });
      assert.deepEqual(await edgeTokens.scopeOf(record.id), { allOwners: false, ownerIds: [] }, 'no scope row: no access');
      await edgeTokens.setScope(record.id, { allOwners: false, ownerIds: [b.owner.id] });
      assert.deepEqual(await edgeTokens.scopeOf(record.id), { allOwners: false, ownerIds: [b.owner.id] });
      assert.deepEqual(await edgeTokens.unknownOwners([a.owner.id, '00000000-0000-4000-8000-000000000000']), ['00000000-0000-4000-8000-000000000000']);
      assert.ok((await edgeTokens.list()).some((token) => token.record.id === record.id));
      assert.equal(await edgeTokens.revoke(record.id), true);
      assert.equal(await edgeTokens.revoke(record.id), false);
    });
  });
}
