/**
 * Unit tests of the per-app toolchain choice (pure: the installed
 * toolchains are plain objects here) and of toolchain discovery from a
 * toolchains directory laid out like scripts/toolchains/rust-modern.sh does.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { toolchainsDir } from '../../src/config.ts';
import { UserError } from '../../src/errors.ts';
import { rustCachePlan } from '../../src/languages/rust/dependency-cache.ts';
import { chooseToolchain, readAppRustFacts, type AppRustFacts } from '../../src/languages/rust/toolchain-choice.ts';
import { compareVersions, installedToolchains, type RustToolchain } from '../../src/languages/rust/toolchains.ts';

function toolchain(version: string, target: RustToolchain['target']): RustToolchain {
  const bin = `/t/${version}/usr/bin`;
  return { name: `rust-${version}`, version, rustcVersion: `rustc ${version}`, target, rustc: `${bin}/rustc`, cargo: `${bin}/cargo`, host: { rustc: '', cargo: '', env: {} }, env: {} };
}

const MODERN = toolchain('1.85.0', 'wasm32-wasip1');
const LEGACY = toolchain('1.63.0', 'wasm32-wasi');
const BOTH = [MODERN, LEGACY];
const OFFLINE = new Set(['itoa-1.0.5', 'serde-1.0.152', 'kiln-proxy-wasm-0.1.0']);

function facts(overrides: Partial<AppRustFacts> = {}): AppRustFacts {
  return { lockedRegistryCrates: [], hasVendor: false, ...overrides };
}

function choose(overrides: Partial<AppRustFacts>, installed: RustToolchain[] = BOTH): string {
  return chooseToolchain(facts(overrides), installed, OFFLINE).toolchain.name;
}

describe('choosing a Rust toolchain per app', () => {
  test('a new app gets the newest installed toolchain', () => {
    assert.equal(choose({}), 'rust-1.85.0');
    assert.equal(choose({}, [LEGACY]), 'rust-1.63.0');
  });

  test('a pinned channel picks by version prefix; stable means the newest', () => {
    assert.equal(choose({ channel: { value: '1.63', file: 'rust-toolchain.toml' } }), 'rust-1.63.0');
    assert.equal(choose({ channel: { value: '1.63.0', file: 'rust-toolchain' } }), 'rust-1.63.0');
    assert.equal(choose({ channel: { value: '1.85-x86_64-unknown-linux-gnu', file: 'rust-toolchain' } }), 'rust-1.85.0');
    assert.equal(choose({ channel: { value: 'stable', file: 'rust-toolchain.toml' } }), 'rust-1.85.0');
    // 1.6 is not a prefix of 1.63 in version terms.
    assert.throws(() => choose({ channel: { value: '1.6', file: 'rust-toolchain' } }), UserError);
  });

  test('a channel that is not installed is the user’s error, naming what is installed', () => {
    for (const value of ['nightly', 'nightly-2099-01-01', 'beta', '1.70', '1.85.1', '../../usr/bin/evil']) {
      assert.throws(
        () => choose({ channel: { value, file: 'rust-toolchain.toml' } }),
        (error: unknown) => error instanceof UserError && error.message.includes(JSON.stringify(value)) && error.message.includes('installed: 1.85.0 (wasm32-wasip1), 1.63.0 (wasm32-wasi)'),
      );
    }
  });

  test('rust-version is a minimum: the newest toolchain that satisfies it, or a clear error', () => {
    assert.equal(choose({ rustVersion: '1.60' }), 'rust-1.85.0');
    assert.equal(choose({ rustVersion: '1.60' }, [LEGACY]), 'rust-1.63.0');
    assert.throws(() => choose({ rustVersion: '1.80' }, [LEGACY]), /rust-version = "1\.80" needs rustc 1\.80 or newer; installed: 1\.63\.0/);
    assert.throws(() => choose({ rustVersion: '1.90' }), /needs rustc 1\.90 or newer/);
    assert.throws(() => choose({ rustVersion: 'latest' }), /is not a version/);
  });

  test('edition 2024 needs 1.85; older editions do not constrain; unknown editions are refused', () => {
    assert.equal(choose({ edition: '2024' }), 'rust-1.85.0');
    assert.throws(() => choose({ edition: '2024' }, [LEGACY]), /edition 2024 needs rustc 1\.85\.0 or newer; installed: 1\.63\.0/);
    assert.throws(() => choose({ edition: '2027' }), /is not a Rust edition/);
  });

  test('an existing app whose lock (v3) resolves against Debian’s registry keeps 1.63', () => {
    const existing = { lockVersion: 3, lockedRegistryCrates: ['itoa-1.0.5', 'kiln-proxy-wasm-0.1.0'], edition: '2021' };
    assert.equal(choose(existing), 'rust-1.63.0');
    // Anything that says "modern" wins over the lock heuristic.
    assert.equal(choose({ ...existing, lockVersion: 4 }), 'rust-1.85.0');
    assert.equal(choose({ ...existing, lockedRegistryCrates: ['itoa-1.0.15'] }), 'rust-1.85.0');
    assert.equal(choose({ ...existing, hasVendor: true }), 'rust-1.85.0');
    assert.equal(choose({ ...existing, channel: { value: 'stable', file: 'rust-toolchain' } }), 'rust-1.85.0');
  });

  test('no toolchain at all is refused', () => {
    assert.throws(() => choose({}, []), /no Rust toolchain is installed/);
  });

  test('versions compare numerically', () => {
    assert.ok(compareVersions('1.85.0', '1.63.0') > 0);
    assert.ok(compareVersions('1.9.0', '1.10.0') < 0);
    assert.equal(compareVersions('1.85', '1.85.0'), 0);
  });
});

describe('reading what an upload says about its toolchain', () => {
  const root = mkdtemp(join(tmpdir(), 'kiln-rust-facts-'));
  after(async () => rm(await root, { recursive: true, force: true }));

  test('rust-toolchain.toml, rust-version, edition and the lock’s registry crates', async () => {
    const dir = join(await root, 'app');
    await mkdir(join(dir, 'vendor'), { recursive: true });
    await writeFile(join(dir, 'Cargo.toml'), '[package]\nname = "a"\nversion = "0.1.0"\nedition = "2024"\nrust-version = "1.85"\n');
    await writeFile(join(dir, 'rust-toolchain.toml'), '[toolchain]\nchannel = "1.85.0"\ncomponents = ["rustfmt"]\n');
    await writeFile(
      join(dir, 'Cargo.lock'),
      'version = 4\n\n[[package]]\nname = "a"\nversion = "0.1.0"\n\n[[package]]\nname = "itoa"\nversion = "1.0.5"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "00"\n',
    );
    assert.deepEqual(await readAppRustFacts(dir), {
      channel: { value: '1.85.0', file: 'rust-toolchain.toml' },
      rustVersion: '1.85',
      edition: '2024',
      lockVersion: 4,
      lockedRegistryCrates: ['itoa-1.0.5'],
      hasVendor: true,
    });
  });

  test('a legacy one-line rust-toolchain; a lock without a version line is version 1', async () => {
    const dir = join(await root, 'legacy');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Cargo.toml'), '[package]\nname = "b"\nversion = "0.1.0"\n');
    await writeFile(join(dir, 'rust-toolchain'), '1.63\n');
    await writeFile(join(dir, 'Cargo.lock'), '[[package]]\nname = "b"\nversion = "0.1.0"\n');
    const read = await readAppRustFacts(dir);
    assert.deepEqual(read.channel, { value: '1.63', file: 'rust-toolchain' });
    assert.equal(read.lockVersion, 1);
    assert.equal(read.hasVendor, false);
  });
});

describe('discovering installed toolchains', () => {
  const root = mkdtemp(join(tmpdir(), 'kiln-toolchains-'));
  after(async () => rm(await root, { recursive: true, force: true }));

  async function prefix(dir: string, name: string, stamp: unknown, withStd = true): Promise<void> {
    const lib = join(dir, name, 'usr/lib/rustlib/wasm32-wasip1/lib');
    await mkdir(lib, { recursive: true });
    if (withStd) await writeFile(join(lib, 'libstd-0123.rlib'), '');
    await writeFile(join(dir, name, 'kiln-toolchain.json'), typeof stamp === 'string' ? stamp : JSON.stringify(stamp));
  }

  test('only complete prefixes count: a valid stamp naming the directory, and a std for the target', async () => {
    const dir = join(await root, 'toolchains');
    const stamp = { rustVersion: '1.85.0', target: 'wasm32-wasip1', rustc: 'rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)' };
    await prefix(dir, 'rust-1.85.0', stamp);
    await prefix(dir, 'rust-1.99.0', { ...stamp, rustVersion: '1.85.0' }); // stamp names another version
    await prefix(dir, 'rust-1.90.0', { ...stamp, rustVersion: '1.90.0' }, false); // no std: an interrupted set-up
    await prefix(dir, 'rust-1.91.0', '{not json');
    await prefix(dir, 'rust-1.92.0.partial', { ...stamp, rustVersion: '1.92.0' });
    const found = await installedToolchains(dir);
    const modern = found.filter((entry) => entry.hostRoot !== undefined);
    assert.deepEqual(modern.map((entry) => entry.name), ['rust-1.85.0']);
    const [only] = modern;
    assert.equal(only?.target, 'wasm32-wasip1');
    assert.equal(only?.rustc, '/opt/kiln/toolchains/rust-1.85.0/usr/bin/rustc');
    assert.equal(only?.env.CARGO_TARGET_WASM32_WASIP1_LINKER, '/usr/bin/wasm-ld');
    assert.match(only?.env.LD_LIBRARY_PATH ?? '', /^\/opt\/kiln\/toolchains\/rust-1\.85\.0\/usr\/lib\/x86_64-linux-gnu:/);
  });

  test('a missing toolchains directory means only the system toolchain', async () => {
    const found = await installedToolchains(join(await root, 'nowhere'));
    assert.ok(found.every((entry) => entry.hostRoot === undefined));
  });
});

describe('the dependency cache key follows the toolchain', () => {
  const root = mkdtemp(join(tmpdir(), 'kiln-toolchain-key-'));
  after(async () => rm(await root, { recursive: true, force: true }));

  test('the same crate gets a different key on each installed toolchain (its rustc -V and target)', async (context) => {
    const toolchains = await installedToolchains(toolchainsDir());
    if (toolchains.length < 2) return context.skip(`only ${toolchains.length} Rust toolchain(s) installed: run scripts/setup.sh`);
    const jobDir = join(await root, 'job');
    await mkdir(join(jobDir, 'src'), { recursive: true });
    await writeFile(join(jobDir, 'src', 'Cargo.toml'), '[package]\nname = "k"\nversion = "0.1.0"\n\n[dependencies]\nitoa = "1"\n');
    const registry = { host: '/usr/share/cargo/registry', sandbox: '/usr/share/cargo/registry' };
    const keys = new Set<string>();
    const descriptions: string[] = [];
    for (const toolchain of toolchains) {
      const inputs = { target: toolchain.target, profile: 'release', rustc: toolchain.host.rustc, cargo: toolchain.host.cargo, env: toolchain.host.env };
      const plan = await rustCachePlan({ jobDir, sourceDir: join(jobDir, 'src'), kind: 'wasi-command', log: () => undefined }, registry, inputs, 'wasi-command');
      assert.ok('key' in plan, JSON.stringify(plan));
      keys.add(plan.key);
      descriptions.push(plan.describe);
    }
    assert.equal(keys.size, toolchains.length);
    assert.ok(descriptions.some((text) => text.includes('rustc 1.85.0') && text.includes('wasm32-wasip1')), descriptions.join('\n'));
    assert.ok(descriptions.some((text) => text.includes('rustc 1.63.0') && text.includes('wasm32-wasi/')), descriptions.join('\n'));
  });
});
