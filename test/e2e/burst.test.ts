import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { wasiCommandModule } from '../support/wasm.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const SUBMISSIONS = 500;

/**
 * BRIEF §10: a burst of 500 submissions, every one reaches a terminal state,
 * no 5xx, none completed twice. The workers are played over the internal
 * protocol so the test measures the API and the queue, not the compilers.
 */
describe('a burst of 500 submissions', { timeout: 600_000 }, () => {
  let t: TestKiln;
  let appId: string;

  before(async () => {
    t = await startTestKiln();
    appId = (await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'burst' } })).body.id;
  });
  after(() => t.close());

  it('accepts every upload and brings every build to an end exactly once', async () => {
    const archive = await tinyCProject();
    const statuses: number[] = [];
    const buildIds: string[] = [];
    const upload = async (index: number) => {
      const answer = await call<Json>(t.url, 'POST', `/v1/applications/${appId}/versions`, { token: t.ownerToken, body: versionForm({ version: `1.0.${index}`, kind: 'wasi-command' }, archive) });
      statuses.push(answer.status);
      if (answer.status === 202) buildIds.push(answer.body.build.id);
    };
    let next = 0;
    await Promise.all(Array.from({ length: 25 }, async () => {
      while (next < SUBMISSIONS) await upload(next++);
    }));
    assert.deepEqual([...new Set(statuses)], [202], 'every submission was accepted, none got a 5xx');

    const completed = new Map<string, number>();
    const module = new Uint8Array(wasiCommandModule());
    const worker = async (name: string) => {
      while (true) {
        const claimed = await call<Json>(t.url, 'POST', '/internal/v1/jobs/claim', { token: t.workerToken, json: { workerId: name, waitMs: 500 } });
        if (claimed.status === 204) return;
        assert.equal(claimed.status, 200);
        const job = claimed.body.job as Json;
        const headers = { 'x-kiln-lease': job.leaseToken };
        // Every third build fails, the rest succeed: both paths under load.
        const succeed = completed.size % 3 !== 0;
        if (succeed) await call(t.url, 'PUT', `/internal/v1/jobs/${job.id}/artifacts/original`, { token: t.workerToken, body: module, headers: { ...headers, 'content-type': 'application/wasm' } });
        const result = await call<Json>(t.url, 'POST', `/internal/v1/jobs/${job.id}/result`, {
          token: t.workerToken,
          json: succeed ? { outcome: 'succeeded', stages: [] } : { outcome: 'failed', reason: 'compile error', stages: [] },
          headers,
        });
        assert.equal(result.status, 200, JSON.stringify(result.body));
        completed.set(job.buildId, (completed.get(job.buildId) ?? 0) + 1);
      }
    };
    await Promise.all(['w1', 'w2', 'w3', 'w4'].map(worker));

    assert.equal(completed.size, SUBMISSIONS);
    assert.deepEqual([...new Set(completed.values())], [1], 'no build was completed twice');
    const states = new Map<string, number>();
    let cursor: string | undefined;
    do {
      const page = await call<Json>(t.url, 'GET', `/v1/builds?applicationId=${appId}&limit=200${cursor ? `&cursor=${cursor}` : ''}`, { token: t.ownerToken });
      for (const build of page.body.items as Json[]) states.set(build.state, (states.get(build.state) ?? 0) + 1);
      cursor = page.body.nextCursor;
    } while (cursor);
    assert.equal((states.get('succeeded') ?? 0) + (states.get('failed') ?? 0), SUBMISSIONS, JSON.stringify(Object.fromEntries(states)));
    assert.equal(buildIds.length, SUBMISSIONS);
  });
});
