/**
 * Optimized builds and the dependency cache through the whole pipeline:
 * upload → queue → a real worker (bubblewrap) → evaluator → both variants
 * downloaded and run side by side in V8. Nothing here asserts on time: the
 * numbers are the bench's business (bench/optimize.ts).
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { after, before, describe, it } from 'node:test';
import { packDirectory } from '../../src/archive/pack.ts';
import { WIZER_INIT_EXPORT } from '../../src/optimize/wizer.ts';
import { createSandbox } from '../../src/sandbox/index.ts';
import { inspectModule } from '../../src/wasm/inspect.ts';
import { startWorker, type RunningWorker } from '../../src/worker/worker.ts';
import { versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { buildLog, EXAMPLES, waitForBuild } from '../support/workers.ts';
import { runFilterExchange } from '../languages/wasm-hosts.ts';
import { runWasiCommand, type CommandResult } from '../support/wasi-run.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

let t: TestKiln;
let workers: RunningWorker;
let workRoot: string;
let scratch: string;

before(async () => {
  t = await startTestKiln();
  // A work root of our own: the dependency cache lives under it and goes with it.
  workRoot = await mkdtemp(path.join(os.tmpdir(), 'kiln-optimize-jobs-'));
  await chmod(workRoot, 0o755);
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-optimize-src-'));
  workers = startWorker({ apiUrl: t.url, token: t.workerToken, concurrency: 1, sandbox: createSandbox('bubblewrap'), workRoot, logger: pino({ level: 'warn' }), heartbeatMs: 500 });
});

after(async () => {
  await workers.stop();
  await t.close();
  await rm(workRoot, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

async function createApp(token: string, name: string): Promise<string> {
  const answer = await call<Json>(t.url, 'POST', '/v1/applications', { token, json: { name } });
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  return answer.body.id;
}

/** Uploads a directory as the CLI would and waits for its build to end successfully. */
async function build(token: string, appId: string, dir: string, metadata: Record<string, unknown>): Promise<{ version: Json; build: Json; log: string }> {
  const { archive } = await packDirectory(dir);
  const answer = await call<Json>(t.url, 'POST', `/v1/applications/${appId}/versions`, { token, body: versionForm(metadata, archive) });
  assert.equal(answer.status, 202, JSON.stringify(answer.body));
  const done = await waitForBuild({ ...t, ownerToken: token }, answer.body.build.id);
  const log = await buildLog({ ...t, ownerToken: token }, done.id);
  assert.equal(done.state, 'succeeded', `${done.reason}\n${log}`);
  return { version: answer.body.version, build: done, log };
}

async function variant(token: string, versionId: string, name: 'original' | 'optimized'): Promise<Uint8Array> {
  const answer = await call(t.url, 'GET', `/v1/versions/${versionId}/artifact?variant=${name}`, { token });
  assert.equal(answer.status, 200, `${name}: ${answer.raw.toString()}`);
  return new Uint8Array(answer.raw);
}

function step(build: Json, name: string): Json | undefined {
  return (build.details.optimize.steps as Json[]).find((entry) => entry.name === name);
}

function assertMeasured(startup: Json): void {
  for (const phase of ['compileMs', 'instantiateMs', 'initMs', 'firstCallMs', 'totalMs']) assert.equal(typeof startup[phase], 'number', JSON.stringify(startup));
}

async function runBoth(original: Uint8Array, optimized: Uint8Array, input: string): Promise<[CommandResult, CommandResult]> {
  return [await runWasiCommand(original, input), await runWasiCommand(optimized, input)];
}

