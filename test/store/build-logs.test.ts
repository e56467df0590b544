import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { builds as buildsTable } from '../../src/store/metadata/schema.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

for (const flavour of ['embedded', 'servers'] as StorageFlavour[]) {
  describe(`build logs read while they are finalized (${flavour === 'embedded' ? 'PGlite + files' : 'PostgreSQL + S3'})`, { timeout: 120_000 }, () => {
    let t: TestKiln;
    let buildId: string;

    before(async () => {
      t = await startTestKiln({ flavour });
      const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'log-race' } });
      const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0', kind: 'wasi-command' }, await tinyCProject()) });
      buildId = upload.body.build.id;
      const claimed = await call<Json>(t.url, 'POST', '/internal/v1/jobs/claim', { token: t.workerToken, json: { workerId: 'log-race', waitMs: 5_000 } });
      const job = claimed.body.job;
      const appended = await call(t.url, 'POST', `/internal/v1/jobs/${job.id}/logs`, { token: t.workerToken, body: 'compiling main.c\n', headers: { 'x-kiln-lease': job.leaseToken, 'content-type': 'application/octet-stream' } });
      assert.equal(appended.status, 204);
    });
    after(() => t.close());

    it('a reader holding the build row from before finalize() still gets the whole log, not an empty one', async () => {
      const { logs, database } = t.kiln.services;
      const [stale] = await database.db.select().from(buildsTable).where(eq(buildsTable.id, buildId));
      assert.ok(stale);
      assert.equal(stale.logKey, null, 'the log is still in chunks when the reader looks at the build');
      await logs.finalize(buildId);
      // The chunks are gone now; the reader's row still says there is no object.
      assert.equal((await logs.chunksAfter(buildId, 0)).length, 0);
      const whole = (await logs.read(stale)).toString('utf8');
      assert.match(whole, /^\[kiln\] attempt 1 claimed by worker log-race\ncompiling main\.c\n$/);
    });
  });
}
