import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { UserError } from '../../src/errors.ts';
import { cancelBuild } from '../../src/queue/cancel.ts';
import { claimOnce, claimWithWait } from '../../src/queue/claim.ts';
import { completeJob, type CompletionReport } from '../../src/queue/complete.ts';
import { enqueueBuild } from '../../src/queue/enqueue.ts';
import { LeaseLostError } from '../../src/queue/jobs.ts';
import { heartbeat, requireLease, sweepExpiredLeases } from '../../src/queue/lease.ts';
import type { Database } from '../../src/store/metadata/database.ts';
import { SqlApplicationRepository } from '../../src/store/metadata/repositories/applications.ts';
import { SqlBuildRepository } from '../../src/store/metadata/repositories/builds.ts';
import { SqlOwnerRepository } from '../../src/store/metadata/repositories/owners.ts';
import { SqlTokenRepository } from '../../src/store/metadata/repositories/tokens.ts';
import { SqlVersionRepository } from '../../src/store/metadata/repositories/versions.ts';
import { jobs } from '../../src/store/metadata/schema.ts';
import { databaseBackends } from '../support/backends.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

const settings = { leaseMs: 30_000, maxAttempts: 2 };
const report = (outcome: CompletionReport['outcome'], reason: string | null = null): CompletionReport => ({
  outcome,
  reason,
  language: 'c',
  kind: 'wasi-command',
  stages: [],
  artifacts: {},
  details: {},
});

