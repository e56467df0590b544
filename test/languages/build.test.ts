/**
 * Every example built through runBuild in the bubblewrap sandbox, then the
 * module checked by running it in V8 (never natively on the host). Needs
 * root, bubblewrap and the Debian toolchains (see BRIEF §6).
 */
import assert from 'node:assert/strict';
import { chmod, cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_LIMITS, createSandbox, createWorkDir } from '../../src/sandbox/index.ts';
import type { Sandbox, SandboxLimits } from '../../src/sandbox/sandbox.ts';
import type { AppKind, LanguageId } from '../../src/languages/language.ts';
import { runBuild, type BuildOutcome } from '../../src/worker/build-job.ts';
import { writeHostileConfigProject, writeStaleLockProject, writeVendoredProject } from './fixtures.ts';
import { runWasiCommand } from '../support/wasi-run.ts';
import { runFilterExchange } from './wasm-hosts.ts';

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
/** Rust with serde_derive takes ~30 s on 2 cores; leave room for a slow CI machine. */
const BUILD_TIMEOUT = 10 * 60_000;

interface BuildRun {
  outcome: BuildOutcome;
  log: string;
  module?: Uint8Array<ArrayBuffer>;
}

interface BuildRequest {
  /** An example name, or a function writing the source into the given directory. */
  source: string | ((sourceDir: string) => Promise<void>);
  language?: LanguageId;
  kind?: AppKind;
  limits?: Partial<SandboxLimits>;
  signal?: AbortSignal;
}

let sandbox: Sandbox;
let scratch: string;

before(async () => {
  sandbox = await createSandbox('bubblewrap');
  await sandbox.check();
  scratch = await mkdtemp(join(tmpdir(), 'kiln-build-test-'));
  // bwrap resolves the work dir's path, so the sandbox uid needs search permission on its parents.
  await chmod(scratch, 0o755);
});

