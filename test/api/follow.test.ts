import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { BUILD_LOG_CHANNEL } from '../../src/store/build-logs.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const CAP = 2;

interface OpenStream {
  status: number;
  body: string;
  /** Resolves with the text received so far once it matches `pattern`. */
  waitFor(pattern: RegExp): Promise<string>;
  close(): void;
}

function follow(url: string, buildId: string, token: string): Promise<OpenStream> {
  return new Promise((resolve, reject) => {
    const request = http.get(new URL(`/v1/builds/${buildId}/logs?follow=1`, url), { headers: { authorization: `Bearer ${token}` } }, (response) => {
      let text = '';
      const waiters: Array<{ pattern: RegExp; resolve: (text: string) => void }> = [];
      response.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        for (const waiter of [...waiters]) {
          if (waiter.pattern.test(text)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(text);
          }
        }
      });
      response.on('error', () => undefined);
      const stream: OpenStream = {
        status: response.statusCode ?? 0,
        get body() {
          return text;
        },
        waitFor: (pattern) => (pattern.test(text) ? Promise.resolve(text) : new Promise((done) => waiters.push({ pattern, resolve: done }))),
        close: () => request.destroy(),
      };
      if (response.statusCode !== 200) response.on('end', () => resolve(stream));
      else resolve(stream);
    });
    request.on('error', reject);
  });
}

for (const flavour of ['embedded', 'servers'] as StorageFlavour[]) {
  describe(`logs --follow is pushed (${flavour === 'embedded' ? 'PGlite' : 'PostgreSQL'})`, { timeout: 300_000 }, () => {
    let t: TestKiln;
    let buildId: string;
    let job: Json;

    before(async () => {
      // The job claimed below is never heartbeated: its lease must outlast the whole suite, however slow the machine.
      t = await startTestKiln({ flavour, env: { KILN_LEASE_MS: String(10 * 60_000) }, config: { followStreamsPerOwner: CAP } });
      const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'follow' } });
      const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0', kind: 'wasi-command' }, await tinyCProject()) });
      buildId = upload.body.build.id;
      const claimed = await call<Json>(t.url, 'POST', '/internal/v1/jobs/claim', { token: t.workerToken, json: { workerId: 'follow-test', waitMs: 5_000 } });
      job = claimed.body.job;
    });
    after(() => t.close());

    const appendLog = (text: string) =>
      call(t.url, 'POST', `/internal/v1/jobs/${job.id}/logs`, { token: t.workerToken, body: text, headers: { 'x-kiln-lease': job.leaseToken, 'content-type': 'application/octet-stream' } });

    it('a NOTIFY on the log channel (as another API instance sends) wakes the followers of that build only', async () => {
      let woken = 0;
      let others = 0;
      const unsubscribe = t.kiln.services.logs.subscribe(buildId, () => woken++);
      const unsubscribeOther = t.kiln.services.logs.subscribe('00000000-0000-4000-8000-000000000000', () => others++);
      try {
        await t.kiln.services.database.db.execute(sql`select pg_notify(${BUILD_LOG_CHANNEL}, ${buildId})`);
        while (woken === 0) await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(others, 0);
      } finally {
        unsubscribe();
        unsubscribeOther();
      }
    });

    it('a follower reads the build when woken, not on a timer', async () => {
      const builds = t.kiln.services.builds;
      const original = builds.getById.bind(builds);
      let reads = 0;
      builds.getById = (id: string) => {
        if (id === buildId) reads++;
        return original(id);
      };
      const stream = await follow(t.url, buildId, t.ownerToken);
      try {
        await stream.waitFor(/claimed by worker follow-test/);
        for (const line of ['first', 'second', 'third']) {
          await appendLog(`${line} line\n`);
          await stream.waitFor(new RegExp(`${line} line`));
        }
        const afterAppends = reads;
        assert.ok(afterAppends <= 1 + 3 * 2, `${afterAppends} reads for 3 appends`);
        // Idle for three periods of the old 500 ms poll: a polling follower would read 3 more times.
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        assert.equal(reads, afterAppends, 'no reads while nothing happened');
      } finally {
        stream.close();
        builds.getById = original;
      }
    });

    it(`refuses a follow stream beyond ${CAP} per owner with 429 and a clear message, and frees the place when one closes`, async () => {
      const open = [await follow(t.url, buildId, t.ownerToken), await follow(t.url, buildId, t.ownerToken)];
      try {
        for (const stream of open) assert.equal(stream.status, 200);
        const refused = await follow(t.url, buildId, t.ownerToken);
        assert.equal(refused.status, 429);
        assert.equal(JSON.parse(refused.body).error.code, 'too_many_follow_streams');
        assert.match(JSON.parse(refused.body).error.message, /KILN_FOLLOW_STREAMS_PER_OWNER=2/);
        // The log itself stays readable without following.
        assert.equal((await call(t.url, 'GET', `/v1/builds/${buildId}/logs`, { token: t.ownerToken })).status, 200);
        open.shift()?.close();
        for (;;) {
          const retry = await follow(t.url, buildId, t.ownerToken);
          if (retry.status === 200) {
            open.push(retry);
            break;
          }
          assert.equal(retry.status, 429);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      } finally {
        for (const stream of open) stream.close();
      }
    });

    it('ends a follow stream, with the whole log, as soon as the build has ended, without waiting for the log to be finalized', async () => {
      const logs = t.kiln.services.logs;
      const original = logs.finalize.bind(logs);
      let release = (): void => undefined;
      const held = new Promise<void>((resolve) => (release = resolve));
      logs.finalize = async (id: string) => {
        await held;
        return original(id);
      };
      const stream = await follow(t.url, buildId, t.ownerToken);
      let wakesBeforeFinalize = 0;
      let unsubscribe = (): void => undefined;
      try {
        await stream.waitFor(/claimed by worker follow-test/);
        await appendLog('the last line\n');
        await stream.waitFor(/the last line/);
        // Followers are woken by the end itself, not by finalize or by their slow re-check.
        unsubscribe = logs.subscribe(buildId, () => wakesBeforeFinalize++);
        const reported = call<Json>(t.url, 'POST', `/internal/v1/jobs/${job.id}/result`, {
          token: t.workerToken,
          headers: { 'x-kiln-lease': job.leaseToken },
          json: { outcome: 'failed', reason: 'compile error', stages: [] },
        });
        const text = await stream.waitFor(/event: end/);
        assert.match(text, /the last line/);
        assert.match(text.slice(text.indexOf('event: end')), /"state":"failed"/);
        assert.ok(wakesBeforeFinalize > 0, 'the end woke the followers while the log was not finalized yet');
        unsubscribe();
        release();
        assert.equal((await reported).status, 200);
      } finally {
        unsubscribe();
        release();
        stream.close();
        logs.finalize = original;
      }
    });
  });
}