describe('optimized variants behave exactly like the originals', { timeout: 15 * 60_000 }, () => {
  let appId: string;
  before(async () => {
    appId = await createApp(t.ownerToken, 'optimized');
  });

  it('pre-initializes the init-heavy function with Wizer and answers the same', async () => {
    const { version, build: done, log } = await build(t.ownerToken, appId, path.join(EXAMPLES, 'init-heavy-function'), { version: '1.0.0' });
    assert.equal(step(done, 'strip')?.status, 'applied');
    assert.equal(step(done, 'wizer')?.status, 'applied', log);
    assert.equal(step(done, 'wasm-opt')?.status, 'applied');
    assert.equal(done.details.optimize.served, 'optimized');
    const { original: originalVariant, optimized: optimizedVariant } = done.details.variants;
    assertMeasured(originalVariant.startup);
    assertMeasured(optimizedVariant.startup);
    assert.ok(optimizedVariant.bytes < originalVariant.bytes);
    assert.equal(done.artifacts.optimized.size, optimizedVariant.bytes);
    assert.match(log, /kiln: optimize: wizer applied/);

    const original = await variant(t.ownerToken, version.id, 'original');
    const optimized = await variant(t.ownerToken, version.id, 'optimized');
    assert.equal(original.length, originalVariant.bytes);
    // The mechanism, not a timing (start-up times belong to bench/): Wizer ran the
    // init at build time and removed its export, so no start-up can run it again.
    const exportNames = (bytes: Uint8Array) => inspectModule(bytes, { validate: false }).exports.map((entry) => entry.name);
    assert.ok(exportNames(original).includes(WIZER_INIT_EXPORT));
    assert.ok(!exportNames(optimized).includes(WIZER_INIT_EXPORT), 'Wizer removed the init work from start-up');
    for (const input of ['{"from": "depot-3", "to": "depot-250"}', '{"from": "depot-399", "to": "depot-0"}', '{"from": "depot-1", "to": "nowhere"}', 'not json']) {
      const [before, after] = await runBoth(original, optimized, input);
      assert.deepEqual(after, before, `same answer for ${input}`);
    }
    const [answer] = await runBoth(original, optimized, '{"from": "depot-3", "to": "depot-250"}');
    assert.match(answer.stdout, /^\{"from":"depot-3","to":"depot-250","cost_cents":\d+,"via":"depot-\d+","currency":"EUR"\}\n$/);
  });

  it('optimizes a Rust filter that makes the same host calls', async () => {
    const { version, build: done } = await build(t.ownerToken, appId, path.join(EXAMPLES, 'rust-filter'), { version: '2.0.0' });
    assert.equal(step(done, 'wizer')?.status, 'skipped');
    assert.equal(step(done, 'wasm-opt')?.status, 'applied');
    assertMeasured(done.details.variants.optimized.startup);
    const before = await runFilterExchange(await variant(t.ownerToken, version.id, 'original'));
    const after = await runFilterExchange(await variant(t.ownerToken, version.id, 'optimized'));
    assert.deepEqual(after.calls, before.calls);
    assert.deepEqual(after.logs, before.logs);
    assert.deepEqual(after.headersAdded, before.headersAdded);
    assert.ok(before.headersAdded.length > 0);
  });

  it('falls back to a build without Wizer, with the reason in the log, when the init traps', async () => {
    const dir = path.join(scratch, 'c-trap');
    await mkdir(path.join(dir, 'src'), { recursive: true });
    await writeFile(
      path.join(dir, 'src', 'main.c'),
      [
        '#include <stdio.h>',
        '/* Wizer runs this at build time: it traps, so Wizer cannot snapshot the module. */',
        '__attribute__((export_name("wizer-initialize"))) void init(void) { __builtin_trap(); }',
        'int main(void) { int c; while ((c = getchar()) != EOF) putchar(c == \'a\' ? \'A\' : c); return 0; }',
        '',
      ].join('\n'),
    );
    const { version, build: done, log } = await build(t.ownerToken, appId, dir, { version: '3.0.0' });
    assert.equal(step(done, 'wizer')?.status, 'failed');
    assert.match(step(done, 'wizer')?.reason, /unreachable|trap/i);
    assert.match(log, /kiln: optimize: wizer failed, continuing without it: .*(unreachable|trap)/i);
    assert.equal(done.details.optimize.served, 'optimized', 'strip and wasm-opt still apply');
    const [before, after] = await runBoth(await variant(t.ownerToken, version.id, 'original'), await variant(t.ownerToken, version.id, 'optimized'), 'banana');
    assert.deepEqual(after, before);
    assert.equal(before.stdout, 'bAnAnA');
  });
});

describe('the Rust dependency cache', { timeout: 15 * 60_000 }, () => {
  const project = (line: string) => ({
    'Cargo.toml': '[package]\nname = "cached"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nitoa = "1"\n',
    'src/main.rs': `fn main() {\n    let mut buffer = itoa::Buffer::new();\n    println!("${line} {}", buffer.format(42));\n}\n`,
  });

  async function writeProject(name: string, files: Record<string, string>): Promise<string> {
    const dir = path.join(scratch, name);
    for (const [file, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
      await writeFile(path.join(dir, file), content);
    }
    return dir;
  }

  it('reuses compiled dependencies after a one-line change, for the same owner only', async () => {
    const appA = await createApp(t.ownerToken, 'cached-a');
    const first = await build(t.ownerToken, appA, await writeProject('v1', project('first')), { version: '1.0.0' });
    assert.equal(first.build.details.cache.hit, false);
    assert.equal(first.build.details.cache.saved, true, first.log);
    assert.match(first.log, /Compiling itoa/);

    const second = await build(t.ownerToken, appA, await writeProject('v2', project('second')), { version: '1.0.1' });
    assert.equal(second.build.details.cache.hit, true, second.log);
    assert.equal(second.build.details.cache.key, first.build.details.cache.key);
    assert.equal(second.build.details.cache.unpacked, true, 'the saved entry was kept unpacked on the worker and copied in (decision 0038)');
    assert.doesNotMatch(second.log, /Compiling itoa/, 'the dependency came from the cache');
    assert.match(second.log, /Compiling cached/, 'the changed crate was rebuilt');
    const output = await runWasiCommand(await variant(t.ownerToken, second.version.id, 'original'), '');
    assert.equal(output.stdout, 'second 42\n', 'the one-line change is in the module');

    const owner = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: 'someone-else' } });
    assert.equal(owner.status, 201, JSON.stringify(owner.body));
    const tokenB = owner.body.token as string;
    const appB = await createApp(tokenB, 'cached-b');
    const other = await build(tokenB, appB, await writeProject('b', project('second')), { version: '1.0.0' });
    assert.equal(other.build.details.cache.hit, false, 'another owner never gets this owner\'s cache');
    assert.equal(other.build.details.cache.key, first.build.details.cache.key, 'same inputs, same key: only the namespace differs');
    assert.match(other.log, /Compiling itoa/);
  });
});
