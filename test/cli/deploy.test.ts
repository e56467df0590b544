/**
 * `kiln deploy` of the real examples, built by real sandboxed workers
 * (bubblewrap) against a real API. Needs root, bubblewrap and the Debian
 * toolchains (BRIEF §6); skipped with the reason when the sandbox is unusable.
 *
 * Real builds take seconds each on 2 cores, so the fast examples run by
 * default and rust-function (serde from the offline registry, ~20 s) only
 * with KILN_TEST_ALL_EXAMPLES=1.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createSandbox } from '../../src/sandbox/index.ts';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import { startWorker, type RunningWorker } from '../../src/worker/worker.ts';
import { startTestKiln, type TestKiln } from '../support/kiln.ts';
import { cliPlace, EXAMPLES, type CliPlace, type Json } from './helpers.ts';

const BUILD_TIMEOUT_MS = 5 * 60_000;

async function usableSandbox(stateDir: string): Promise<Sandbox | string> {
  try {
    const sandbox = createSandbox('bubblewrap', { stateDir });
    await sandbox.check();
    return sandbox;
  } catch (error) {
    return `the bubblewrap sandbox is unusable here: ${error instanceof Error ? error.message : String(error)}`;
  }
}

// Sandbox uids must traverse the work root and its parents: 0755, outside private dirs.
const workRoot = await mkdtemp(path.join(os.tmpdir(), 'kiln-cli-deploy-'));
await chmod(workRoot, 0o755);
const sandbox = await usableSandbox(path.join(workRoot, 'sandbox'));
const skip = typeof sandbox === 'string' ? sandbox : false;

describe('kiln deploy with real workers', { skip }, () => {
  let t: TestKiln;
  let worker: RunningWorker;
  let cli: CliPlace;

  before(async () => {
    t = await startTestKiln();
    if (typeof sandbox === 'string') return;
    worker = startWorker({ apiUrl: t.url, token: t.workerToken, concurrency: 1, sandbox, workRoot: path.join(workRoot, 'jobs'), logger: pino({ level: 'warn' }) });
    cli = await cliPlace(t);
  });
  after(async () => {
    await worker?.stop();
    await cli?.cleanup();
    await t?.close();
    await rm(workRoot, { recursive: true, force: true });
  });

  const deploy = (example: string, args: string[] = []) => cli.run(['deploy', path.join(EXAMPLES, example), '--yes', ...args], { timeoutMs: BUILD_TIMEOUT_MS });

  it('deploys c-function: streams the compiler step, summarizes, and the download matches the sha256', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const result = await deploy('c-function', ['--version', '1.0.0']);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /clang --target=wasm32-wasi/, 'the live log shows the compile step');
    assert.match(result.stdout, /✔ Deployed c-function 1\.0\.0: build #1 succeeded/);
    assert.match(result.stdout, /language\s+c · wasi-command/);
    // One line per variant; with several, the one downloads get is marked.
    const artifactLines = result.stdout.split('\n').filter((line) => /(optimized|original)\s+[\d.]+ \w?i?B.*sha256 [0-9a-f]{64}/.test(line));
    assert.ok(artifactLines.length > 0, `the summary names the artifact's sha256:\n${result.stdout}`);
    const served = artifactLines.find((line) => line.includes('← served')) ?? artifactLines[0] ?? '';
    const sha256 = /sha256 ([0-9a-f]{64})/.exec(served)?.[1];
    assert.match(result.stdout, /built in\s+.*clang/);
    assert.match(result.stderr, /Packed 1 file/);

    const saved = await cli.json(['download', 'c-function@1.0.0', '-o', 'fn.wasm']);
    const bytes = await readFile(path.join(cli.home, 'fn.wasm'));
    assert.equal(createHash('sha256').update(bytes).digest('hex'), saved.sha256);
    assert.equal(saved.sha256, sha256);
    assert.ok(WebAssembly.validate(bytes), 'a valid module');

    const invoked = await cli.run(['invoke', 'c-function@1.0.0', '--input-file', '-'], { input: 'hello kiln\n' });
    assert.equal(invoked.code, 0, invoked.stderr);
    assert.match(invoked.stdout, /^HELLO KILN\n/, "the function's stdout, as it is");
    assert.match(invoked.stderr, /── ok · exit 0/);
  });

  it('fails rust-compile-error with exit 1, the compiler error and the reason', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const result = await deploy('rust-compile-error');
    assert.equal(result.code, 1, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /error\[E0308\]: mismatched types/, 'the compiler error is shown');
    assert.match(result.stdout, /src\/main\.rs:4/);
    assert.match(result.stdout, /✖ Build #1 failed: .*E0308/, 'the reason is in the summary');
    assert.match(result.stdout, /fix the error above/);
    assert.doesNotMatch(result.stdout, /✔ Deployed/);
  });

  it('deploys c-filter with --json: a proxy-wasm filter (kind from kiln.toml), summary matching the API', { timeout: BUILD_TIMEOUT_MS }, async () => {
    const result = await deploy('c-filter', ['--json', '--version', '1.0.0']);
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout) as Json;
    assert.equal(summary.build.state, 'succeeded');
    assert.equal(summary.version.kind, 'proxy-wasm');
    assert.equal(summary.build.kind, 'proxy-wasm');
    assert.equal(summary.artifact.sha256, summary.build.artifacts[summary.artifact.variant].sha256);
    assert.match(result.stderr, /clang/, 'with --json the live log goes to stderr');
    const build = await cli.json(['builds', 'show', summary.build.id]);
    assert.deepEqual(build, summary.build);

    const invoked = await cli.run(['invoke', summary.version.id, '--path', '/hello', '-H', 'accept: text/plain']);
    assert.equal(invoked.code, 0, invoked.stderr);
    assert.match(invoked.stdout, /Request forwarded to echo:\n {2}GET \/hello\n {4}accept: text\/plain\n {2}\+ x-kiln-c: hello/);
    assert.match(invoked.stdout, /Filter log:/);
    const simulated = await cli.json(['invoke', summary.version.id, '-X', 'POST', '-d', 'ping', '--response-status', '503', '--response-body', 'down']);
    assert.equal(simulated.outcome, 'ok');
    assert.deepEqual(simulated.request.changes.headers.added, [['x-kiln-c', 'hello']]);
    assert.equal(simulated.upstream.name, 'simulated');
    assert.equal(simulated.response.status, 503);
    const wrongKind = await cli.run(['invoke', summary.version.id, '--input', 'x']);
    assert.equal(wrongKind.code, 1);
    assert.match(wrongKind.stderr, /this version is a proxy-wasm; input applies only to the other kind/);
  });

  const examples = ['rust-filter', 'assemblyscript-filter', ...(process.env.KILN_TEST_ALL_EXAMPLES ? ['rust-function'] : [])];
  for (const example of examples) {
    it(`deploys ${example}`, { timeout: BUILD_TIMEOUT_MS }, async () => {
      const result = await deploy(example, ['--json']);
      assert.equal(result.code, 0, result.stderr);
      const summary = JSON.parse(result.stdout) as Json;
      assert.equal(summary.build.state, 'succeeded');
      assert.equal(summary.application.name, example);
      assert.equal(summary.version.version, '0.1.0', 'from the manifest');
      assert.match(summary.artifact.sha256, /^[0-9a-f]{64}$/);
    });
  }
});
