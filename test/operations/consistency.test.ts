import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { checkConsistency } from '../../src/operations/consistency.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

describe('the consistency check', () => {
  let t: TestKiln;
  let sourceKey: string;

  before(async () => {
    t = await startTestKiln();
    const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'checked' } });
    const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, await tinyCProject()) });
    const ownerId = (await t.kiln.services.owners.getByName('local'))?.id ?? '';
    const version = await t.kiln.services.versions.get(ownerId, upload.body.version.id);
    sourceKey = version?.sourceKey ?? '';
  });
  after(() => t.close());

  it('finds nothing wrong in a healthy store', async () => {
    const report = await checkConsistency(t.kiln.services.database, t.kiln.services.objects);
    assert.deepEqual(report.orphans, []);
    assert.deepEqual(report.missing, []);
    assert.ok(report.scanned >= 1);
  });

  it('reports orphaned and missing objects, and deletes only orphans with fix', async () => {
    const { objects, database } = t.kiln.services;
    const orphan = `owners/${randomUUID()}/versions/${randomUUID()}/source.tar.gz`;
    await objects.put(orphan, Buffer.from('left behind'));
    const saved = await objects.getBuffer(sourceKey);
    await objects.delete(sourceKey);
    const report = await checkConsistency(database, objects);
    assert.deepEqual(report.orphans, [orphan]);
    assert.deepEqual(report.missing, [sourceKey]);
    assert.deepEqual(report.deleted, []);
    const fixed = await checkConsistency(database, objects, { fix: true, graceMs: 0 });
    assert.deepEqual(fixed.deleted, [orphan]);
    assert.equal(await objects.head(orphan), undefined);
    await objects.put(sourceKey, saved.body);
    const healthy = await checkConsistency(database, objects);
    assert.deepEqual([healthy.orphans, healthy.missing], [[], []]);
  });
});
