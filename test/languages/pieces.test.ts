/**
 * The host-side pieces of the build pipeline, without a sandbox: manifest
 * reading, detection, the offline cargo set-up, error-line extraction, limit
 * reasons and the safe copy-out.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLanguages, detectLanguage } from '../../src/languages/index.ts';
import type { AppKind, BuildContext, LanguageId } from '../../src/languages/language.ts';
import { manifestFromToml, kindOf, expectedModuleNames } from '../../src/languages/rust/manifest.ts';
import { DEFAULT_RUST_SDK_DIR } from '../../src/languages/rust/sdk.ts';
import { parseToml } from '../../src/languages/toml.ts';
import { DEFAULT_LIMITS } from '../../src/sandbox/sandbox.ts';
import { ErrorLineFinder, limitReason } from '../../src/worker/build-diagnostics.ts';
import { runBuild } from '../../src/worker/build-job.ts';
import { copyOutputSafely } from '../../src/worker/build-output.ts';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import { writeVendoredProject } from './fixtures.ts';

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
let scratch: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kiln-pieces-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

describe('toml subset', () => {
  test('reads tables, arrays of tables, quoted keys, multi-line arrays and comments', () => {
    const table = parseToml(
      [
        '[package]',
        'name = "demo" # the name',
        "version = '1.2.3'",
        '[package.metadata.kiln]',
        'kind = "proxy-wasm"',
        '[lib]',
        '"crate-type" = [',
        '  "cdylib", # a filter',
        '  "rlib",',
        ']',
        '[[bin]]',
        'name = "first"',
        '[[bin]]',
        'name = "second"',
        'weird = { path = "x" }',
      ].join('\n'),
    );
    assert.equal(table['package.name'], 'demo');
    assert.equal(table['package.version'], '1.2.3');
    assert.equal(table['package.metadata.kiln.kind'], 'proxy-wasm');
    assert.deepEqual(table['lib.crate-type'], ['cdylib', 'rlib']);
    assert.equal(table['bin.0.name'], 'first');
    assert.equal(table['bin.1.name'], 'second');
    assert.equal(table['bin.1.weird'], undefined);
  });
});

describe('Rust manifest', () => {
  test('kind: declared metadata wins, else a cdylib is a filter, else a command', () => {
    const cdylib = manifestFromToml(parseToml('[package]\nname = "my-filter"\n[lib]\ncrate-type = ["cdylib"]\n'));
    assert.equal(kindOf(cdylib), 'proxy-wasm');
    assert.deepEqual(expectedModuleNames(cdylib, 'proxy-wasm'), ['my_filter.wasm']);
    const bin = manifestFromToml(parseToml('[package]\nname = "my-fn"\n'));
    assert.equal(kindOf(bin), 'wasi-command');
    assert.deepEqual(expectedModuleNames(bin, 'wasi-command'), ['my-fn.wasm']);
    const declared = manifestFromToml(parseToml('[package]\nname = "x"\n[lib]\ncrate-type = ["cdylib"]\n[package.metadata.kiln]\nkind = "wasi-command"\n'));
    assert.equal(kindOf(declared), 'wasi-command');
  });
});

describe('detection', () => {
  const expected: Record<string, [string, string]> = {
    'rust-filter': ['rust', 'proxy-wasm'],
    'rust-function': ['rust', 'wasi-command'],
    'rust-compile-error': ['rust', 'wasi-command'],
    'c-function': ['c', 'wasi-command'],
    'c-filter': ['c', 'proxy-wasm'],
    'assemblyscript-filter': ['assemblyscript', 'proxy-wasm'],
  };
  for (const [example, [language, kind]] of Object.entries(expected)) {
    test(`${example} is ${language} / ${kind}`, async () => {
      assert.deepEqual(await detectLanguage(join(EXAMPLES, example)), { language, kind });
    });
  }

  test('a C filter is recognised by its proxy_on_ functions without kiln.toml', async () => {
    const dir = await freshDir('c-filter-no-toml');
    await cp(join(EXAMPLES, 'c-filter'), dir, { recursive: true });
    await rm(join(dir, 'kiln.toml'));
    assert.deepEqual(await detectLanguage(dir), { language: 'c', kind: 'proxy-wasm' });
  });

  test('a symlinked Cargo.toml is not followed', async () => {
    const dir = await freshDir('symlinked-manifest');
    await symlink(join(EXAMPLES, 'rust-filter', 'Cargo.toml'), join(dir, 'Cargo.toml'));
    assert.equal(await detectLanguage(dir), undefined);
  });
});

function contextFor(jobDir: string, kind: BuildContext['kind'] = 'wasi-command'): BuildContext & { lines: string[] } {
  const lines: string[] = [];
  return { jobDir, sourceDir: join(jobDir, 'src'), kind, log: (line) => lines.push(line), lines };
}

describe('Rust offline set-up', () => {
  test('removes .cargo/config* and rust-toolchain*, writes an offline CARGO_HOME outside the source', async () => {
    const jobDir = await freshDir('rust-prepare');
    await cp(join(EXAMPLES, 'rust-filter'), join(jobDir, 'src'), { recursive: true });
    await mkdir(join(jobDir, 'src', '.cargo'));
    await writeFile(join(jobDir, 'src', '.cargo', 'config'), '[net]\noffline = false\n');
    await writeFile(join(jobDir, 'src', '.cargo', 'config.toml'), '[net]\noffline = false\n');
    // Read only to pick among installed toolchains ("stable": the newest), then removed.
    await writeFile(join(jobDir, 'src', 'rust-toolchain'), 'stable\n');
    const context = contextFor(jobDir, 'proxy-wasm');
    await createLanguages().rust.prepare(context);
    for (const gone of ['.cargo/config', '.cargo/config.toml', 'rust-toolchain']) {
      await assert.rejects(lstat(join(jobDir, 'src', gone)), { code: 'ENOENT' });
    }
    assert.equal(context.lines.filter((line) => line.startsWith('kiln: removed')).length, 3);
    const config = await readFile(join(jobDir, 'cargo-home', 'config.toml'), 'utf8');
    assert.match(config, /replace-with = "kiln-registry"/);
    // Always the merged directory source in the job dir: the Kiln SDK crates plus the operator's registry.
    assert.match(config, /directory = "\/build\/cargo-registry"/);
    assert.match(config, /offline = true/);
  });

  test('a symlinked .cargo is removed as a link, its target untouched', async () => {
    const jobDir = await freshDir('rust-cargo-symlink');
    await cp(join(EXAMPLES, 'rust-filter'), join(jobDir, 'src'), { recursive: true });
    const outside = await freshDir('outside-cargo');
    await writeFile(join(outside, 'config.toml'), 'precious');
    await symlink(outside, join(jobDir, 'src', '.cargo'));
    await createLanguages().rust.prepare(contextFor(jobDir));
    assert.equal(await readFile(join(outside, 'config.toml'), 'utf8'), 'precious');
    await assert.rejects(lstat(join(jobDir, 'src', '.cargo')), { code: 'ENOENT' });
  });

  test('a symlinked .cargo-checksum.json in vendor/ is refused, never written through', async () => {
    const jobDir = await freshDir('rust-vendor-checksum-link');
    await writeVendoredProject(join(jobDir, 'src'));
    const victim = join(await freshDir('checksum-victim'), 'file');
    await writeFile(victim, 'precious');
    await rm(join(jobDir, 'src', 'vendor', 'kiln-shout', '.cargo-checksum.json'));
    await symlink(victim, join(jobDir, 'src', 'vendor', 'kiln-shout', '.cargo-checksum.json'));
    await assert.rejects(createLanguages().rust.prepare(contextFor(jobDir)), /not a regular file/);
    assert.equal(await readFile(victim, 'utf8'), 'precious');
  });

  test('vendor/ becomes a merged directory source: vendored crates plus the registry', async () => {
    const jobDir = await freshDir('rust-vendor');
    await writeVendoredProject(join(jobDir, 'src'));
    const registry = await freshDir('registry');
    for (const name of ['itoa-1.0.1', 'kiln-shout-0.1.0']) await mkdir(join(registry, name));
    const context = contextFor(jobDir);
    const rust = createLanguages({ rust: { registryDir: registry } }).rust;
    await rust.prepare(context);
    const merged = join(jobDir, 'cargo-registry');
    assert.equal(await readlink(join(merged, 'kiln-shout')), '/build/src/vendor/kiln-shout');
    // A registry copy of a vendored crate is left out: the vendored one wins.
    await assert.rejects(lstat(join(merged, 'kiln-shout-0.1.0')), { code: 'ENOENT' });
    // A registry outside /usr is mounted at a fixed sandbox path.
    assert.equal(await readlink(join(merged, 'itoa-1.0.1')), '/opt/kiln/cargo-registry/itoa-1.0.1');
    const config = await readFile(join(jobDir, 'cargo-home', 'config.toml'), 'utf8');
    assert.match(config, /directory = "\/build\/cargo-registry"/);
    const mounts = rust.mounts(context);
    assert.deepEqual(mounts.slice(0, 2), [
      { host: registry, sandbox: '/opt/kiln/cargo-registry' },
      { host: DEFAULT_RUST_SDK_DIR, sandbox: '/opt/kiln/sdk/rust' },
    ]);
    // Plus the chosen toolchain's prefix when it is not Debian's /usr one (read-only, like every mount here).
    for (const mount of mounts.slice(2)) assert.match(mount.sandbox, /^\/opt\/kiln\/toolchains\/rust-\d+\.\d+\.\d+$/);
    assert.ok(mounts.every((mount) => mount.writable !== true));
    // Another instance never saw this build's prepare: asking it is a platform error, not a guess.
    assert.throws(() => createLanguages({ rust: { registryDir: registry } }).rust.mounts(context), /chosen in prepare/);
  });
});

describe('AssemblyScript preparation', () => {
  test('removes the upload’s compiler, but never through a symlinked node_modules', async () => {
    const jobDir = await freshDir('as-prepare');
    await cp(join(EXAMPLES, 'assemblyscript-filter'), join(jobDir, 'src'), { recursive: true });
    await mkdir(join(jobDir, 'kiln'));
    await mkdir(join(jobDir, 'src', 'node_modules', 'assemblyscript'), { recursive: true });
    const context = contextFor(jobDir, 'proxy-wasm');
    await createLanguages().assemblyscript.prepare(context);
    await assert.rejects(lstat(join(jobDir, 'src', 'node_modules', 'assemblyscript')), { code: 'ENOENT' });
    assert.ok(context.lines.includes('kiln: removed node_modules/assemblyscript from the upload (Kiln compiles with its own AssemblyScript compiler)'));

    const outside = await freshDir('as-outside');
    await mkdir(join(outside, 'assemblyscript'));
    await rm(join(jobDir, 'src', 'node_modules'), { recursive: true });
    await symlink(outside, join(jobDir, 'src', 'node_modules'));
    await createLanguages().assemblyscript.prepare(contextFor(jobDir, 'proxy-wasm'));
    assert.ok((await lstat(join(outside, 'assemblyscript'))).isDirectory());
  });
});

describe('error lines', () => {
  const first = (...chunks: string[]): string | undefined => {
    const finder = new ErrorLineFinder();
    for (const chunk of chunks) finder.push(Buffer.from(chunk));
    return finder.finish();
  };

  test('rustc: the first error with its location, across chunk boundaries', () => {
    assert.equal(
      first('   Compiling x v0.1.0\nerr', 'or[E0425]: cannot find value `y` in this scope\n --> src/main.rs:2:5\n', 'error: could not compile `x`\n'),
      'error[E0425]: cannot find value `y` in this scope (src/main.rs:2:5)',
    );
  });

  test('clang, wasm-ld and asc', () => {
    assert.equal(first('./src/main.c:3:5: error: use of undeclared identifier \'x\'\n1 error generated.\n'), "./src/main.c:3:5: error: use of undeclared identifier 'x'");
    assert.equal(first('wasm-ld: error: undefined symbol: frobnicate\n'), 'wasm-ld: error: undefined symbol: frobnicate');
    assert.equal(first('\u001b[31mERROR\u001b[0m TS2304: Cannot find name \'x\'.\n'), "ERROR TS2304: Cannot find name 'x'.");
  });

  test('nothing that looks like an error', () => {
    assert.equal(first('warning: unused variable\n'), undefined);
  });
});

describe('limit reasons', () => {
  test('name the limit and its value', () => {
    assert.equal(limitReason('memory', DEFAULT_LIMITS), 'memory limit of 2 GiB exceeded');
    assert.equal(limitReason('wall', DEFAULT_LIMITS), 'time limit of 10 min exceeded');
    assert.equal(limitReason('pids', DEFAULT_LIMITS), 'process limit of 256 exceeded');
    assert.equal(limitReason('disk', DEFAULT_LIMITS), 'disk limit of 1 GiB exceeded');
    assert.equal(limitReason('log', DEFAULT_LIMITS), 'log limit of 4 MiB exceeded');
  });
});

describe('copy-out', () => {
  const wasm = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  let root: string;
  let destination: string;

  before(async () => {
    root = await freshDir('copy-root');
    await mkdir(join(root, 'out'));
    await writeFile(join(root, 'out', 'app.wasm'), wasm);
    destination = join(await freshDir('copy-dest'), 'artifact.wasm');
  });

  test('copies a regular file inside the root', async () => {
    assert.equal(await copyOutputSafely(root, 'out/app.wasm', destination, 1024), wasm.length);
    assert.deepEqual(await readFile(destination), wasm);
  });

  test('replaces a symlink or FIFO at the destination instead of following or opening it', async () => {
    const victim = join(await freshDir('copy-victim'), 'file');
    await writeFile(victim, 'precious');
    const linked = join(await freshDir('copy-linked'), 'artifact.wasm');
    await symlink(victim, linked);
    await copyOutputSafely(root, 'out/app.wasm', linked, 1024);
    assert.equal(await readFile(victim, 'utf8'), 'precious');
    assert.deepEqual(await readFile(linked), wasm);
    const fifo = join(await freshDir('copy-fifo'), 'artifact.wasm');
    execFileSync('/usr/bin/mkfifo', [fifo]);
    await copyOutputSafely(root, 'out/app.wasm', fifo, 1024);
    assert.ok((await lstat(fifo)).isFile());
  });

  test('refuses symlinks anywhere in the path', async () => {
    await symlink('/etc/passwd', join(root, 'out', 'link.wasm'));
    await assert.rejects(copyOutputSafely(root, 'out/link.wasm', destination, 1024), /symlink/);
    await symlink('/etc', join(root, 'linkdir'));
    await assert.rejects(copyOutputSafely(root, 'linkdir/passwd', destination, 1024), /symlink/);
  });

  test('refuses absolute and parent paths', async () => {
    await assert.rejects(copyOutputSafely(root, '/etc/passwd', destination, 1024), /refusing the output path .* inside the build directory/);
    await assert.rejects(copyOutputSafely(root, 'out/../../etc/passwd', destination, 1024), /refusing the output path .* inside the build directory/);
  });

  test('refuses directories, oversized files and non-Wasm files', async () => {
    await assert.rejects(copyOutputSafely(root, 'out', destination, 1024), /not a regular file/);
    await assert.rejects(copyOutputSafely(root, 'out/app.wasm', destination, 4), /larger than/);
    await writeFile(join(root, 'out', 'text.wasm'), 'hello');
    await assert.rejects(copyOutputSafely(root, 'out/text.wasm', destination, 1024), /not a WebAssembly module/);
  });
});

describe('runBuild outcomes without compiling', () => {
  const failingSandbox = (behaviour: 'throw' | 'limit'): Sandbox => ({
    name: 'bubblewrap',
    check: async () => undefined,
    run: async () => {
      if (behaviour === 'throw') throw new Error('bwrap vanished');
      return { exitCode: null, signal: 'SIGKILL', limitHit: 'memory', cancelled: false, durationMs: 5, notes: ['cgroups in use'] };
    },
  });

  async function jobWithExample(name: string): Promise<string> {
    const jobDir = await mkdtemp(join(scratch, 'job-'));
    await cp(join(EXAMPLES, name), join(jobDir, 'src'), { recursive: true });
    return jobDir;
  }

  test('a sandbox that throws is a crash, not the user’s fault', async () => {
    const jobDir = await jobWithExample('c-function');
    const outcome = await runBuild({ jobDir, sandbox: failingSandbox('throw'), onLog: () => undefined, artifactPath: join(jobDir, 'a.wasm') });
    assert.equal(outcome.outcome, 'crashed');
    assert.match(outcome.reason ?? '', /bwrap vanished/);
  });

  test('a limit hit is a failure naming the limit', async () => {
    const jobDir = await jobWithExample('c-function');
    const chunks: Buffer[] = [];
    const outcome = await runBuild({ jobDir, sandbox: failingSandbox('limit'), onLog: (chunk) => chunks.push(chunk), artifactPath: join(jobDir, 'a.wasm') });
    assert.deepEqual([outcome.outcome, outcome.reason], ['failed', 'memory limit of 2 GiB exceeded']);
    assert.match(Buffer.concat(chunks).toString(), /kiln: cgroups in use/);
  });

  test('an unsupported declared language or kind fails clearly', async () => {
    const jobDir = await jobWithExample('c-function');
    const base = { jobDir, sandbox: failingSandbox('throw'), onLog: () => undefined, artifactPath: join(jobDir, 'a.wasm') };
    const zig = await runBuild({ ...base, language: 'zig' as unknown as LanguageId });
    assert.deepEqual([zig.outcome, zig.reason], ['failed', 'unsupported language "zig"']);
    const odd = await runBuild({ ...base, kind: 'daemon' as unknown as AppKind });
    assert.deepEqual([odd.outcome, odd.reason], ['failed', 'unsupported kind "daemon"']);
  });

  test('an already aborted signal cancels before anything runs', async () => {
    const jobDir = await jobWithExample('c-function');
    const outcome = await runBuild({
      jobDir,
      sandbox: failingSandbox('throw'),
      onLog: () => undefined,
      artifactPath: join(jobDir, 'a.wasm'),
      signal: AbortSignal.abort(),
    });
    assert.equal(outcome.outcome, 'cancelled');
  });
});
