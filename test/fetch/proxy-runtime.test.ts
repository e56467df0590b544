/**
 * The fetch phase through the whole pipeline (upload → queue → worker →
 * bubblewrap fetch sandbox → offline build → evaluator → test bed), on both
 * storage backends: a filter on the official AssemblyScript SDK
 * (@solo-io/proxy-runtime 0.1.8, ABI 0.2.0, compiled by the locked
 * assemblyscript 0.14) builds, runs on the test bed, and its second build
 * restores the owner's cached node_modules instead of downloading.
 *
 * Needs the npm registry (the fetch reaches it through Kiln's egress proxy).
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { after, before, describe, it } from 'node:test';
import { createSandbox } from '../../src/sandbox/index.ts';
import { startWorker, type RunningWorker } from '../../src/worker/worker.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';
import { buildLog, deployDirectory, EXAMPLES, waitForBuild } from '../support/workers.ts';
import { sandboxSkip } from '../testbed/support.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const skip = await sandboxSkip();
const FLAVOURS: Array<{ flavour: StorageFlavour; skip: string | false }> = [
  { flavour: 'embedded', skip: false },
  { flavour: 'servers', skip: process.env.KILN_TEST_DATABASE_URL && process.env.KILN_TEST_S3_ENDPOINT ? false : 'the PostgreSQL and S3 test servers are not configured (source test-env.sh or run npm test)' },
];
/**
 * The log right after the build ended. Polls a little: a reader can meet the
 * moment the API moves the log's chunks into one object (found with the S3
 * backend: src/store/build-logs.ts reads the build row, then the chunks,
 * which finalize may have deleted in between), and see it empty.
 */
async function finalLog(t: TestKiln, buildId: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const log = await buildLog(t, buildId);
    if (log !== '' || attempt === 20) return log;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
const header = (pairs: Array<[string, string]>, key: string) => pairs.find(([name]) => name === key)?.[1];

for (const { flavour, skip: backendSkip } of FLAVOURS) {
  describe(`@solo-io/proxy-runtime through the pipeline (${flavour})`, { skip: skip || backendSkip, timeout: 900_000 }, () => {
    let t: TestKiln;
    let workers: RunningWorker;
    let appId: string;
    const api = (method: string, route: string, json?: unknown) => call<Json>(t.url, method, route, { token: t.ownerToken, json });

    before(async () => {
      process.env.KILN_TESTBED_WORKERS = '1';
      t = await startTestKiln({ flavour });
      workers = startWorker({
        apiUrl: t.url,
        token: t.workerToken,
        concurrency: 1,
        sandbox: createSandbox('bubblewrap'),
        // A work root of this file's own: its dependency cache starts empty.
        workRoot: path.join(os.tmpdir(), `kiln-test-fetch-${flavour}-${process.pid}`),
        logger: pino({ level: 'warn' }),
        heartbeatMs: 500,
      });
      appId = (await api('POST', '/v1/applications', { name: `proxy-runtime-${flavour}` })).body.id;
    });
    after(async () => {
      await workers?.stop();
      await t?.close();
      delete process.env.KILN_TESTBED_WORKERS;
    });

    let versionId: string;

    it('fetches the locked packages, builds with the locked asc 0.14 and records the fetch', async () => {
      const { version, build } = await deployDirectory(t, appId, path.join(EXAMPLES, 'assemblyscript-proxy-runtime'), { version: '1.0.0' });
      const done = await waitForBuild(t, build.id);
      const log = await finalLog(t, build.id);
      assert.equal(done.state, 'succeeded', `${done.reason}\n${log}`);
      assert.equal(done.kind, 'proxy-wasm');
      assert.ok(done.stages.some((stage: Json) => stage.name === 'fetch'), JSON.stringify(done.stages));
      assert.equal(done.details.fetch.tool, 'npm');
      assert.equal(done.details.fetch.cached, false);
      assert.equal(done.details.fetch.saved, true);
      assert.ok(done.details.fetch.bytesDownloaded > 0);
      assert.match(log, /compiling with the app's own assemblyscript 0\.14\.13/);
      assert.match(log, /--use abort=abort_proc_exit/);
      versionId = version.id;
    });

    it('runs on the test bed: ABI 0.2.0, response header from the SDK, local response', async () => {
      const passed = await api('POST', `/v1/versions/${versionId}/invoke`, { request: { path: '/hello' } });
      assert.equal(passed.status, 200, JSON.stringify(passed.body));
      assert.equal(passed.body.outcome, 'ok', JSON.stringify(passed.body));
      assert.equal(header(passed.body.response.headers, 'hello'), 'world!', JSON.stringify(passed.body.response));
      assert.ok(passed.body.logs.some((line: Json) => /added hello: world!/.test(line.message)), JSON.stringify(passed.body.logs));

      const blocked = await api('POST', `/v1/versions/${versionId}/invoke`, { request: { path: '/blocked' } });
      assert.equal(blocked.body.outcome, 'ok', JSON.stringify(blocked.body));
      assert.equal(blocked.body.response.source, 'local');
      assert.equal(blocked.body.response.status, 403);
      assert.equal(blocked.body.response.body.text, 'blocked\n');
      assert.equal(blocked.body.request.forwarded, false);
    });

    it("restores the owner's cached node_modules on the next build, downloading nothing", async () => {
      const { build } = await deployDirectory(t, appId, path.join(EXAMPLES, 'assemblyscript-proxy-runtime'), { version: '1.0.1' });
      const done = await waitForBuild(t, build.id);
      const log = await finalLog(t, build.id);
      assert.equal(done.state, 'succeeded', `${done.reason}\n${log}`);
      assert.equal(done.details.fetch.cached, true);
      assert.equal(done.details.fetch.bytesDownloaded, undefined);
      assert.match(log, /fetch cache hit/);
    });
  });
}
