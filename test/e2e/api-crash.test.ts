import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call } from '../support/kiln.ts';
import { wasiCommandModule } from '../support/wasm.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const KILN = path.resolve(import.meta.dirname, '../../bin/kiln');

/**
 * `kiln serve` as a real process on a random port, embedded defaults, no local workers. `leaseMs`: the
 * leases it grants (the first server's are short so the crash's job comes back soon; the second's are
 * long so a loaded machine cannot make the test's own worker lose its job).
 */
async function serve(dataDir: string, leaseMs: number): Promise<{ child: ChildProcess; url: string }> {
  await rm(path.join(dataDir, 'local-url'), { force: true });
  const child = spawn(KILN, ['serve', '--port', '0', '--data-dir', dataDir, '--workers', '0'], {
    env: { ...process.env, KILN_LEASE_MS: String(leaseMs), KILN_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const url = await readFile(path.join(dataDir, 'local-url'), 'utf8').catch(() => '');
    if (url.trim()) return { child, url: url.trim() };
    if (child.exitCode !== null) throw new Error(`kiln serve exited with ${child.exitCode}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error('kiln serve did not start within 60 s');
}

describe('the API killed with SIGKILL mid-build', { timeout: 180_000 }, () => {
  let dataDir: string;
  let running: ChildProcess | undefined;
  after(async () => {
    running?.kill('SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('loses nothing: the build, its log and its version survive, and the job runs to the end once', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'kiln-api-crash-'));
    const first = await serve(dataDir, 2_000);
    running = first.child;
    const ownerToken = (await readFile(path.join(dataDir, 'local-token'), 'utf8')).trim();
    const workerToken = (await readFile(path.join(dataDir, 'worker-token'), 'utf8')).trim();
    const app = await call<Json>(first.url, 'POST', '/v1/applications', { token: ownerToken, json: { name: 'crashy' } });
    const upload = await call<Json>(first.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: ownerToken, body: versionForm({ version: '1.0.0', kind: 'wasi-command' }, await tinyCProject()) });
    assert.equal(upload.status, 202);
    const claimed = await call<Json>(first.url, 'POST', '/internal/v1/jobs/claim', { token: workerToken, json: { workerId: 'before-crash', waitMs: 2000 } });
    const staleJob = claimed.body.job as Json;
    await call(first.url, 'POST', `/internal/v1/jobs/${staleJob.id}/logs`, { token: workerToken, body: 'compiled half of it\n', headers: { 'x-kiln-lease': staleJob.leaseToken, 'content-type': 'application/octet-stream' } });

    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const second = await serve(dataDir, 120_000);
    running = second.child;

    const build = await call<Json>(second.url, 'GET', `/v1/builds/${upload.body.build.id}`, { token: ownerToken });
    assert.equal(build.status, 200, 'the build survived the crash');
    assert.match(String((await call(second.url, 'GET', `/v1/builds/${upload.body.build.id}/logs`, { token: ownerToken })).body), /compiled half of it/);
    // The crashed API's lease runs out; the sweeper of the new process re-queues the job.
    const reclaimed = await call<Json>(second.url, 'POST', '/internal/v1/jobs/claim', { token: workerToken, json: { workerId: 'after-crash', waitMs: 15_000 } });
    assert.equal(reclaimed.status, 200);
    const job = reclaimed.body.job as Json;
    assert.equal(job.id, staleJob.id);
    assert.equal(job.attempt, 2);
    const stale = await call(second.url, 'POST', `/internal/v1/jobs/${staleJob.id}/result`, { token: workerToken, json: { outcome: 'succeeded', stages: [] }, headers: { 'x-kiln-lease': staleJob.leaseToken } });
    assert.equal(stale.status, 409, 'the lease from before the crash cannot complete the job');
    await call(second.url, 'PUT', `/internal/v1/jobs/${job.id}/artifacts/original`, { token: workerToken, body: new Uint8Array(wasiCommandModule()), headers: { 'x-kiln-lease': job.leaseToken, 'content-type': 'application/wasm' } });
    const result = await call<Json>(second.url, 'POST', `/internal/v1/jobs/${job.id}/result`, { token: workerToken, json: { outcome: 'succeeded', stages: [] }, headers: { 'x-kiln-lease': job.leaseToken } });
    assert.equal(result.body.build.state, 'succeeded');
    const versions = await call<Json>(second.url, 'GET', `/v1/applications/${app.body.id}/versions`, { token: ownerToken });
    assert.equal(versions.body.items.length, 1);
    const artifact = await call(second.url, 'GET', `/v1/versions/${upload.body.version.id}/artifact`, { token: ownerToken });
    assert.equal(artifact.status, 200);
    second.child.kill('SIGTERM');
    await new Promise((resolve) => second.child.once('exit', resolve));
    running = undefined;
  });
});
