import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eq, inArray, sql } from 'drizzle-orm';
import { httpStatusOf } from '../../src/api/http-errors.ts';
import { UserError } from '../../src/errors.ts';
import { insertVersionsWithQueuedBuilds, type QueuedVersionInput } from '../../src/queue/enqueue.ts';
import { JOBS_CHANNEL } from '../../src/queue/jobs.ts';
import { batchSize, QueuedVersionWriter } from '../../src/queue/queued-version-writer.ts';
import type { Database } from '../../src/store/metadata/database.ts';
import { isDatabaseUnavailable, isForeignKeyViolation } from '../../src/store/metadata/errors.ts';
import { SqlApplicationRepository } from '../../src/store/metadata/repositories/applications.ts';
import { SqlVersionRepository } from '../../src/store/metadata/repositories/versions.ts';
import { builds, jobs, versions } from '../../src/store/metadata/schema.ts';
import { databaseBackends } from '../support/backends.ts';
import { newApplication, queuedVersionInput } from '../support/rows.ts';

type Outcome = { ok: true; versionId: string; buildId: string; createdAt: number } | { ok: false; error: unknown };

for (const backend of databaseBackends()) {
  describe(`new versions written together (group commit), on ${backend.name}`, { skip: backend.skip }, () => {
    let database: Database;

    before(async () => {
      database = await backend.open();
      // Failure injection for the tests below: a job whose max_attempts is
      // 99 makes the statement fail (not a constraint: a raised error), one
      // with 98 makes it wait, so that its connection can be cut mid-statement.
      await database.db.execute(
        sql.raw(`create function kiln_test_fail_job() returns trigger language plpgsql as $$
          begin
            if new.max_attempts = 99 then raise exception 'injected failure'; end if;
            if new.max_attempts = 98 then perform pg_sleep(30); end if;
            return new;
          end $$`),
      );
      await database.db.execute(sql.raw('create trigger kiln_test_fail_job before insert on jobs for each row execute function kiln_test_fail_job()'));
    });
    after(() => database.close());



    function settle(writer: QueuedVersionWriter, input: QueuedVersionInput, maxAttempts = 3): Promise<Outcome> {
      return writer.insert(input, maxAttempts).then(
        (created) => {
          assert.equal(created.version.id, input.id, 'each member gets its own rows');
          assert.equal(created.version.version, input.version);
          assert.equal(created.build.versionId, input.id);
          return { ok: true, versionId: created.version.id, buildId: created.build.id, createdAt: created.version.createdAt.getTime() };
        },
        (error: unknown) => ({ ok: false, error }),
      );
    }

    /** What the database holds for these version ids: versions, builds, jobs. */
    async function rowsOf(versionIds: string[]) {
      const versionRows = await database.db.select().from(versions).where(inArray(versions.id, versionIds));
      const buildRows = await database.db.select().from(builds).where(inArray(builds.versionId, versionIds));
      const jobRows = buildRows.length === 0 ? [] : await database.db.select().from(jobs).where(inArray(jobs.buildId, buildRows.map((build) => build.id)));
      return { versions: versionRows.length, builds: buildRows.length, jobs: jobRows.length };
    }

    it('writes the members that wait for a free statement together, each answered with its own rows', async () => {
      const ids = await newApplication(database.db);
      const writer = new QueuedVersionWriter(database.db, { maxInFlight: 1 });
      // The first goes alone at once; the four after it wait for it and then go as one statement.
      const inputs = ['1.0.0', '1.0.1', '1.0.2', '1.0.3', '1.0.4'].map((version) => queuedVersionInput(ids, version));
      const outcomes = await Promise.all(inputs.map((input) => settle(writer, input)));
      const created = outcomes.map((outcome) => (outcome.ok ? outcome : assert.fail(String(outcome.error))));
      // now() is the transaction's start: the members of one statement share it.
      const batched = new Set(created.slice(1).map((outcome) => outcome.createdAt));
      assert.equal(batched.size, 1, 'the four waiting members were written by one statement');
      assert.deepEqual(await rowsOf(inputs.map((input) => input.id)), { versions: 5, builds: 5, jobs: 5 });
      for (const input of inputs) assert.equal((await new SqlVersionRepository(database.db).get(ids.ownerId, input.id))?.sourceKey, input.sourceKey);
    });

    it('takes a power of two of the waiting members per statement; the rest go with the next one', async () => {
      const ids = await newApplication(database.db);
      const writer = new QueuedVersionWriter(database.db, { maxInFlight: 1 });
      // The first goes alone; of the five waiting behind it, four go as one statement, then the fifth.
      const inputs = ['1.1.0', '1.1.1', '1.1.2', '1.1.3', '1.1.4', '1.1.5'].map((version) => queuedVersionInput(ids, version));
      const outcomes = await Promise.all(inputs.map((input) => settle(writer, input)));
      const created = outcomes.map((outcome) => (outcome.ok ? outcome : assert.fail(String(outcome.error))));
      const statementOf = created.map((outcome) => outcome.createdAt);
      assert.equal(new Set(statementOf.slice(1, 5)).size, 1, 'four waiting members, one statement');
      assert.equal(new Set(statementOf).size, 3, 'the first alone, four together, the fifth in a statement of its own');
      assert.deepEqual(await rowsOf(inputs.map((input) => input.id)), { versions: 6, builds: 6, jobs: 6 });
    });

    it('a duplicate version in a batch fails only that member (409), its batch-mates are written', async () => {
      const ids = await newApplication(database.db);
      const writer = new QueuedVersionWriter(database.db, { maxInFlight: 1 });
      const first = settle(writer, queuedVersionInput(ids, '2.0.0'));
      // Waiting together: a duplicate of the first (already being written), a
      // duplicate within the batch itself, and two unrelated members.
      const batch = [queuedVersionInput(ids, '2.0.0'), queuedVersionInput(ids, '2.1.0'), queuedVersionInput(ids, '2.1.0'), queuedVersionInput(ids, '2.2.0')];
      const outcomes = await Promise.all([first, ...batch.map((input) => settle(writer, input))]);
      const [alone, duplicateOfFirst, firstOfPair, secondOfPair, other] = outcomes;
      assert.ok(alone?.ok && firstOfPair?.ok && other?.ok, 'the members without a conflict are written');
      for (const refused of [duplicateOfFirst, secondOfPair]) {
        assert.ok(refused && !refused.ok, 'the duplicate is refused');
        assert.ok(refused.error instanceof UserError);
        assert.equal(refused.error.code, 'version_exists');
        assert.equal(httpStatusOf(refused.error), 409);
      }
      assert.deepEqual(await rowsOf([batch[0], batch[2]].map((input) => input!.id)), { versions: 0, builds: 0, jobs: 0 }, 'nothing of a refused member is left');
      const byVersion = await database.db.select({ version: versions.version }).from(versions).where(eq(versions.applicationId, ids.applicationId));
      assert.deepEqual(byVersion.map((row) => row.version).sort(), ['2.0.0', '2.1.0', '2.2.0']);
      assert.deepEqual(await rowsOf(outcomes.flatMap((outcome) => (outcome.ok ? [outcome.versionId] : []))), { versions: 3, builds: 3, jobs: 3 });
    });

    it('a deleted application in a batch fails only its members, the others are written', async () => {
      const kept = await newApplication(database.db);
      const deleted = await newApplication(database.db);
      assert.equal(await new SqlApplicationRepository(database.db).delete(deleted.ownerId, deleted.applicationId), true);
      const writer = new QueuedVersionWriter(database.db, { maxInFlight: 1 });
      const first = settle(writer, queuedVersionInput(kept, '3.0.0'));
      const batch = [queuedVersionInput(kept, '3.1.0'), queuedVersionInput(deleted, '3.1.0'), queuedVersionInput(kept, '3.2.0')];
      const [alone, keptFirst, ofDeleted, keptSecond] = await Promise.all([first, ...batch.map((input) => settle(writer, input))]);
      assert.ok(alone?.ok && keptFirst?.ok && keptSecond?.ok);
      assert.ok(ofDeleted && !ofDeleted.ok);
      assert.ok(isForeignKeyViolation(ofDeleted.error), 'the upload answers this one 404');
      assert.deepEqual(await rowsOf([batch[1]!.id]), { versions: 0, builds: 0, jobs: 0 });
      assert.deepEqual(await rowsOf([batch[0]!.id, batch[2]!.id]), { versions: 2, builds: 2, jobs: 2 });
    });

    it('a database failure in the batch statement fails every member, none written, none acknowledged', async () => {
      const ids = await newApplication(database.db);
      const writer = new QueuedVersionWriter(database.db, { maxInFlight: 1 });
      const first = settle(writer, queuedVersionInput(ids, '4.0.0'));
      // Four: a batch is a power of two of the waiting members (batchSize), so all four go as one statement.
      const batch = [queuedVersionInput(ids, '4.1.0'), queuedVersionInput(ids, '4.2.0'), queuedVersionInput(ids, '4.3.0'), queuedVersionInput(ids, '4.3.1')];
      // The failure is raised by the last row's job, after the other rows of the statement were inserted.
      const outcomes = await Promise.all([first, ...batch.slice(0, 3).map((input) => settle(writer, input)), settle(writer, batch[3]!, 99)]);
      assert.ok(outcomes[0]?.ok);
      for (const outcome of outcomes.slice(1)) {
        assert.ok(!outcome.ok, 'no member of the failed statement is acknowledged');
        assert.match(String((outcome.error as Error).message) + String((outcome.error as { cause?: Error }).cause?.message ?? ''), /injected failure/);
      }
      assert.deepEqual(await rowsOf(batch.map((input) => input.id)), { versions: 0, builds: 0, jobs: 0 }, 'nothing half-written');
      // The writer is not stuck: the next member is written.
      const next = await settle(writer, queuedVersionInput(ids, '4.4.0'));
      assert.ok(next.ok);
    });

    it('the batch statement sends one NOTIFY for its members', { timeout: 60_000 }, async () => {
      const ids = await newApplication(database.db);
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const unlisten = await database.notifier.listen(JOBS_CHANNEL, () => wake());
      try {
        const created = await insertVersionsWithQueuedBuilds(database.db, [
          { version: queuedVersionInput(ids, '5.0.0'), maxAttempts: 2 },
          { version: queuedVersionInput(ids, '5.0.1'), maxAttempts: 3 },
        ]);
        assert.deepEqual(
          created.map((row) => row.version.version),
          ['5.0.0', '5.0.1'],
        );
        const jobRows = await database.db.select().from(jobs).where(inArray(jobs.buildId, created.map((row) => row.build.id)));
        assert.deepEqual(jobRows.map((job) => job.maxAttempts).sort(), [2, 3]);
        await woken;
      } finally {
        await unlisten();
      }
    });

    if (backend.name === 'PostgreSQL') {
      it('a connection cut in the middle of the batch statement fails every member, none written', { timeout: 60_000 }, async () => {
        const ids = await newApplication(database.db);
        const writer = new QueuedVersionWriter(database.db, { maxInFlight: 1 });
        const first = settle(writer, queuedVersionInput(ids, '6.0.0'));
        const batch = [queuedVersionInput(ids, '6.1.0'), queuedVersionInput(ids, '6.2.0')];
        const pending = Promise.all([first, settle(writer, batch[0]!), settle(writer, batch[1]!, 98)]);
        // The batch's last job waits in its trigger: its versions and builds are inserted, not committed.
        let terminated = false;
        for (let attempt = 0; attempt < 200 && !terminated; attempt++) {
          const result = (await database.db.execute(sql`select pg_terminate_backend(pid) as done from pg_stat_activity where wait_event = 'PgSleep' and datname = current_database()`)) as unknown as { rows: { done?: boolean }[] };
          terminated = result.rows.some((row) => row.done === true);
          if (!terminated) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(terminated, 'the batch statement was found and its connection cut');
        const outcomes = await pending;
        assert.ok(outcomes[0]?.ok);
        for (const outcome of outcomes.slice(1)) {
          assert.ok(!outcome.ok, 'no member is acknowledged');
          assert.ok(isDatabaseUnavailable(outcome.error), `a clear "database unavailable" error: ${String(outcome.error)}`);
        }
        assert.deepEqual(await rowsOf(batch.map((input) => input.id)), { versions: 0, builds: 0, jobs: 0 }, 'nothing half-written');
        assert.ok((await settle(writer, queuedVersionInput(ids, '6.3.0'))).ok, 'the writer goes on with a fresh connection');
      });
    }
  });
}

describe('batchSize: the members one statement takes', () => {
  it('is the largest power of two up to the waiting count and the cap', () => {
    const cases: Array<[waiting: number, maxBatch: number, size: number]> = [
      [1, 64, 1],
      [2, 64, 2],
      [3, 64, 2],
      [37, 64, 32],
      [64, 64, 64],
      [500, 64, 64],
      [7, 5, 4],
      [9, 1, 1],
    ];
    for (const [waiting, maxBatch, size] of cases) assert.equal(batchSize(waiting, maxBatch), size, `${waiting} waiting, at most ${maxBatch}`);
  });
});

