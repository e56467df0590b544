import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile, mkdir, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readFile } from 'node:fs/promises';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { buildLog, deployDirectory, EXAMPLES, startTestWorkers, waitForBuild } from '../support/workers.ts';
import { runWasiCommand } from '../support/wasi-run.ts';
import type { RunningWorker } from '../../src/worker/worker.ts';
import { eq } from 'drizzle-orm';
import { jobs } from '../../src/store/metadata/schema.ts';

/** Live (not zombie) processes whose command line contains `text`. */
async function processesNaming(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(text)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    if (status !== '' && !/^State:\s+[ZX]/m.test(status)) found.push(Number(pid));
  }
  return found;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

describe('the whole pipeline: upload → queue → sandboxed worker → evaluator', { timeout: 300_000 }, () => {
  let t: TestKiln;
  let workers: RunningWorker;
  let appId: string;
  const api = (method: string, route: string) => call<Json>(t.url, method, route, { token: t.ownerToken });

  before(async () => {
    t = await startTestKiln({ config: { queue: { leaseMs: 3_000, maxAttempts: 3 } } });
    workers = startTestWorkers(t, 1);
    appId = (await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'pipeline' } })).body.id;
  });
  after(async () => {
    await workers.stop();
    await t.close();
  });

  it('builds the C function example and the artifact runs', async () => {
    const { version, build } = await deployDirectory(t, appId, path.join(EXAMPLES, 'c-function'), { version: '1.0.0' });
    const done = await waitForBuild(t, build.id);
    assert.equal(done.state, 'succeeded', `${done.reason}\n${await buildLog(t, build.id)}`);
    assert.equal(done.language, 'c');
    assert.equal(done.kind, 'wasi-command');
    assert.ok(done.stages.some((stage: Json) => stage.name === 'download'));
    const artifact = await api('GET', `/v1/versions/${version.id}/artifact`);
    assert.equal(artifact.status, 200);
    assert.deepEqual(await runWasiCommand(artifact.raw, 'kiln'), { exitCode: 0, stdout: 'KILN\n[4 bytes]\n', stderr: '' });
    assert.match(await buildLog(t, build.id), /clang/);
  });

  it('fails a compile error with the compiler output and a one-line reason', async () => {
    const { build } = await deployDirectory(t, appId, path.join(EXAMPLES, 'rust-compile-error'), { version: '2.0.0' });
    const done = await waitForBuild(t, build.id);
    assert.equal(done.state, 'failed');
    assert.match(done.reason, /^error/);
    assert.doesNotMatch(done.reason, /\n/);
    assert.match(await buildLog(t, build.id), /error\[E\d+\]/);
  });

  // The mechanism, not the latency (bench/cancel.ts measures that): the build
  // script's processes got their kill, the state is cancelled, the lease is released.
  it('cancels a running build: its processes are killed, it is cancelled, its lease released', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-slow-'));
    const crate = `slow${randomBytes(4).toString('hex')}`;
    try {
      await mkdir(path.join(dir, 'src'));
      await writeFile(path.join(dir, 'Cargo.toml'), `[package]\nname = "${crate}"\nversion = "0.1.0"\nedition = "2021"\nbuild = "build.rs"\n`);
      await writeFile(path.join(dir, 'build.rs'), 'fn main() { loop { std::thread::sleep(std::time::Duration::from_millis(50)); } }\n');
      await writeFile(path.join(dir, 'src', 'main.rs'), 'fn main() {}\n');
      const { build } = await deployDirectory(t, appId, dir, { version: '3.0.0' });
      // The build script of this crate is running in the sandbox (its path names the crate).
      let scripts: number[] = [];
      while (scripts.length === 0) {
        scripts = await processesNaming(`${crate}-`);
        if (scripts.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal((await api('GET', `/v1/builds/${build.id}`)).body.state, 'running');
      assert.equal((await api('POST', `/v1/builds/${build.id}/cancel`)).status, 202);
      const done = await waitForBuild(t, build.id);
      assert.equal(done.state, 'cancelled');
      assert.deepEqual(await processesNaming(`${crate}-`), [], 'no process of the build survives');
      const [job] = await t.kiln.services.database.db.select().from(jobs).where(eq(jobs.buildId, build.id));
      assert.equal(job?.state, 'done');
      assert.equal(job?.leaseToken, null, 'the lease is released');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('finishes the job of a worker killed with SIGKILL on another worker', async () => {
    await workers.stop();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-kill-'));
    try {
      await mkdir(path.join(dir, 'src'));
      await writeFile(path.join(dir, 'Cargo.toml'), '[package]\nname = "sleepy"\nversion = "0.1.0"\nedition = "2021"\nbuild = "build.rs"\n');
      // Sleeps on the first attempt only: the marker lives in the build's own target dir, which a new attempt does not have.
      await writeFile(path.join(dir, 'build.rs'), 'fn main() { std::thread::sleep(std::time::Duration::from_secs(4)); }\n');
      await writeFile(path.join(dir, 'src', 'main.rs'), 'fn main() { println!("hi"); }\n');
      const { build } = await deployDirectory(t, appId, dir, { version: '4.0.0' });
      const child = spawn(path.resolve(import.meta.dirname, '../../bin/kiln'), ['worker', '--api', t.url, '--token', t.workerToken, '--concurrency', '1'], { stdio: 'ignore' });
      while ((await api('GET', `/v1/builds/${build.id}`)).body.state !== 'running') await new Promise((resolve) => setTimeout(resolve, 100));
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      workers = startTestWorkers(t, 1);
      const done = await waitForBuild(t, build.id);
      assert.equal(done.state, 'succeeded', await buildLog(t, build.id));
      assert.equal(done.attempts, 2);
      assert.match(await buildLog(t, build.id), /lease expired\); re-queued/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
