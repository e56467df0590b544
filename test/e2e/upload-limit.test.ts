/**
 * Issue 15: the worker extracted uploads with the DEFAULT archive limits
 * while the API accepted them under the configured ones, so raising
 * KILN_UPLOAD_MAX_BYTES made every big upload fail after it was accepted.
 * The job now carries its archive limits; an archive above the default size
 * builds end to end.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_ARCHIVE_LIMITS } from '../../src/archive/limits.ts';
import type { RunningWorker } from '../../src/worker/worker.ts';
import { tarGz, versionForm } from '../support/archives.ts';
import { buildLog, startTestWorkers, waitForBuild } from '../support/workers.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const DEFAULT_MAX = DEFAULT_ARCHIVE_LIMITS.maxCompressedBytes;

describe('a raised upload limit holds from the API to the worker', { timeout: 600_000 }, () => {
  let t: TestKiln;
  let workers: RunningWorker;
  before(async () => {
    t = await startTestKiln({ env: { KILN_UPLOAD_MAX_BYTES: String(DEFAULT_MAX + 16 * 1024 * 1024) } });
    workers = startTestWorkers(t, 1);
  });
  after(async () => {
    await workers?.stop();
    await t?.close();
  });

  it('builds an archive larger than the default upload limit', async () => {
    // Random bytes do not compress: the archive is above the default limit.
    const archive = await tarGz({ 'src/main.c': 'int main(void) { return 0; }\n', 'assets/blob.bin': randomBytes(DEFAULT_MAX + 1024 * 1024) });
    assert.ok(archive.length > DEFAULT_MAX, `the archive is ${archive.length} bytes`);
    const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'big-upload' } });
    const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0', kind: 'wasi-command' }, archive) });
    assert.equal(upload.status, 202, JSON.stringify(upload.body));
    const build = await waitForBuild(t, upload.body.build.id);
    assert.equal(build.state, 'succeeded', `${build.reason}\n${(await buildLog(t, build.id)).slice(-2000)}`);
  });
});
