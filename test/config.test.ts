/**
 * The configuration loader (src/config.ts, decision 0027): defaults, the
 * precedence flags > environment > file > presets > default, errors that name
 * the setting, and that no other module reads the environment for settings.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, DEFAULT_TOOLCHAINS_DIR, loadConfig, SERVE_PRESETS, SETTINGS } from '../src/config.ts';
import { DEFAULT_ARCHIVE_LIMITS } from '../src/archive/limits.ts';
import { DEFAULT_DEPENDENCY_CACHE_LIMITS } from '../src/build-cache/store.ts';
import { DEFAULT_NPM_REGISTRY, loadFetchConfig } from '../src/fetch/config.ts';
import { DEFAULT_LIMITS } from '../src/sandbox/sandbox.ts';
import { loadTestbedConfig } from '../src/testbed/config.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(path.join(os.tmpdir(), 'kiln-config-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

let files = 0;
function configFile(content: unknown): string {
  const file = path.join(scratch, `kiln-${files++}.config.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

describe('configuration loader', () => {
  it('keeps the embedded defaults when nothing is set', () => {
    const config = loadConfig({}, {});
    assert.equal(config.port, 8080);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.dataDir, path.resolve('.kiln'));
    assert.deepEqual(config.objects, { kind: 'fs', root: path.resolve('.kiln', 'objects') });
    assert.deepEqual(config.buildLimits, DEFAULT_LIMITS);
    assert.deepEqual(config.archiveLimits, DEFAULT_ARCHIVE_LIMITS);
    assert.deepEqual(config.dependencyCache, DEFAULT_DEPENDENCY_CACHE_LIMITS);
    assert.equal(config.logMaxBytes, DEFAULT_LIMITS.logBytes + 64 * 1024);
    assert.equal(config.toolchains.rust, DEFAULT_TOOLCHAINS_DIR);
    assert.deepEqual(config.environments, ['staging', 'production']);
    assert.equal(config.testbed.maxHeaderCount, 100);
    assert.equal(config.testbed.maxHeaderBytes, 60 * 1024);
    assert.equal(config.testbed.prewarm, false);
    assert.equal(config.fetch.npmRegistry.href, DEFAULT_NPM_REGISTRY);
    // The sections alone give the same as the whole.
    assert.deepEqual(config.testbed, loadTestbedConfig({}));
    assert.deepEqual(config.fetch, loadFetchConfig({}));
  });

  it('reads every section from the environment it is given', () => {
    const config = loadConfig({}, { KILN_PORT: '9001', KILN_TESTBED_MAX_HEADERS: '42', KILN_NPM_REGISTRY: 'http://npm.internal:4873', KILN_JS_TOOLCHAIN_DIR: '/opt/js', KILN_SANDBOX_CACHE_DIR: '/tmp/kiln-helpers' });
    assert.equal(config.port, 9001);
    assert.equal(config.testbed.maxHeaderCount, 42);
    assert.equal(config.fetch.npmRegistry.href, 'http://npm.internal:4873/');
    assert.equal(config.toolchains.javascript, '/opt/js');
    assert.equal(config.testbed.componentToolchainDir, '/opt/js', 'the runner transpiles components with the same toolchain');
    assert.equal(config.sandboxCacheDir, '/tmp/kiln-helpers');
  });

  it("sets the dependency cache's bounds from the environment and the file", () => {
    const file = configFile({ build: { dependencyCache: { maxAgeDays: 3, unpackedMaxBytes: 0 } } });
    const config = loadConfig({ configFile: file }, { KILN_DEPENDENCY_CACHE_MAX_BYTES: String(2 * 1024 ** 3), KILN_DEPENDENCY_CACHE_OWNER_MAX_BYTES: '1048576', KILN_DEPENDENCY_CACHE_ENTRY_MAX_BYTES: '4096', KILN_DEPENDENCY_CACHE_UNPACKED_TREE_MAX_BYTES: '8192' });
    assert.deepEqual(config.dependencyCache, { maxBytes: 2 * 1024 ** 3, maxBytesPerNamespace: 1048576, maxEntryBytes: 4096, maxAgeMs: 3 * 24 * 3600_000, maxUnpackedBytes: 0, maxUnpackedTreeBytes: 8192 });
  });

  it('sets every archive limit, and they are what uploads and jobs use', () => {
    const config = loadConfig({}, { KILN_UPLOAD_MAX_BYTES: '2048', KILN_UPLOAD_MAX_UNPACKED_BYTES: '4096', KILN_UPLOAD_MAX_FILE_BYTES: '1000', KILN_UPLOAD_MAX_ENTRIES: '9', KILN_UPLOAD_MAX_PATH_BYTES: '100', KILN_UPLOAD_MAX_DEPTH: '4' });
    assert.deepEqual(config.archiveLimits, { maxCompressedBytes: 2048, maxTotalBytes: 4096, maxFileBytes: 1000, maxEntries: 9, maxPathLength: 100, maxDepth: 4 });
  });

  it('takes the file under the environment, and flags over both', () => {
    const file = configFile({ port: 9000, host: '0.0.0.0', testbed: { maxHeaderCount: 50, upstreams: ['api=https://api.internal'], moduleShape: { maxTableEntries: 5000 } }, fetch: { npmRegistry: 'https://npm.file/' }, build: { wallMs: 60_000 } });
    const fromFile = loadConfig({ configFile: file }, {});
    assert.equal(fromFile.port, 9000);
    assert.equal(fromFile.host, '0.0.0.0');
    assert.equal(fromFile.testbed.maxHeaderCount, 50);
    assert.equal(fromFile.testbed.upstreams.get('api')?.origin, 'https://api.internal');
    assert.equal(fromFile.testbed.moduleShape.maxTableEntries, 5000);
    assert.equal(fromFile.fetch.npmRegistry.href, 'https://npm.file/');
    assert.equal(fromFile.buildLimits.wallMs, 60_000);

    const envWins = loadConfig({ configFile: file }, { KILN_PORT: '9100', KILN_TESTBED_MAX_HEADERS: '60' });
    assert.equal(envWins.port, 9100);
    assert.equal(envWins.testbed.maxHeaderCount, 60);
    assert.equal(envWins.host, '0.0.0.0', 'what the environment does not set still comes from the file');

    const flagWins = loadConfig({ configFile: file, port: 9200 }, { KILN_PORT: '9100' });
    assert.equal(flagWins.port, 9200);

    const named = loadConfig({}, { KILN_CONFIG_FILE: file });
    assert.equal(named.testbed.maxHeaderCount, 50, 'KILN_CONFIG_FILE names the file too');
  });

  it('puts a command’s presets under the file and the environment', () => {
    assert.equal(loadConfig({ presets: SERVE_PRESETS }, {}).testbed.prewarm, true, 'kiln serve prewarms by default');
    assert.equal(loadConfig({ presets: SERVE_PRESETS }, { KILN_TESTBED_PREWARM: '0' }).testbed.prewarm, false);
    assert.equal(loadConfig({ presets: SERVE_PRESETS, configFile: configFile({ testbed: { prewarm: false } }) }, {}).testbed.prewarm, false);
  });

  it('refuses a bad value with an error that names the setting', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ KILN_TESTBED_MAX_HEADERS: '5' }, /^KILN_TESTBED_MAX_HEADERS: must be an integer 8–10000, got "5"$/],
      [{ KILN_TESTBED_MAX_HEADER_BYTES: 'lots' }, /^KILN_TESTBED_MAX_HEADER_BYTES: /],
      [{ KILN_PORT: '70000' }, /^KILN_PORT: /],
      [{ PORT: 'x' }, /^KILN_PORT \(PORT\): /],
      [{ KILN_SANDBOX: 'docker' }, /^KILN_SANDBOX: must be one of bubblewrap, gvisor/],
      [{ KILN_LOG_LEVEL: 'loud' }, /^KILN_LOG_LEVEL: /],
      [{ KILN_TESTBED_PREWARM: 'yes' }, /^KILN_TESTBED_PREWARM: must be true or false/],
      [{ KILN_TESTBED_UPSTREAMS: 'nonsense' }, /^KILN_TESTBED_UPSTREAMS: /],
      [{ KILN_ENVIRONMENTS: 'Prod!' }, /^KILN_ENVIRONMENTS: "Prod!" is not an environment name/],
      [{ KILN_NPM_REGISTRY: 'file:///etc/passwd' }, /^KILN_NPM_REGISTRY: the registry must be an http\(s\) URL$/],
      [{ KILN_FETCH_CA_FILE: 'relative.pem' }, /^KILN_FETCH_CA_FILE: /],
      [{ S3_ENDPOINT: 'http://ceph:7480' }, /S3_BUCKET is not/],
      [{ KILN_DEPENDENCY_CACHE_MAX_BYTES: '-1' }, /^KILN_DEPENDENCY_CACHE_MAX_BYTES: must be an integer ≥ 0/],
      [{ KILN_DEPENDENCY_CACHE_MAX_AGE_DAYS: '0' }, /^KILN_DEPENDENCY_CACHE_MAX_AGE_DAYS: must be an integer ≥ 1/],
      [{ KILN_UPLOAD_MAX_ENTRIES: '0' }, /^KILN_UPLOAD_MAX_ENTRIES: must be an integer ≥ 1/],
      // A chunk's seq holds the log's length in 32 bits (src/store/build-logs.ts).
      [{ KILN_BUILD_LOG_BYTES: String(1024 ** 3) }, /^KILN_BUILD_LOG_BYTES: must be an integer 4096–1073676288, got "1073741824"$/],
      [{ KILN_UPLOAD_MAX_PATH_BYTES: 'long' }, /^KILN_UPLOAD_MAX_PATH_BYTES: /],
    ];
    for (const [env, message] of cases) {
      assert.throws(() => loadConfig({}, env), (error: unknown) => error instanceof ConfigError && message.test(error.message), JSON.stringify(env));
    }
  });

  it('names the file key and the file when the bad value came from the file', () => {
    const file = configFile({ testbed: { maxHeaderCount: 3 } });
    assert.throws(() => loadConfig({ configFile: file }, {}), (error: unknown) => error instanceof ConfigError && error.message.startsWith(`KILN_TESTBED_MAX_HEADERS (testbed.maxHeaderCount in ${file}): must be an integer`));
  });

  it('refuses a file with an unknown key, a wrong shape or broken JSON', () => {
    const unknown = configFile({ testbed: { maxHeaderCuont: 50 } });
    assert.throws(() => loadConfig({ configFile: unknown }, {}), /"testbed\.maxHeaderCuont" is not a setting/);
    assert.throws(() => loadConfig({ configFile: configFile({ port: { value: 1 } }) }, {}), /"port\.value" is not a setting/);
    assert.throws(() => loadConfig({ configFile: configFile({ testbed: { upstreams: [1] } }) }, {}), /must be text, a number, a boolean or a list of text/);
    assert.throws(() => loadConfig({ configFile: configFile('{ "port": ') }, {}), /not valid JSON/);
    assert.throws(() => loadConfig({ configFile: configFile('[]') }, {}), /expected a JSON object/);
    assert.throws(() => loadConfig({ configFile: path.join(scratch, 'missing.json') }, {}), /cannot read it \(ENOENT\)/);
  });

  it('declares every setting once, with its own variable and file key', () => {
    const variables = SETTINGS.map((setting) => setting.env);
    const keys = SETTINGS.map((setting) => setting.key);
    assert.equal(new Set(variables).size, variables.length, 'no variable is declared twice');
    assert.equal(new Set(keys).size, keys.length, 'no file key is declared twice');
    for (const key of keys) assert.ok(!keys.some((other) => other.startsWith(`${key}.`)), `${key} is a leaf, not also a section`);
  });

  it('stops `kiln serve` on a bad value with one line naming the setting, not a stack trace', () => {
    const run = spawnSync(path.join(ROOT, 'bin/kiln'), ['serve', '--data-dir', path.join(scratch, 'data')], {
      cwd: scratch,
      env: { PATH: process.env.PATH ?? '', HOME: scratch, KILN_TESTBED_MAX_HEADERS: 'abc' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /error: KILN_TESTBED_MAX_HEADERS: must be an integer 8–10000, got "abc"/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(run.stdout, '', 'nothing started');
  });
});

/** Files allowed to touch process.env, and why (decision 0027). */
const ENVIRONMENT_READERS: Readonly<Record<string, string>> = {
  'src/config.ts': 'the loader of every server-side setting',
  'src/cli/environment.ts': "the loader of the CLI's client-side settings",
  'src/store/objects/s3-store.ts': "switches off an SDK notice (the SDK's own variable, no Kiln setting)",
  'src/testbed/runner/local.ts': 'picks the few variables a runner child may inherit (no setting; everything else, credentials included, stays behind)',
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return /\.(ts|mts|js|mjs)$/.test(name) ? [full] : [];
  });
}

describe('who reads the environment', () => {
  it('no module but the loaders reads process.env for a setting', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(path.join(ROOT, 'src'))) {
      const relative = path.relative(ROOT, file);
      // Run inside the fetch sandbox, in the environment Kiln builds for them.
      if (relative.startsWith('src/fetch/sandbox/')) continue;
      if (relative in ENVIRONMENT_READERS) continue;
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.forEach((line, index) => {
        if (/^\s*(\/\/|\*|\/\*)/.test(line)) return;
        // `{ ...process.env, … }` hands Kiln's own environment on to a trusted child process: inheriting, not reading.
        const reads = line.replace(/\.\.\.process\.env\b/g, '');
        if (/process\.env\b/.test(reads)) offenders.push(`${relative}:${index + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(offenders, [], 'read settings through src/config.ts (or src/cli/environment.ts) and pass them down');
  });
});
