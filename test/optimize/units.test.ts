/**
 * The optimize and dependency-cache pieces that need no sandbox: the custom
 * section stripper, the restore/save scripts, the cache store's bounds and
 * namespaces, the per-owner namespace, and the Rust cache key.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stripCustomSections } from '../../src/optimize/strip.ts';
import { restoreScript, saveScript, type CachePlan } from '../../src/build-cache/plan.ts';
import { DependencyCacheStore } from '../../src/build-cache/store.ts';
import { cacheNamespace } from '../../src/build-cache/namespace.ts';
import { declaresDependencies, rustCachePlan } from '../../src/languages/rust/dependency-cache.ts';
import { inspectModule } from '../../src/wasm/inspect.ts';
import { commandModule, trappingInitModule } from './modules.ts';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kiln-optimize-units-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('strip', () => {
  it('drops debug and producers sections and keeps the code', () => {
    const module = trappingInitModule();
    const { bytes, removed } = stripCustomSections(module);
    assert.deepEqual(removed, ['.debug_info', 'producers']);
    assert.ok(bytes.length < module.length);
    assert.ok(WebAssembly.validate(bytes));
    const info = inspectModule(bytes);
    assert.deepEqual(info.customSections, []);
    assert.deepEqual(info.exports.map((entry) => entry.name), ['_start', 'wizer-initialize', 'memory']);
  });

  it('leaves a module without such sections byte for byte', () => {
    const module = commandModule({ custom: { target_features: [0] } });
    const { bytes, removed } = stripCustomSections(module);
    assert.deepEqual(removed, []);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(module));
  });
});

describe('cache scripts', () => {
  const plan: CachePlan = { key: 'a'.repeat(40), directories: ['target'], keyedSourceDirectories: ['vendor'], describe: 'test' };

  it('restores inside the sandbox, re-dates what it restored and cleans up on failure', () => {
    const script = restoreScript(plan);
    assert.match(script, /tar --zstd -x --touch -f \/opt\/kiln\/dependency-cache\/deps\.tar\.zst -C \/build --no-same-owner -- target/);
    assert.match(script, /find \/build\/target -exec touch -h -d "@\$\(\(now - 10\)\)"/);
    assert.match(script, /-path \/build\/src\/vendor -prune/);
    assert.match(script, /rm -rf \/build\/target\n/);
    assert.match(saveScript(plan), /-cf \/build\/kiln\/dependency-cache\.tar\.zst -C \/build -- target$/);
  });

  it('refuses directory names that are not plain', () => {
    assert.throws(() => restoreScript({ ...plan, directories: ['../etc'] }));
    assert.throws(() => saveScript({ ...plan, directories: ['target; rm -rf /'] }));
  });
});

describe('owner namespaces', () => {
  it('is a stable hash per owner that reveals nothing of the id', () => {
    const owner = '8f14e45f-ceea-467f-a0e6-1f3b2c8c9d01';
    assert.equal(cacheNamespace(owner), cacheNamespace(owner));
    assert.notEqual(cacheNamespace(owner), cacheNamespace('0a1b2c3d-0000-4000-8000-000000000000'));
    assert.match(cacheNamespace(owner), /^[0-9a-f]{32}$/);
    assert.ok(!cacheNamespace(owner).includes(owner.replace(/-/g, '').slice(0, 8)));
    assert.ok(DependencyCacheStore.isNamespace(cacheNamespace(owner)));
    assert.ok(!DependencyCacheStore.isNamespace('../other-owner'));
    assert.ok(!DependencyCacheStore.isNamespace(undefined));
  });
});

describe('dependency cache store', () => {
  const ownerA = 'a'.repeat(32);
  const ownerB = 'b'.repeat(32);
  const key = (digit: string) => digit.repeat(40);

  async function volumeWith(content: string | Buffer): Promise<string> {
    const volume = await mkdtemp(join(scratch, 'volume-'));
    await mkdir(join(volume, 'kiln'));
    await writeFile(join(volume, 'kiln', 'entry.tar.zst'), content);
    return volume;
  }

  it('serves an entry to its namespace only, through a checkout that survives eviction', async () => {
    const store = new DependencyCacheStore({ root: join(scratch, 'store-1') });
    const saved = await store.save(ownerA, key('1'), await volumeWith('compiled deps'), 'kiln/entry.tar.zst');
    assert.deepEqual(saved, { saved: true, bytes: 13 });
    assert.equal(await store.checkout(ownerB, key('1')), undefined, 'another owner never sees it');
    assert.equal(await store.checkout(ownerA, key('2')), undefined, 'another key is a miss');
    const checkout = await store.checkout(ownerA, key('1'));
    assert.ok(checkout);
    await rm(join(store.root, 'entries'), { recursive: true, force: true });
    assert.equal(await readFile(join(checkout.directory, 'deps.tar.zst'), 'utf8'), 'compiled deps');
    await checkout.release();
  });

  it('refuses to copy a symlink or an oversized file out of a volume', async () => {
    const store = new DependencyCacheStore({ root: join(scratch, 'store-2'), maxEntryBytes: 10 });
    const volume = await volumeWith('x');
    await rm(join(volume, 'kiln', 'entry.tar.zst'));
    await symlink('/etc/passwd', join(volume, 'kiln', 'entry.tar.zst'));
    const linked = await store.save(ownerA, key('1'), volume, 'kiln/entry.tar.zst');
    assert.equal(linked.saved, false);
    const large = await store.save(ownerA, key('2'), await volumeWith('more than ten bytes'), 'kiln/entry.tar.zst');
    assert.equal(large.saved, false);
    assert.equal((await store.usage()).entries, 0);
  });

  it('keeps each owner within its share without touching other owners', async () => {
    const store = new DependencyCacheStore({ root: join(scratch, 'store-3'), maxBytes: 1000, maxBytesPerNamespace: 150 });
    const hundred = Buffer.alloc(100, 1);
    await store.save(ownerA, key('1'), await volumeWith(hundred), 'kiln/entry.tar.zst');
    await backdate(store, ownerA, key('1'), 3);
    await store.save(ownerB, key('2'), await volumeWith(hundred), 'kiln/entry.tar.zst');
    await backdate(store, ownerB, key('2'), 2);
    await store.save(ownerB, key('3'), await volumeWith(hundred), 'kiln/entry.tar.zst');
    // B went over its 150 bytes: its own older entry goes; A's, older still, stays.
    assert.deepEqual(await store.usage(), { bytes: 200, entries: 2, perNamespace: { [ownerA]: 100, [ownerB]: 100 } });
    assert.equal(await store.checkout(ownerB, key('2')), undefined);
  });

  it('evicts the least recently used entry past the total bound', async () => {
    const store = new DependencyCacheStore({ root: join(scratch, 'store-4'), maxBytes: 250 });
    const hundred = Buffer.alloc(100, 1);
    await store.save(ownerA, key('1'), await volumeWith(hundred), 'kiln/entry.tar.zst');
    await backdate(store, ownerA, key('1'), 3);
    await store.save(ownerB, key('2'), await volumeWith(hundred), 'kiln/entry.tar.zst');
    await backdate(store, ownerB, key('2'), 2);
    // Using A's older entry makes B's the least recently used one.
    const used = await store.checkout(ownerA, key('1'));
    await used?.release();
    await store.save(ownerB, key('3'), await volumeWith(hundred), 'kiln/entry.tar.zst');
    assert.equal((await store.usage()).bytes, 200);
    assert.equal(await store.checkout(ownerB, key('2')), undefined);
    for (const [owner, digit] of [[ownerA, '1'], [ownerB, '3']] as const) {
      const checkout = await store.checkout(owner, key(digit));
      assert.ok(checkout, `${digit} is kept`);
      await checkout.release();
    }
  });
});

async function backdate(store: DependencyCacheStore, namespace: string, key: string, minutes: number): Promise<void> {
  const when = new Date(Date.now() - minutes * 60_000);
  await utimes(join(store.root, 'entries', namespace, `${key}.tar.zst`), when, when);
}

describe('the Rust cache key', () => {
  const registry = { host: '/usr/share/cargo/registry', sandbox: '/usr/share/cargo/registry' };
  const inputs = { target: 'wasm32-wasi', profile: 'release', rustc: '/usr/bin/rustc', cargo: '/usr/bin/cargo' };

  async function project(files: Record<string, string>): Promise<string> {
    const jobDir = await mkdtemp(join(scratch, 'rust-'));
    for (const [path, content] of Object.entries({ 'Cargo.toml': '[package]\nname = "p"\nversion = "0.1.0"\n\n[dependencies]\nitoa = "1"\n', 'src/main.rs': 'fn main() {}\n', ...files })) {
      await mkdir(join(jobDir, 'src', path, '..'), { recursive: true });
      await writeFile(join(jobDir, 'src', path), content);
    }
    return jobDir;
  }

  async function keyOf(jobDir: string): Promise<string> {
    const plan = await rustCachePlan({ jobDir, sourceDir: join(jobDir, 'src'), kind: 'wasi-command', log: () => undefined }, registry, inputs, 'wasi-command');
    assert.ok('key' in plan, JSON.stringify(plan));
    return plan.key;
  }

  it('is not used for a crate without dependencies', async () => {
    const jobDir = await project({ 'Cargo.toml': '[package]\nname = "p"\nversion = "0.1.0"\n\n[dependencies]\n\n[dev-dependencies]\nitoa = "1"\n' });
    const plan = await rustCachePlan({ jobDir, sourceDir: join(jobDir, 'src'), kind: 'wasi-command', log: () => undefined }, registry, inputs, 'wasi-command');
    assert.deepEqual(plan, { unavailable: 'the crate has no dependencies' });
  });

  it('finds dependencies in every way a manifest can declare them', () => {
    for (const manifest of [
      '[dependencies]\nserde = { version = "1", features = ["derive"] }\n',
      '[dependencies.serde]\nversion = "1"\n',
      "[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n",
      '[build-dependencies]\ncc = "1" # comment\n',
      'dependencies.itoa = "1"\n[package]\nname = "p"\n',
      '[workspace]\nmembers = ["a"]\n',
    ]) {
      assert.equal(declaresDependencies(manifest), true, manifest);
    }
    for (const manifest of ['[package]\nname = "p"\n[dependencies]\n# none yet\n[dev-dependencies]\nitoa = "1"\n', '[package]\nname = "dependencies.x"\n']) {
      assert.equal(declaresDependencies(manifest), false, manifest);
    }
  });

  it('ignores the user sources and follows lock file, profile, build scripts and vendored crates', async () => {
    const base = await keyOf(await project({}));
    assert.equal(await keyOf(await project({ 'src/main.rs': 'fn main() { println!("one line changed"); }\n' })), base);
    const locked = await keyOf(await project({ 'Cargo.lock': 'version = 3\n' }));
    assert.notEqual(locked, base);
    assert.notEqual(await keyOf(await project({ 'Cargo.lock': 'version = 3\n# other\n' })), locked);
    assert.notEqual(await keyOf(await project({ 'Cargo.toml': '[package]\nname = "p"\nversion = "0.1.0"\n\n[dependencies]\nitoa = "1"\n\n[profile.release]\nopt-level = "z"\n' })), base);
    assert.notEqual(await keyOf(await project({ 'build.rs': 'fn main() {}\n' })), base);
    const vendored = await keyOf(await project({ 'vendor/itoa/Cargo.toml': '[package]\nname = "itoa"\n', 'vendor/itoa/src/lib.rs': '' }));
    assert.notEqual(vendored, base);
    assert.notEqual(await keyOf(await project({ 'vendor/itoa/Cargo.toml': '[package]\nname = "itoa"\n', 'vendor/itoa/src/lib.rs': '// patched\n' })), vendored);
  });
});
