/**
 * Modern Rust through the whole pipeline (upload → queue → worker →
 * bubblewrap sandbox → evaluator → test bed), on both storage backends:
 * an app pinned to rustc 1.63 next to one on 1.85, a filter on real
 * vendored crates.io crates (checksums verified by cargo), a tampered
 * vendored crate, a toolchain that is not installed, and the official
 * proxy-wasm crate when the operator provides its source.
 *
 * Needs root, bubblewrap and the modern toolchain (scripts/setup.sh); the
 * servers flavour needs the shared PostgreSQL and S3 (test-env.sh).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { installedToolchains } from '../../src/languages/rust/toolchains.ts';
import { toolchainsDir } from '../../src/config.ts';
import { s3Skip } from '../support/backends.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';
import { buildLog, deployDirectory, EXAMPLES, startTestWorkers, waitForBuild } from '../support/workers.ts';
import type { RunningWorker } from '../../src/worker/worker.ts';
import { HASHBROWN_CRATES, officialSdkDir, tamperWithVendoredCrate, toolchainVendorMissing, writeHashbrownFilter, writeOfficialSdkFilter } from '../languages/rust-vendored.ts';

/**
 * The build's log once it is there. Seen once on the servers backend: right
 * after the build ended the log read back empty (the chunks → object move of
 * decision 0003 racing the read?); reported to the integrator, and retried
 * here for up to 5 s so this suite tests toolchains, not that race.
 */