after(async () => {
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

const timings: string[] = [];
after(() => console.log(`build times: ${timings.join(', ')}`));

async function build(request: BuildRequest): Promise<BuildRun> {
  // A size-capped tmpfs, as the worker uses: the sandbox then needs no staging copies.
  const workDir = await createWorkDir(scratch, { ...DEFAULT_LIMITS, ...request.limits }.diskBytes);
  const jobDir = workDir.path;
  const sourceDir = join(jobDir, 'src');
  if (typeof request.source === 'string') {
    // target/ and node_modules/ of a developer's local build are not part of an upload.
    await cp(join(EXAMPLES, request.source), sourceDir, { recursive: true, filter: (path) => !/\/(target|node_modules)$/.test(path) });
  } else {
    await request.source(sourceDir);
  }
  const chunks: Buffer[] = [];
  const artifactPath = join(jobDir, '..', `${jobDir.split('/').pop() ?? 'job'}.wasm`);
  const started = Date.now();
  try {
    const outcome = await runBuild({
      jobDir,
      sandbox,
      language: request.language,
      kind: request.kind,
      limits: request.limits,
      signal: request.signal,
      onLog: (chunk) => chunks.push(chunk),
      artifactPath,
    });
    const name = typeof request.source === 'string' ? request.source : 'fixture';
    timings.push(`${name} ${outcome.outcome} ${Date.now() - started} ms`);
    const log = Buffer.concat(chunks).toString('utf8');
    const module = outcome.artifactPath === undefined ? undefined : new Uint8Array(await readFile(outcome.artifactPath));
    return { outcome, log, module };
  } finally {
    await workDir.dispose();
  }
}

function assertSucceeded(run: BuildRun): Uint8Array<ArrayBuffer> {
  assert.equal(run.outcome.outcome, 'succeeded', `${run.outcome.reason ?? ''}\n${run.log}`);
  assert.ok(run.module !== undefined);
  assert.ok(WebAssembly.validate(run.module), 'the artifact is valid Wasm');
  return run.module;
}

describe('examples build in the sandbox and behave', { timeout: BUILD_TIMEOUT }, () => {
  test('rust-filter: detected as a Rust proxy-wasm filter, adds x-kiln to the response', async () => {
    const run = await build({ source: 'rust-filter' });
    const module = assertSucceeded(run);
    assert.equal(run.outcome.language, 'rust');
    assert.equal(run.outcome.kind, 'proxy-wasm');
    assert.deepEqual(run.outcome.stages.map((stage) => stage.name), ['detect', 'prepare', 'cargo build', 'collect']);
    const host = await runFilterExchange(module);
    assert.deepEqual(host.headersAdded, [{ map: 2, key: 'x-kiln', value: 'hello' }]);
    assert.ok(host.logs.some((line) => line.includes('rust-filter: added x-kiln')), host.logs.join('\n'));
  });

  test('rust-function: serde_json from the offline registry, JSON in and out', async () => {
    const run = await build({ source: 'rust-function' });
    const module = assertSucceeded(run);
    assert.equal(run.outcome.kind, 'wasi-command');
    const result = await runWasiCommand(module, '{"name": "Ada"}');
    assert.equal(result.exitCode, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { greeting: 'Hello, Ada!', length: 3 });
  });

  test('c-function: upper-cases stdin', async () => {
    const run = await build({ source: 'c-function' });
    const module = assertSucceeded(run);
    assert.equal(run.outcome.language, 'c');
    assert.equal(run.outcome.kind, 'wasi-command');
    const result = await runWasiCommand(module, 'hello kiln\n');
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout, 'HELLO KILN\n\n[11 bytes]\n');
  });

  test('c-filter: a reactor exporting its proxy_on_* functions, adds a request header', async () => {
    const run = await build({ source: 'c-filter' });
    const module = assertSucceeded(run);
    assert.equal(run.outcome.kind, 'proxy-wasm');
    const exports = WebAssembly.Module.exports(new WebAssembly.Module(module)).map((entry) => entry.name);
    assert.ok(exports.includes('_initialize') && !exports.includes('_start'), exports.join(', '));
    assert.ok(exports.includes('proxy_on_request_headers'));
    const host = await runFilterExchange(module);
    assert.deepEqual(host.headersAdded, [{ map: 0, key: 'x-kiln-c', value: 'hello' }]);
    assert.ok(host.logs.includes('c-filter: started'));
  });

  test('assemblyscript-filter: Kiln’s own asc, no env.abort import, adds x-kiln', async () => {
    const run = await build({ source: 'assemblyscript-filter' });
    const module = assertSucceeded(run);
    assert.equal(run.outcome.language, 'assemblyscript');
    assert.equal(run.outcome.kind, 'proxy-wasm');
    const imports = WebAssembly.Module.imports(new WebAssembly.Module(module)).map((entry) => `${entry.module}.${entry.name}`);
    assert.ok(!imports.includes('env.abort'), imports.join(', '));
    const host = await runFilterExchange(module);
    assert.deepEqual(host.headersAdded, [{ map: 2, key: 'x-kiln', value: 'hello' }]);
    assert.ok(host.logs.includes('assemblyscript-filter: started'), host.logs.join('\n'));
  });

  test('rust-compile-error: failed, with rustc’s error in the log and as the reason', async () => {
    const run = await build({ source: 'rust-compile-error' });
    assert.equal(run.outcome.outcome, 'failed', run.log);
    assert.match(run.outcome.reason ?? '', /^error\[E0308\]: mismatched types \(src\/main\.rs:\d+:\d+\)$/);
    assert.match(run.log, /error\[E0308\]: mismatched types/);
    assert.match(run.log, /==> \[1\/1\] cargo build/);
    assert.equal(run.outcome.artifactPath, undefined);
  });
});

describe('declared language and kind', { timeout: BUILD_TIMEOUT }, () => {
  test('a declared language and kind are used as given', async () => {
    const run = await build({ source: 'c-function', language: 'c', kind: 'wasi-command' });
    assertSucceeded(run);
    assert.match(run.log, /language c \(declared\), kind wasi-command \(declared\)/);
  });

  test('an upload with nothing recognisable fails with a clear reason, without running anything', async () => {
    const run = await build({
      source: async (dir) => {
        await cp(join(EXAMPLES, 'c-function', 'src', 'main.c'), join(dir, 'notes', 'main.txt'));
      },
    });
    assert.equal(run.outcome.outcome, 'failed');
    assert.match(run.outcome.reason ?? '', /^could not detect the language: no Cargo\.toml/);
    assert.deepEqual(run.outcome.stages.map((stage) => stage.name), ['detect']);
  });
});

describe('Rust offline dependencies', { timeout: BUILD_TIMEOUT }, () => {
  test('an uploaded .cargo/config.toml pointing at a network registry is removed and ignored', async () => {
    const run = await build({ source: writeHostileConfigProject });
    const module = assertSucceeded(run);
    assert.match(run.log, /removed \.cargo\/config\.toml from the upload/);
    assert.match(run.log, /removed rust-toolchain\.toml from the upload/);
    assert.equal((await runWasiCommand(module, 'abc')).stdout, '3 bytes\n');
  });

  test('vendored crates work together with the registry', async () => {
    const run = await build({ source: writeVendoredProject });
    const module = assertSucceeded(run);
    assert.match(run.log, /using 1 vendored crate\(s\) from vendor\//);
    assert.match(run.log, /Compiling kiln-shout v0\.1\.0/);
    assert.equal((await runWasiCommand(module, 'hi')).stdout, 'HI! (2 bytes)\n');
  });

  test('a Cargo.lock that does not resolve offline is regenerated, and the log says so', async () => {
    const run = await build({ source: writeStaleLockProject });
    assertSucceeded(run);
    assert.match(run.log, /Cargo\.lock does not resolve against the offline registry; deleting it and resolving again/);
  });
});

describe('limits and cancellation', { timeout: BUILD_TIMEOUT }, () => {
  test('a build past its wall limit fails naming the limit', async () => {
    const run = await build({ source: 'rust-function', limits: { wallMs: 1500 } });
    assert.equal(run.outcome.outcome, 'failed', run.log);
    assert.equal(run.outcome.reason, 'time limit of 1.5 s exceeded');
  });

  test('aborting the signal cancels a running build', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 1500);
    const run = await build({ source: 'rust-function', signal: controller.signal });
    assert.equal(run.outcome.outcome, 'cancelled', run.log);
  });
});
