import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { eq } from 'drizzle-orm';
import { httpStatusOf } from '../../src/api/http-errors.ts';
import { UserError } from '../../src/errors.ts';
import { claimOnce } from '../../src/queue/claim.ts';
import { insertVersionWithQueuedBuild } from '../../src/queue/enqueue.ts';
import { JOBS_CHANNEL } from '../../src/queue/jobs.ts';
import type { Database } from '../../src/store/metadata/database.ts';
import { SqlBuildRepository } from '../../src/store/metadata/repositories/builds.ts';
import { SqlVersionRepository } from '../../src/store/metadata/repositories/versions.ts';
import { builds, jobs } from '../../src/store/metadata/schema.ts';
import { databaseBackends } from '../support/backends.ts';
import { newApplication, queuedVersionInput } from '../support/rows.ts';

for (const backend of databaseBackends()) {
  describe(`a new version with its queued build in one statement, on ${backend.name}`, { skip: backend.skip }, () => {
    let database: Database;

    before(async () => {
      database = await backend.open();
    });
    after(() => database.close());



    it('creates the version, build 1 (queued) and its job, returned as the repositories read them', async () => {
      const ids = await newApplication(database.db);
      const input = queuedVersionInput(ids, '1.0.0');
      const created = await insertVersionWithQueuedBuild(database.db, input, 3);
      assert.deepEqual(created.version, await new SqlVersionRepository(database.db).get(ids.ownerId, input.id));
      assert.deepEqual(created.build, await new SqlBuildRepository(database.db).get(ids.ownerId, created.build.id));
      assert.ok(created.version.createdAt instanceof Date);
      assert.equal(created.build.number, 1);
      assert.equal(created.build.state, 'queued');
      assert.equal(created.build.versionId, input.id);
      const [job] = await database.db.select().from(jobs).where(eq(jobs.buildId, created.build.id));
      assert.equal(job?.state, 'queued');
      assert.equal(job?.maxAttempts, 3);
      const claimed = await claimOnce(database, 'worker-1', { leaseMs: 30_000, maxAttempts: 3 });
      assert.equal(claimed?.build.id, created.build.id, 'a worker can claim the new job');
    });

    it('wakes waiting workers', { timeout: 60_000 }, async () => {
      const ids = await newApplication(database.db);
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const unlisten = await database.notifier.listen(JOBS_CHANNEL, () => wake());
      try {
        await insertVersionWithQueuedBuild(database.db, queuedVersionInput(ids, '1.0.0'), 2);
        await woken;
      } finally {
        await unlisten();
      }
    });

    it('refuses a duplicate version with 409 version_exists and leaves no build or job behind', async () => {
      const ids = await newApplication(database.db);
      await insertVersionWithQueuedBuild(database.db, queuedVersionInput(ids, '2.0.0'), 2);
      const buildsBefore = (await database.db.select().from(builds).where(eq(builds.applicationId, ids.applicationId))).length;
      await assert.rejects(insertVersionWithQueuedBuild(database.db, queuedVersionInput(ids, '2.0.0'), 2), (error: unknown) => {
        assert.ok(error instanceof UserError);
        assert.equal(error.code, 'version_exists');
        assert.equal(httpStatusOf(error), 409);
        return true;
      });
      const buildsAfter = await database.db.select().from(builds).where(eq(builds.applicationId, ids.applicationId));
      assert.equal(buildsAfter.length, buildsBefore);
      const orphanJobs = await database.db.select().from(jobs).innerJoin(builds, eq(jobs.buildId, builds.id)).where(eq(builds.applicationId, ids.applicationId));
      assert.equal(orphanJobs.length, buildsBefore);
    });

    it('refuses a version of an application that does not exist, creating nothing', async () => {
      const ids = await newApplication(database.db);
      const ghost = { ownerId: ids.ownerId, applicationId: randomUUID() };
      await assert.rejects(insertVersionWithQueuedBuild(database.db, queuedVersionInput(ghost, '1.0.0'), 2));
      assert.equal((await database.db.select().from(builds).where(eq(builds.applicationId, ghost.applicationId))).length, 0);
    });
  });
}
