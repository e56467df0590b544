/**
 * `kiln serve` and `kiln worker` stopped with SIGTERM end by themselves with
 * status 0, ending what holds them open (follow streams, worker long polls),
 * and lose nothing. No latency is asserted: the test timeout is the only
 * bound, and it is generous.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const KILN = path.resolve(import.meta.dirname, '../../bin/kiln');

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function serve(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  await rm(path.join(dataDir, 'local-url'), { force: true });
  const child = spawn(KILN, ['serve', '--port', '0', '--data-dir', dataDir, '--workers', '0'], { env: { ...process.env, KILN_LOG_LEVEL: 'warn' }, stdio: 'ignore' });
  for (;;) {
    const url = await readFile(path.join(dataDir, 'local-url'), 'utf8').catch(() => '');
    if (url.trim()) return { child, url: url.trim() };
    if (child.exitCode !== null) throw new Error(`kiln serve exited with ${child.exitCode}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Opens a follow stream and resolves once its headers arrived; `ended` resolves when the server ends it. */
function openFollow(url: string, buildId: string, token: string): Promise<{ ended: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const request = http.get(new URL(`/v1/builds/${buildId}/logs?follow=1`, url), { headers: { authorization: `Bearer ${token}` } }, (response) => {
      let text = '';
      const ended = new Promise<string>((done) => {
        response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        response.on('end', () => done(text));
        response.on('error', () => done(text));
        response.on('close', () => done(text));
      });
      resolve({ ended });
    });
    request.on('error', reject);
  });
}

describe('processes end cleanly on SIGTERM', { timeout: 900_000 }, () => {
  const cleanups: Array<() => Promise<unknown> | void> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('kiln serve drains (follow streams and worker long polls end), exits 0, and keeps the build', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'kiln-shutdown-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const first = await serve(dataDir);
    cleanups.push(() => void first.child.kill('SIGKILL'));
    const ownerToken = (await readFile(path.join(dataDir, 'local-token'), 'utf8')).trim();
    const workerToken = (await readFile(path.join(dataDir, 'worker-token'), 'utf8')).trim();
    const app = await call<Json>(first.url, 'POST', '/v1/applications', { token: ownerToken, json: { name: 'drain' } });
    const upload = await call<Json>(first.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: ownerToken, body: versionForm({ version: '1.0.0', kind: 'wasi-command' }, await tinyCProject()) });
    assert.equal(upload.status, 202);
    const buildId = upload.body.build.id as string;

    // Two things that never end by themselves: a follow stream of a running build, and a long poll with nothing to claim.
    const follow = await openFollow(first.url, buildId, ownerToken);
    const claimedFirst = await call<Json>(first.url, 'POST', '/internal/v1/jobs/claim', { token: workerToken, json: { workerId: 'takes-it', waitMs: 0 } });
    assert.equal(claimedFirst.status, 200, 'the build is claimed, so the long poll below waits');
    const longPoll = call(first.url, 'POST', '/internal/v1/jobs/claim', { token: workerToken, json: { workerId: 'waits', waitMs: 30_000 } }).catch((error: unknown) => error);

    first.child.kill('SIGTERM');
    const status = await exited(first.child);
    assert.deepEqual(status, { code: 0, signal: null }, 'kiln serve exits by itself with status 0');
    await follow.ended;
    await longPoll;

    const second = await serve(dataDir);
    cleanups.push(() => void second.child.kill('SIGKILL'));
    const build = await call<Json>(second.url, 'GET', `/v1/builds/${buildId}`, { token: ownerToken });
    assert.equal(build.status, 200, 'the build is still there after the restart');
    assert.ok(['queued', 'running'].includes(build.body.state), `the build was not lost or failed: ${build.body.state}`);
    second.child.kill('SIGTERM');
    assert.deepEqual(await exited(second.child), { code: 0, signal: null });
  });

  it('kiln worker waiting for a job exits 0 on SIGTERM, and the queued build stays queued for the next worker', async () => {
    const t: TestKiln = await startTestKiln();
    cleanups.push(() => t.close());
    const worker = spawn(KILN, ['worker', '--api', t.url, '--token', t.workerToken, '--concurrency', '1'], { env: { ...process.env, KILN_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => void worker.kill('SIGKILL'));
    let output = '';
    worker.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    worker.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    while (!output.includes('worker started')) {
      if (worker.exitCode !== null) assert.fail(`kiln worker exited early: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    worker.kill('SIGTERM');
    assert.deepEqual(await exited(worker), { code: 0, signal: null }, output.slice(-2000));

    const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'after-worker' } });
    const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0', kind: 'wasi-command' }, await tinyCProject()) });
    const build = await call<Json>(t.url, 'GET', `/v1/builds/${upload.body.build.id}`, { token: t.ownerToken });
    assert.equal(build.body.state, 'queued', 'a stopped worker claims nothing');
  });
});
