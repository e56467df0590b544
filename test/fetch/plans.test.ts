/**
 * The host-side half of the fetch phase, without a sandbox: configuration,
 * what the npm and cargo planners accept and refuse, AssemblyScript's
 * preparation around a lock file and its choice of compiler options.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FetchConfigError, loadFetchConfig } from '../../src/fetch/config.ts';
import { lockedRegistryCrates } from '../../src/languages/rust/cargo-fetch.ts';
import { npmFailureReason, npmFetchPlan } from '../../src/languages/npm-fetch.ts';
import { detectLanguage, createLanguages } from '../../src/languages/index.ts';
import type { BuildContext } from '../../src/languages/language.ts';
import { pinnedCommand, pinnedCompiler } from '../../src/languages/assemblyscript/pinned-compiler.ts';

const EXAMPLE = new URL('../../examples/assemblyscript-proxy-runtime/', import.meta.url).pathname;
const config = loadFetchConfig({});
const scratch = await mkdtemp(join(tmpdir(), 'kiln-fetch-plans-'));
after(() => rm(scratch, { recursive: true, force: true }));

let counter = 0;
async function project(files: Record<string, string>): Promise<string> {
  const dir = join(scratch, `p${counter++}`);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  await mkdir(dir, { recursive: true });
  return dir;
}

function contextFor(jobDir: string): BuildContext & { lines: string[] } {
  const lines: string[] = [];
  return { jobDir, sourceDir: join(jobDir, 'src'), kind: 'proxy-wasm', log: (line) => lines.push(line), lines };
}

const lock = (dependencies: Record<string, string>, version = 3) => JSON.stringify({ lockfileVersion: version, packages: { '': { dependencies } } });

describe('fetch configuration', () => {
  it('defaults to the public npm registry and no cargo mirror', () => {
    assert.equal(config.npmRegistry.href, 'https://registry.npmjs.org/');
    assert.equal(config.cargoRegistry, undefined);
    assert.equal(config.wallMs, 300_000);
  });

  it('reads the registries, strips sparse+, and refuses nonsense', () => {
    const custom = loadFetchConfig({ KILN_NPM_REGISTRY: 'http://npm.internal:4873', KILN_CARGO_REGISTRY: 'sparse+https://crates.internal/index', KILN_FETCH_MAX_DOWNLOAD_BYTES: '1000' });
    assert.equal(custom.npmRegistry.href, 'http://npm.internal:4873/');
    assert.equal(custom.cargoRegistry?.href, 'https://crates.internal/index/');
    assert.equal(custom.egress.downloadBytes, 1000);
    assert.throws(() => loadFetchConfig({ KILN_NPM_REGISTRY: 'file:///etc/passwd' }), FetchConfigError);
    assert.throws(() => loadFetchConfig({ KILN_NPM_REGISTRY: 'https://user:secret@npm.internal/' }), FetchConfigError);
    assert.throws(() => loadFetchConfig({ KILN_FETCH_TIMEOUT_MS: '-1' }), FetchConfigError);
    assert.throws(() => loadFetchConfig({ KILN_FETCH_CA_FILE: 'relative.pem' }), FetchConfigError);
  });
});

describe('the npm fetch plan', () => {
  it('is npm ci with scripts off, against the configured registry, keyed by the lock file', async () => {
    const plan = await npmFetchPlan(EXAMPLE, config);
    assert.ok(plan);
    assert.deepEqual(plan.command.slice(2, 4), ['ci', '--ignore-scripts']);
    assert.ok(plan.command.includes('--registry=https://registry.npmjs.org/'));
    assert.deepEqual(plan.allowed, [{ protocol: 'https:', hostname: 'registry.npmjs.org', port: 443 }]);
    assert.deepEqual(plan.outputs, ['node_modules']);
    const other = await npmFetchPlan(EXAMPLE, loadFetchConfig({ KILN_NPM_REGISTRY: 'http://127.0.0.1:4873/' }));
    assert.notEqual(other?.cacheKey, plan.cacheKey, 'another registry is another cache entry');
  });

  it('has nothing to fetch without dependencies, or with only the compiler Kiln provides and no lock', async () => {
    assert.equal(await npmFetchPlan(await project({ 'package.json': '{"name":"x"}' }), config), undefined);
    assert.equal(await npmFetchPlan(await project({}), config), undefined);
    const onlyCompiler = await project({ 'package.json': JSON.stringify({ devDependencies: { assemblyscript: '^0.28.0' } }) });
    assert.equal(await npmFetchPlan(onlyCompiler, config, { providedByPlatform: ['assemblyscript'] }), undefined);
    await assert.rejects(npmFetchPlan(onlyCompiler, config), /no package-lock\.json/);
  });

  it('refuses a missing, outdated, mismatched or malformed lock file with a sentence', async () => {
    const manifest = JSON.stringify({ dependencies: { a: '1.0.0' }, devDependencies: { b: '^2.0.0' } });
    await assert.rejects(npmFetchPlan(await project({ 'package.json': manifest }), config), /declares dependencies \(a, b\) but there is no package-lock\.json: run `npm install`/);
    await assert.rejects(npmFetchPlan(await project({ 'package.json': manifest, 'package-lock.json': lock({ a: '1.0.0', b: '^2.0.0' }, 1) }), config), /lockfileVersion 1: Kiln needs version 2 or 3/);
    await assert.rejects(npmFetchPlan(await project({ 'package.json': manifest, 'package-lock.json': lock({ a: '1.0.0' }) }), config), /b is not in the lock file/);
    await assert.rejects(npmFetchPlan(await project({ 'package.json': manifest, 'package-lock.json': lock({ a: '1.0.1', b: '^2.0.0' }) }), config), /a is "1\.0\.0" in package\.json but "1\.0\.1" in the lock file/);
    await assert.rejects(npmFetchPlan(await project({ 'package.json': manifest, 'package-lock.json': lock({ a: '1.0.0', b: '^2.0.0', c: '1' }) }), config), /the lock file names c, which package\.json does not/);
    await assert.rejects(npmFetchPlan(await project({ 'package.json': manifest, 'package-lock.json': '{oops' }), config), /package-lock\.json is not valid JSON/);
    await assert.rejects(npmFetchPlan(await project({ 'package.json': '[1]' }), config), /package\.json must hold a JSON object/);
  });

  it('finds the line of npm output that says what went wrong', () => {
    const output = 'npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/nope - Not found\nnpm error A complete log of this run can be found in: /x\n';
    assert.equal(npmFailureReason(output), '404 Not Found - GET https://registry.npmjs.org/nope - Not found');
    assert.equal(npmFailureReason('npm ERR! code ELOCKVERIFY\nnpm ERR! Errors were found in your package-lock.json\n'), 'Errors were found in your package-lock.json');
    assert.equal(npmFailureReason('all fine\n'), undefined);
  });
});

describe('AssemblyScript around a lock file', () => {
  it('detects the official-SDK example as an AssemblyScript filter', async () => {
    assert.deepEqual(await detectLanguage(EXAMPLE), { language: 'assemblyscript', kind: 'proxy-wasm' });
  });

  it('removes the uploaded node_modules and .npmrc when there is a lock (the fetch installs what it names)', async () => {
    const jobDir = join(scratch, 'as-lock');
    await project({});
    await mkdir(join(jobDir, 'src', 'assembly'), { recursive: true });
    await mkdir(join(jobDir, 'kiln'), { recursive: true });
    await writeFile(join(jobDir, 'src', 'assembly', 'index.ts'), '');
    await writeFile(join(jobDir, 'src', 'package.json'), await readFile(join(EXAMPLE, 'package.json')));
    await writeFile(join(jobDir, 'src', 'package-lock.json'), await readFile(join(EXAMPLE, 'package-lock.json')));
    await writeFile(join(jobDir, 'src', '.npmrc'), 'registry=http://evil.example/\ngit=/build/src/evil.sh\n');
    await mkdir(join(jobDir, 'src', 'node_modules', 'left-pad'), { recursive: true });
    const context = contextFor(jobDir);
    await createLanguages().assemblyscript.prepare(context);
    await assert.rejects(lstat(join(jobDir, 'src', 'node_modules')), { code: 'ENOENT' });
    await assert.rejects(lstat(join(jobDir, 'src', '.npmrc')), { code: 'ENOENT' });
  });

  it('runs the locked compiler with the abort handler named in package.json scripts, and refuses an escaping bin path', async () => {
    const dir = await project({
      'src/package.json': JSON.stringify({ scripts: { asbuild: 'asc assembly/index.ts -b build/o.wasm --use abort=abort_proc_exit --optimize' } }),
      'src/package-lock.json': lock({}),
      'src/node_modules/assemblyscript/package.json': JSON.stringify({ version: '0.14.13', bin: { asc: 'bin/asc' } }),
      'src/node_modules/assemblyscript/bin/asc': '',
    });
    const context = contextFor(dir);
    const compiler = await pinnedCompiler(context.sourceDir);
    assert.deepEqual(compiler, { version: '0.14.13', cli: '/build/src/node_modules/assemblyscript/bin/asc' });
    const command = await pinnedCommand(context, '/usr/bin/node', compiler);
    assert.deepEqual(command.slice(-2), ['--use', 'abort=abort_proc_exit']);
    assert.ok(!command.includes('--exportStart') && !command.includes('--path'), 'Kiln’s own options are for Kiln’s compiler only');

    await writeFile(join(dir, 'src/node_modules/assemblyscript/package.json'), JSON.stringify({ version: '0.14.13', bin: { asc: '../../../../etc/passwd' } }));
    await assert.rejects(pinnedCompiler(context.sourceDir), /no usable asc command/);
    await writeFile(join(dir, 'src/kiln.toml'), 'abort = "x; rm -rf /"\n');
    await writeFile(join(dir, 'src/node_modules/assemblyscript/package.json'), JSON.stringify({ version: '0.14.13', bin: 'bin/asc' }));
    await assert.rejects(pinnedCommand(context, '/usr/bin/node', { version: '0.14.13', cli: 'x' }), /abort must name a function/);
  });

  it('uses Kiln’s compiler when there is no lock, whatever an uploaded node_modules holds', async () => {
    const dir = await project({ 'src/node_modules/assemblyscript/package.json': JSON.stringify({ version: '0.14.13', bin: 'bin/asc' }), 'src/node_modules/assemblyscript/bin/asc': '' });
    assert.equal(await pinnedCompiler(join(dir, 'src')), undefined);
  });
});

describe('locked crates for the cargo mirror', () => {
  const checksum = 'a'.repeat(64);
  it('takes registry packages with checksums, skips path and git packages', () => {
    const text = `version = 3\n\n[[package]]\nname = "app"\nversion = "0.1.0"\n\n[[package]]\nname = "itoa"\nversion = "1.0.1"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "${checksum}"\n\n[[package]]\nname = "g"\nversion = "0.1.0"\nsource = "git+https://example.com/g#abc"\n`;
    assert.deepEqual(lockedRegistryCrates(text), [{ name: 'itoa', version: '1.0.1', checksum }]);
  });

  it('refuses names, versions and checksums that could steer a download URL', () => {
    for (const [name, version, sum] of [['../x', '1.0.0', checksum], ['x', '1.0.0/../../y', checksum], ['x', '1.0.0', 'nothex'], ['x?y', '1.0.0', checksum]]) {
      const text = `[[package]]\nname = "${name}"\nversion = "${version}"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "${sum}"\n`;
      assert.throws(() => lockedRegistryCrates(text), /has no valid name, version or checksum/, `${name} ${version} ${sum}`);
    }
  });
});

describe('what the fetch left is read without following links', () => {
  it('a locked assemblyscript installed as a link to a host directory is refused, not read', async () => {
    const { symlink } = await import('node:fs/promises');
    const dir = await project({ 'src/package-lock.json': lock({}), 'outside/package.json': JSON.stringify({ version: 'host-secret', bin: 'bin/asc' }), 'outside/bin/asc': '' });
    await mkdir(join(dir, 'src/node_modules'), { recursive: true });
    await symlink(join(dir, 'outside'), join(dir, 'src/node_modules/assemblyscript'));
    await assert.rejects(pinnedCompiler(join(dir, 'src')), /node_modules\/assemblyscript is a link, not an installed package/);
  });
});