async function finishedLog(t: TestKiln, buildId: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const log = await buildLog(t, buildId);
    if (log !== '' || attempt >= 25) return log;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const installed = await installedToolchains(toolchainsDir());
const modernSkip = installed.some((toolchain) => toolchain.target === 'wasm32-wasip1') ? false : `no modern Rust toolchain under ${toolchainsDir()}: run scripts/setup.sh`;
const legacySkip = installed.some((toolchain) => toolchain.target === 'wasm32-wasi') ? false : 'Debian’s rustc 1.63 with its wasm32-wasi std is not installed';
const rootSkip = process.getuid?.() === 0 ? false : 'the build sandbox needs root';

const FLAVOURS: { flavour: StorageFlavour; skip: string | false }[] = [
  { flavour: 'embedded', skip: false },
  { flavour: 'servers', skip: s3Skip() },
];

for (const { flavour, skip } of FLAVOURS) {
  describe(`Rust toolchains through the pipeline (${flavour} storage)`, { skip: skip || rootSkip || modernSkip || legacySkip, timeout: 1_200_000 }, () => {
    let t: TestKiln;
    let workers: RunningWorker;
    let appId: string;
    let scratch: string;
    let versionNumber = 0;
    const owner = (method: string, route: string, json?: unknown) => call<Json>(t.url, method, route, { token: t.ownerToken, ...(json === undefined ? {} : { json }) });

    before(async () => {
      process.env.KILN_TESTBED_WORKERS = '1';
      t = await startTestKiln({ flavour });
      workers = startTestWorkers(t, 1);
      appId = (await owner('POST', '/v1/applications', { name: `rust-${flavour}` })).body.id;
      scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-rust-e2e-'));
    });
    after(async () => {
      await workers?.stop();
      await t?.close();
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
      delete process.env.KILN_TESTBED_WORKERS;
    });

    async function deploy(dir: string, metadata: Json = {}): Promise<{ versionId: string; build: Json; log: string }> {
      versionNumber += 1;
      const { version, build } = await deployDirectory(t, appId, dir, { version: `0.${versionNumber}.0`, ...metadata });
      const done = await waitForBuild(t, build.id);
      return { versionId: version.id, build: done, log: await finishedLog(t, build.id) };
    }

    async function invoke(versionId: string, request: Json = { path: '/anything' }): Promise<Json> {
      const answer = await owner('POST', `/v1/versions/${versionId}/invoke`, { request });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer.body;
    }

    it('an app pinned to 1.63 and an edition-2024 app build side by side, each on its toolchain, and run on the test bed', async () => {
      const legacy = await deploy(path.join(EXAMPLES, 'rust-filter-1.63'));
      const modern = await deploy(path.join(EXAMPLES, 'rust-filter-2024'));
      for (const [run, target, version] of [
        [legacy, 'wasm32-wasi', '1.63'],
        [modern, 'wasm32-wasip1', '1.85'],
      ] as const) {
        assert.equal(run.build.state, 'succeeded', `${run.build.reason}\n${run.log}`);
        assert.equal(run.build.details.toolchain.target, target);
        assert.match(run.build.details.toolchain.rustc, new RegExp(`^rustc ${version.replace('.', '\\.')}`));
        assert.match(run.log, new RegExp(`kiln: toolchain rust-${version.replace('.', '\\.')}\\.\\d+ \\(rustc ${version.replace('.', '\\.')}.*\\), target ${target}`));
        assert.match(run.log, new RegExp(`--target ${target} `));
      }
      assert.match(legacy.log, /rust-toolchain\.toml asks for "1\.63"/);
      assert.match(modern.log, /(edition 2024|rust-version = "1\.85") needs rustc ≥ 1\.85/);
      const tagged = async (versionId: string) => (await invoke(versionId)).response.changes.headers.added;
      assert.deepEqual(await tagged(legacy.versionId), [['x-kiln-rust', '1.63']]);
      assert.deepEqual(await tagged(modern.versionId), [['x-kiln-rust', '2024 ***']]);
    });

    it('a toolchain that is not installed fails the build, naming what is installed', async () => {
      const dir = path.join(scratch, 'nightly');
      await writeFile(path.join(await mkdirp(dir), 'rust-toolchain'), 'nightly-2025-01-01\n');
      await writeFile(path.join(dir, 'Cargo.toml'), '[package]\nname = "nightly"\nversion = "0.1.0"\nedition = "2021"\n');
      await writeFile(path.join(await mkdirp(path.join(dir, 'src')), 'main.rs'), 'fn main() {}\n');
      const run = await deploy(dir);
      assert.equal(run.build.state, 'failed');
      assert.match(run.build.reason, /rust-toolchain asks for "nightly-2025-01-01", which is not installed on this worker; installed: 1\.85\.0 \(wasm32-wasip1\), 1\.63\.0 \(wasm32-wasi\)/);
    });

    it('a filter on vendored crates.io crates (hashbrown 0.15, log) builds with verified checksums and runs', async (context) => {
      const missing = await toolchainVendorMissing();
      if (missing !== undefined) return context.skip(missing);
      const dir = path.join(scratch, 'hashbrown');
      await writeHashbrownFilter(dir);
      const run = await deploy(dir);
      assert.equal(run.build.state, 'succeeded', `${run.build.reason}\n${run.log}`);
      assert.equal(run.build.details.toolchain.target, 'wasm32-wasip1');
      assert.match(run.log, /using 5 vendored crate\(s\) from vendor\//);
      assert.match(run.log, /Compiling hashbrown v0\.15\.2/);
      const invoked = await invoke(run.versionId, { path: '/x', headers: [['a', '1'], ['b', '2'], ['a', '3']] });
      assert.equal(invoked.outcome, 'ok', invoked.message);
      const added = new Map<string, string>(invoked.request.changes.headers.added);
      // The test bed adds its own pseudo-headers; whatever their number, a and b count once each.
      assert.ok(Number(added.get('x-distinct-headers')) >= 2, JSON.stringify(invoked.request.changes));
      assert.deepEqual(invoked.unimplemented, []);
    });

    it('a vendored crate whose files do not match its checksums fails, naming the crate', async (context) => {
      const missing = await toolchainVendorMissing();
      if (missing !== undefined) return context.skip(missing);
      const dir = path.join(scratch, 'tampered');
      await writeHashbrownFilter(dir);
      await tamperWithVendoredCrate(dir, HASHBROWN_CRATES[0] ?? 'hashbrown-0.15.2', 'src/lib.rs');
      const run = await deploy(dir);
      assert.equal(run.build.state, 'failed', run.log);
      assert.match(run.build.reason, /checksum of .*hashbrown-0\.15\.2\/src\/lib\.rs.* has changed/);
    });

    it('a filter on the official proxy-wasm crate, vendored, builds offline and behaves on the test bed', async (context) => {
      const sdk = await officialSdkDir();
      if ('missing' in sdk) return context.skip(sdk.missing);
      const dir = path.join(scratch, 'official');
      await writeOfficialSdkFilter(dir, sdk.dir);
      const run = await deploy(dir, { config: 'greeting=hi' });
      assert.equal(run.build.state, 'succeeded', `${run.build.reason}\n${run.log}`);
      assert.match(run.log, /Compiling proxy-wasm v0\.2\.\d/);
      const hello = await invoke(run.versionId, { path: '/hello' });
      assert.equal(hello.outcome, 'ok', hello.message);
      assert.equal(hello.request.forwarded, false);
      assert.equal(hello.localResponse?.status, 200);
      assert.equal(hello.response?.source, 'local');
      assert.equal(hello.response?.body.text, 'Hello, World!\n');
      assert.ok(hello.response?.headers.some(([name, value]: [string, string]) => name === 'powered-by' && value === 'proxy-wasm'), JSON.stringify(hello.response));

      const passed = await invoke(run.versionId, { method: 'POST', path: '/other', body: { text: 'shout this' } });
      assert.equal(passed.outcome, 'ok', passed.message);
      assert.deepEqual(passed.request.changes.headers.added, [['x-official-sdk', 'request']]);
      assert.equal(passed.request.body.text, 'SHOUT THIS');
      assert.ok(passed.response?.headers.some(([name, value]: [string, string]) => name === 'x-official-sdk' && value === 'response'), JSON.stringify(passed.response));
      const messages = passed.logs.map((line: Json) => String(line.message)).join('\n');
      assert.match(messages, /official-sdk-filter: #\d+ saw \d+ request headers/);
      assert.match(messages, /official-sdk-filter: #\d+ completed \(HTTP\/[\d.]+\)/);

      const called = await invoke(run.versionId, { path: '/call' });
      assert.equal(called.outcome, 'ok', called.message);
      assert.deepEqual(called.httpCalls.map((entry: Json) => [entry.upstream, entry.path, entry.status]), [['echo', '/ping', 200]]);
      assert.deepEqual(called.request.changes.headers.added, [['x-call-status', '200']]);

      const ticked = await owner('POST', `/v1/versions/${run.versionId}/invoke`, { request: { path: '/t' }, ticks: 2 });
      assert.equal(ticked.status, 200, JSON.stringify(ticked.body));
      const tickLogs = ticked.body.logs.map((line: Json) => String(line.message)).filter((line: string) => line.includes('tick'));
      assert.deepEqual(tickLogs, ['official-sdk-filter: tick 1', 'official-sdk-filter: tick 2']);
      const state = await invoke(run.versionId, { path: '/state' });
      const stateLogs = state.logs.map((line: Json) => String(line.message)).join('\n');
      assert.match(stateLogs, /official-sdk-filter: configured with "greeting=hi"/);
      assert.match(stateLogs, /official-sdk-filter: visits \d+ stored true queued true counter Ok\(\d+\) clock set true/);
      assert.match(stateLogs, /official-sdk-filter: queue said "visited"/);
      // Every hostcall the SDK made on the way was implemented by the test bed.
      for (const answer of [hello, passed, called, ticked.body, state]) assert.deepEqual(answer.unimplemented, []);
    });
  });
}

async function mkdirp(dir: string): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  return dir;
}
