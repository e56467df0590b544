import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { databaseBackends, s3Skip } from '../support/backends.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const flavours: Array<{ flavour: StorageFlavour; skip: string | false }> = [
  { flavour: 'embedded', skip: false },
  { flavour: 'servers', skip: s3Skip() || databaseBackends().find((backend) => backend.name === 'PostgreSQL')?.skip || false },
];

async function sourceCount(t: TestKiln): Promise<number> {
  let count = 0;
  for await (const info of t.kiln.services.objects.list('')) if (info.key.endsWith('/source.tar.gz')) count++;
  return count;
}

/**
 * An upload skips the application lookup for an application it found
 * recently (decision 0042). A deleted application must still be refused with
 * 404, whether this process deleted it or another one did behind its back.
 */
for (const { flavour, skip } of flavours) {
  describe(`uploads to an application found recently (${flavour})`, { skip }, () => {
    it('refuses an upload to an application deleted through this process', async () => {
      const t = await startTestKiln({ flavour });
      try {
        const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'known' } });
        const archive = await tinyCProject();
        const first = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, archive) });
        assert.equal(first.status, 202, JSON.stringify(first.body));
        const deleted = await call(t.url, 'DELETE', `/v1/applications/${app.body.id}`, { token: t.ownerToken });
        assert.equal(deleted.status, 204);
        const again = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.1' }, archive) });
        assert.equal(again.status, 404, JSON.stringify(again.body));
        assert.equal(again.body.error.code, 'not_found');
      } finally {
        await t.close();
      }
    });

    it('refuses an upload to an application deleted behind its back, and keeps no object of it', async () => {
      const t = await startTestKiln({ flavour });
      try {
        const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'gone' } });
        const archive = await tinyCProject();
        const first = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, archive) });
        assert.equal(first.status, 202, JSON.stringify(first.body));
        // What another API process's delete leaves this one: the rows are gone, its memory still knows the application.
        await t.kiln.services.database.db.execute(sql`delete from applications where id = ${String(app.body.id)}`);
        const sources = await sourceCount(t);
        const again = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.1' }, archive) });
        assert.equal(again.status, 404, JSON.stringify(again.body));
        assert.equal(again.body.error.code, 'not_found');
        assert.equal(await sourceCount(t), sources, 'the refused upload left no stored source');
        // Forgotten: the next upload is refused by the lookup again.
        const third = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.2' }, archive) });
        assert.equal(third.status, 404, JSON.stringify(third.body));
      } finally {
        await t.close();
      }
    });
  });
}
