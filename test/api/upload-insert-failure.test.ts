import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { QueuedVersionWriter } from '../../src/queue/queued-version-writer.ts';
import { versions } from '../../src/store/metadata/schema.ts';
import { databaseBackends, freshPostgresUrl } from '../support/backends.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const flavours = [
  { name: 'PGlite', skip: false as const, env: async (): Promise<Record<string, string>> => ({}) },
  { name: 'PostgreSQL', skip: databaseBackends().find((backend) => backend.name === 'PostgreSQL')?.skip ?? false, env: async (): Promise<Record<string, string>> => ({ DATABASE_URL: await freshPostgresUrl() }) },
];

/** The source keys the application's version rows point at. */
async function rowKeys(t: TestKiln, applicationId: string): Promise<string[]> {
  const rows = await t.kiln.services.database.db.select({ sourceKey: versions.sourceKey }).from(versions).where(eq(versions.applicationId, applicationId));
  return rows.map((row) => row.sourceKey);
}

async function sourceKeys(t: TestKiln): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of t.kiln.services.objects.list('')) if (info.key.endsWith('/source.tar.gz')) keys.push(info.key);
  return keys;
}

/**
 * An upload's object is written before its rows. When the rows are refused
 * (nothing written) the object is removed; when the outcome is unknown (the
 * connection lost after the commit, before the answer) the object must stay:
 * an orphan at worst, never a row pointing at nothing (decision 0046).
 */
for (const flavour of flavours) {
  describe(`an upload whose rows fail, on ${flavour.name} with filesystem objects`, { skip: flavour.skip }, () => {
    it('a refused duplicate version leaves no object behind', async () => {
      const t = await startTestKiln({ env: await flavour.env() });
      try {
        const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'dup' } });
        const archive = await tinyCProject();
        const first = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, archive) });
        assert.equal(first.status, 202);
        const again = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, archive) });
        assert.equal(again.status, 409);
        assert.equal(again.body.error.code, 'version_exists');
        assert.deepEqual(await sourceKeys(t), await rowKeys(t, String(app.body.id)), "only the first upload's object is stored");
      } finally {
        await t.close();
      }
    });

    it('keeps the object when the commit happened but its answer was lost', async () => {
      const t = await startTestKiln({ env: await flavour.env() });
      try {
        const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'lost-answer' } });
        const real = new QueuedVersionWriter(t.kiln.services.database.db);
        // The rows are committed, then the connection "drops" before the answer reaches the API.
        t.kiln.services.queuedVersions = Object.assign(Object.create(QueuedVersionWriter.prototype) as QueuedVersionWriter, {
          insert: async (...args: Parameters<QueuedVersionWriter['insert']>) => {
            await real.insert(...args);
            throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
          },
        });
        const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, await tinyCProject()) });
        assert.ok(upload.status >= 500, `a platform failure, not an acknowledgement: ${upload.status}`);
        const committed = await rowKeys(t, String(app.body.id));
        assert.equal(committed.length, 1, 'the rows were committed');
        assert.deepEqual(await sourceKeys(t), committed, 'the object the committed rows point at is still there');
      } finally {
        await t.close();
      }
    });
  });
}