for (const backend of databaseBackends()) {
  describe(`metadata repositories and the job queue on ${backend.name}`, { skip: backend.skip }, () => {
    let database: Database;
    let repos: {
      owners: SqlOwnerRepository;
      tokens: SqlTokenRepository;
      applications: SqlApplicationRepository;
      versions: SqlVersionRepository;
      builds: SqlBuildRepository;
    };

    before(async () => {
      database = await backend.open();
      repos = {
        owners: new SqlOwnerRepository(database.db),
        tokens: new SqlTokenRepository(database.db),
        applications: new SqlApplicationRepository(database.db),
        versions: new SqlVersionRepository(database.db),
        builds: new SqlBuildRepository(database.db),
      };
    });
    after(() => database.close());

    /** An owner with an application, a version and a queued build with its job. */
    async function queuedBuild(maxAttempts = settings.maxAttempts) {
      const owner = await repos.owners.create(`owner-${randomUUID().slice(0, 8)}`);
      const app = await repos.applications.create(owner.id, { name: 'app', notes: '' });
      const version = await repos.versions.create({
        id: randomUUID(),
        ownerId: owner.id,
        applicationId: app.id,
        version: '1.0.0',
        optimize: { strip: true, wasmOpt: 'O2', wizer: true, memoryCapPages: null },
        sourceKey: 'k',
        sourceSha256: 'a'.repeat(64),
        sourceSize: 1,
        sourceFormat: 'tar.gz',
      });
      const { build, job } = await database.db.transaction(async (tx) => {
        const created = await new SqlBuildRepository(tx).createQueued({ ownerId: owner.id, applicationId: app.id, versionId: version.id });
        return { build: created, job: await enqueueBuild(tx, created.id, maxAttempts) };
      });
      return { owner, app, version, build, job };
    }

    async function drainQueue() {
      while (await claimOnce(database, 'drain', settings)) {
        // claimed jobs are simply left running
      }
    }

    it('stores tokens hashed and finds only active ones', async () => {
      const owner = await repos.owners.create(`tok-${randomUUID().slice(0, 8)}`);
      const { record, secret } = await repos.tokens.create({ kind: 'owner', ownerId: owner.id, name: 't' });
      assert.notEqual(record.secretHash, secret);
      assert.ok(!record.secretHash.includes(secret));
      assert.equal((await repos.tokens.findActiveBySecret(secret))?.id, record.id);
      assert.equal(await repos.tokens.revoke(owner.id, record.id), true);
      assert.equal(await repos.tokens.findActiveBySecret(secret), undefined);
      assert.equal(await repos.tokens.revoke(owner.id, record.id), false, 'revoking twice reports nothing to revoke');
    });

    it('scopes applications to their owner and rejects duplicate names', async () => {
      const alice = await repos.owners.create(`alice-${randomUUID().slice(0, 8)}`);
      const bob = await repos.owners.create(`bob-${randomUUID().slice(0, 8)}`);
      const app = await repos.applications.create(alice.id, { name: 'shop', notes: 'n' });
      assert.equal((await repos.applications.get(alice.id, app.id))?.name, 'shop');
      assert.equal(await repos.applications.get(bob.id, app.id), undefined);
      assert.equal(await repos.applications.update(bob.id, app.id, { notes: 'x' }), undefined);
      assert.equal(await repos.applications.delete(bob.id, app.id), false);
      await assert.rejects(repos.applications.create(alice.id, { name: 'shop', notes: '' }), (error: unknown) => error instanceof UserError && httpStatusOf(error) === 409);
      await repos.applications.create(bob.id, { name: 'shop', notes: '' });
    });

    it('pages through applications newest first without repeats', async () => {
      const owner = await repos.owners.create(`pager-${randomUUID().slice(0, 8)}`);
      for (let index = 0; index < 7; index++) await repos.applications.create(owner.id, { name: `app-${index}`, notes: '' });
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await repos.applications.list(owner.id, { limit: 3, cursor });
        seen.push(...page.items.map((app) => app.name));
        cursor = page.nextCursor;
      } while (cursor);
      // Rows created within one clock tick tie on created_at and are ordered by id,
      // so assert completeness and the absence of repeats rather than one order.
      assert.equal(seen.length, 7);
      assert.deepEqual([...seen].sort(), ['app-0', 'app-1', 'app-2', 'app-3', 'app-4', 'app-5', 'app-6']);
    });

    it('numbers builds per version and rejects a duplicate version', async () => {
      const { owner, app, version, build } = await queuedBuild();
      assert.equal(build.number, 1);
      const second = await repos.builds.createQueued({ ownerId: owner.id, applicationId: app.id, versionId: version.id });
      assert.equal(second.number, 2);
      assert.equal(await repos.builds.hasActiveBuild(version.id), true);
      await assert.rejects(
        repos.versions.create({ ...version, id: randomUUID() }),
        (error: unknown) => error instanceof UserError && error.code === 'version_exists',
      );
    });

    it('claims a job once, heartbeats it and completes it at most once', async () => {
      await drainQueue();
      const { build, job } = await queuedBuild();
      const claimed = await claimOnce(database, 'w1', settings);
      assert.equal(claimed?.job.id, job.id);
      assert.equal(claimed?.build.state, 'running');
      assert.equal(await claimOnce(database, 'w2', settings), undefined, 'a running job is not handed out again');
      const lease = claimed?.job.leaseToken ?? '';
      const beat = await heartbeat(database, job.id, lease, settings);
      assert.equal(beat.cancelRequested, false);
      await assert.rejects(heartbeat(database, job.id, 'not-the-lease', settings), LeaseLostError);
      const done = await completeJob(database, job.id, lease, report('failed', 'compile error'));
      assert.equal(done.build.state, 'failed');
      assert.equal(done.build.reason, 'compile error');
      assert.ok(done.build.finishedAt);
      await assert.rejects(completeJob(database, job.id, lease, report('succeeded')), LeaseLostError, 'a second completion is refused');
      assert.equal((await repos.builds.getById(build.id))?.state, 'failed');
    });

    it('hands a job to exactly one of two concurrent claimers', async () => {
      await drainQueue();
      const { job } = await queuedBuild();
      const results = await Promise.all([claimOnce(database, 'a', settings), claimOnce(database, 'b', settings), claimOnce(database, 'c', settings)]);
      const winners = results.filter((result) => result !== undefined);
      assert.equal(winners.length, 1);
      assert.equal(winners[0]?.job.id, job.id);
    });

    it('lets exactly one of two racing completions win', async () => {
      await drainQueue();
      const { job } = await queuedBuild();
      const claimed = await claimOnce(database, 'w', settings);
      const lease = claimed?.job.leaseToken ?? '';
      const outcomes = await Promise.allSettled([completeJob(database, job.id, lease, report('succeeded')), completeJob(database, job.id, lease, report('failed', 'x'))]);
      assert.equal(outcomes.filter((outcome) => outcome.status === 'fulfilled').length, 1);
      assert.equal(outcomes.filter((outcome) => outcome.status === 'rejected' && outcome.reason instanceof LeaseLostError).length, 1);
    });

    it('wakes a waiting claimer when a job is enqueued', async () => {
      await drainQueue();
      const waiting = claimWithWait(database, 'waiter', settings, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const { job } = await queuedBuild();
      const claimed = await waiting;
      assert.equal(claimed?.job.id, job.id);
    });

    it('re-queues an expired lease, then marks the build crashed after its attempts', async () => {
      await drainQueue();
      const { build, job } = await queuedBuild(2);
      const expire = () => database.db.update(jobs).set({ leaseExpiresAt: sql`now() - interval '1 second'` }).where(sql`${jobs.id} = ${job.id}`);
      const first = await claimOnce(database, 'dies', settings);
      assert.equal(first?.job.attempt, 1);
      await expire();
      await assert.rejects(requireLease(database.db, job.id, first?.job.leaseToken ?? ''), LeaseLostError, 'an expired lease is not honoured');
      const sweep = await sweepExpiredLeases(database);
      assert.deepEqual(sweep.requeued, [build.id]);
      assert.equal((await repos.builds.getById(build.id))?.state, 'queued');
      const second = await claimOnce(database, 'dies-too', settings);
      assert.equal(second?.job.attempt, 2);
      await assert.rejects(completeJob(database, job.id, first?.job.leaseToken ?? '', report('succeeded')), LeaseLostError, 'the first worker cannot complete after losing its lease');
      await expire();
      const final = await sweepExpiredLeases(database);
      assert.deepEqual(final.crashed, [build.id]);
      const crashed = await repos.builds.getById(build.id);
      assert.equal(crashed?.state, 'crashed');
      assert.match(crashed?.reason ?? '', /stopped responding 2 times/);
    });

    it('retries a reported crash until the attempts run out', async () => {
      await drainQueue();
      const { job } = await queuedBuild(2);
      const first = await claimOnce(database, 'w', settings);
      const retried = await completeJob(database, job.id, first?.job.leaseToken ?? '', report('crashed', 'disk full'));
      assert.equal(retried.requeued, true);
      assert.equal(retried.build.state, 'queued');
      const second = await claimOnce(database, 'w', settings);
      const final = await completeJob(database, job.id, second?.job.leaseToken ?? '', report('crashed', 'disk full'));
      assert.equal(final.requeued, false);
      assert.equal(final.build.state, 'crashed');
    });

    it('cancels a queued build at once and flags a running one', async () => {
      await drainQueue();
      const queued = await queuedBuild();
      const cancelled = await cancelBuild(database, queued.owner.id, queued.build.id);
      assert.equal(cancelled.state, 'cancelled');
      assert.equal(await claimOnce(database, 'w', settings), undefined, 'a cancelled build is never claimed');
      await assert.rejects(cancelBuild(database, queued.owner.id, queued.build.id), (error: unknown) => error instanceof UserError && httpStatusOf(error) === 409);

      const running = await queuedBuild();
      const claimed = await claimOnce(database, 'w', settings);
      const flagged = await cancelBuild(database, running.owner.id, running.build.id);
      assert.equal(flagged.state, 'running');
      assert.equal(flagged.cancelRequested, true);
      assert.equal((await heartbeat(database, running.job.id, claimed?.job.leaseToken ?? '', settings)).cancelRequested, true);
      const ended = await completeJob(database, running.job.id, claimed?.job.leaseToken ?? '', report('cancelled', 'cancelled'));
      assert.equal(ended.build.state, 'cancelled');
      await assert.rejects(cancelBuild(database, randomUUID(), running.build.id), (error: unknown) => error instanceof UserError && httpStatusOf(error) === 404);
    });
  });
}
