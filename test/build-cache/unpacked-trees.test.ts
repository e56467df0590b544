/**
 * The worker's unpacked copies of dependency cache entries (trees.ts,
 * decision 0038), without a sandbox: what is kept, who gets it, the times a
 * hand-over sets, and what happens to a damaged copy.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DependencyCacheStore } from '../../src/build-cache/store.ts';
import { NO_TREE, RestoredTrees, type TreeOptions } from '../../src/build-cache/trees.ts';

const ownerA = 'a'.repeat(32);
const ownerB = 'b'.repeat(32);
const key = (digit: string) => digit.repeat(40);
const GiB = 1024 ** 3;

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kiln-unpacked-trees-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function trees(name: string, options: Partial<TreeOptions> = {}): RestoredTrees {
  return new RestoredTrees({ root: join(scratch, name), maxBytes: GiB, maxTreeBytes: GiB, maxAgeMs: 24 * 3600_000, ...options });
}

/** A job volume as a build leaves it: sources, a target dir with a nested file and a link pointing out. */
async function jobWithTarget(marker: string, options: { vendor?: boolean } = {}): Promise<string> {
  const job = await mkdtemp(join(scratch, 'job-'));
  await mkdir(join(job, 'src', 'src'), { recursive: true });
  await writeFile(join(job, 'src', 'src', 'main.rs'), 'fn main() {}\n');
  if (options.vendor) {
    await mkdir(join(job, 'src', 'vendor', 'dep'), { recursive: true });
    await writeFile(join(job, 'src', 'vendor', 'dep', 'lib.rs'), '');
  }
  await mkdir(join(job, 'target', 'release', 'deps'), { recursive: true });
  await writeFile(join(job, 'target', 'release', 'deps', 'libdep.rlib'), marker);
  await symlink('/etc/passwd', join(job, 'target', 'release', 'outside'));
  return job;
}

async function emptyJob(): Promise<string> {
  const job = await mkdtemp(join(scratch, 'job-'));
  await mkdir(join(job, 'src'), { recursive: true });
  await writeFile(join(job, 'src', 'main.rs'), 'fn main() {}\n');
  return job;
}

describe('unpacked dependency cache trees', () => {
  it('hands a kept tree to a later job of the same owner and key, links as links, restored output older than the sources', async () => {
    const store = trees('same-owner');
    const kept = await store.keep(ownerA, key('1'), await jobWithTarget('compiled deps', { vendor: true }), ['target']);
    assert.deepEqual(kept, { ok: true, bytes: 'compiled deps'.length });
    const job = await jobWithTarget('unused', { vendor: true });
    await rm(join(job, 'target'), { recursive: true });

    const before = Date.now();
    const handed = await store.handOver(ownerA, key('1'), job, ['target'], { keyedSourceDirectories: ['vendor'] });
    assert.deepEqual(handed, { ok: true, bytes: 'compiled deps'.length });
    assert.equal(await readFile(join(job, 'target', 'release', 'deps', 'libdep.rlib'), 'utf8'), 'compiled deps');
    const link = await lstat(join(job, 'target', 'release', 'outside'));
    assert.ok(link.isSymbolicLink(), 'a link stays a link');
    assert.equal(await readlink(join(job, 'target', 'release', 'outside')), '/etc/passwd');
    assert.notEqual((await lstat('/etc/passwd')).mtimeMs, link.mtimeMs, 'the link target was not touched');

    const restored = (await lstat(join(job, 'target', 'release', 'deps', 'libdep.rlib'))).mtimeMs;
    const source = (await lstat(join(job, 'src', 'src', 'main.rs'))).mtimeMs;
    const vendored = (await lstat(join(job, 'src', 'vendor', 'dep', 'lib.rs'))).mtimeMs;
    assert.ok(source >= before - 1000, 'the upload gets the current time');
    assert.equal(source - restored, 10_000, 'restored output is 10 s older than the upload');
    assert.equal(source - vendored, 20_000, 'keyed sources are older than the output built from them');
  });

  it('never hands one owner the tree of another, even for the same key', async () => {
    const store = trees('two-owners');
    assert.equal((await store.keep(ownerA, key('1'), await jobWithTarget('owner A'), ['target'])).ok, true);
    const job = await emptyJob();
    assert.deepEqual(await store.handOver(ownerB, key('1'), job, ['target'], { keyedSourceDirectories: [] }), { ok: false, reason: NO_TREE });
    assert.equal(await lstat(join(job, 'target')).catch(() => undefined), undefined, 'nothing reached the other owner');
    assert.equal((await store.handOver(ownerA, key('2'), job, ['target'], { keyedSourceDirectories: [] })).ok, false, 'another key is a miss');
    assert.deepEqual(await store.usage(), { [ownerA]: 'owner A'.length });
  });

  it('drops a tree damaged on disk, leaves nothing of it in the job, and misses afterwards', async () => {
    const store = trees('damaged');
    await store.keep(ownerA, key('1'), await jobWithTarget('compiled deps'), ['target']);
    await appendFile(join(scratch, 'damaged', ownerA, key('1'), 'target', 'release', 'deps', 'libdep.rlib'), ' and more');
    const job = await emptyJob();
    const handed = await store.handOver(ownerA, key('1'), job, ['target'], { keyedSourceDirectories: [] });
    assert.equal(handed.ok, false);
    assert.match(handed.ok ? '' : handed.reason, /unusable/);
    assert.equal(await lstat(join(job, 'target')).catch(() => undefined), undefined, 'the bad copy was removed from the job');
    assert.deepEqual(await store.handOver(ownerA, key('1'), job, ['target'], { keyedSourceDirectories: [] }), { ok: false, reason: NO_TREE });
  });

  it('replaces a job-side target that is a link instead of writing through it', async () => {
    const store = trees('planted-link');
    await store.keep(ownerA, key('1'), await jobWithTarget('compiled deps'), ['target']);
    const job = await emptyJob();
    const elsewhere = await mkdtemp(join(scratch, 'elsewhere-'));
    await symlink(elsewhere, join(job, 'target'));
    assert.equal((await store.handOver(ownerA, key('1'), job, ['target'], { keyedSourceDirectories: [] })).ok, true);
    assert.ok((await lstat(join(job, 'target'))).isDirectory());
    assert.equal(await lstat(join(elsewhere, 'release')).catch(() => undefined), undefined, 'nothing was written through the link');
  });

  it('keeps one tree per owner, refuses one over its size limit, and evicts the least recently used past the total', async () => {
    const store = trees('bounds', { maxBytes: 150, maxTreeBytes: 120 });
    const hundred = 'x'.repeat(100);
    assert.equal((await store.keep(ownerA, key('1'), await jobWithTarget(hundred), ['target'])).ok, true);
    assert.equal((await store.keep(ownerA, key('2'), await jobWithTarget(hundred), ['target'])).ok, true);
    assert.deepEqual(await store.usage(), { [ownerA]: 100 }, 'the newer key replaced the older one');
    const tooLarge = await store.keep(ownerB, key('3'), await jobWithTarget('y'.repeat(121)), ['target']);
    assert.equal(tooLarge.ok, false);

    const old = new Date(Date.now() - 60_000);
    await utimes(join(scratch, 'bounds', ownerA, key('2')), old, old);
    assert.equal((await store.keep(ownerB, key('3'), await jobWithTarget(hundred), ['target'])).ok, true);
    assert.deepEqual(await store.usage(), { [ownerB]: 100 }, 'A\'s older tree went to stay within 150 bytes');
  });

  it('refuses to keep a tree holding anything but directories, files and links, and drops set-id bits', async () => {
    const store = trees('special');
    const withFifo = await jobWithTarget('compiled deps');
    execFileSync('/usr/bin/mkfifo', [join(withFifo, 'target', 'release', 'pipe')]);
    const refused = await store.keep(ownerA, key('1'), withFifo, ['target']);
    assert.equal(refused.ok, false);
    assert.deepEqual(await store.usage(), {});

    const withSetuid = await jobWithTarget('compiled deps');
    await chmod(join(withSetuid, 'target', 'release', 'deps', 'libdep.rlib'), 0o4755);
    assert.equal((await store.keep(ownerA, key('1'), withSetuid, ['target'])).ok, true);
    const kept = await lstat(join(scratch, 'special', ownerA, key('1'), 'target', 'release', 'deps', 'libdep.rlib'));
    assert.equal(kept.mode & 0o7777, 0o755);
  });

  it('keeps nothing when the job has no such directory', async () => {
    const store = trees('absent');
    const kept = await store.keep(ownerA, key('1'), await emptyJob(), ['target']);
    assert.equal(kept.ok, false);
    assert.deepEqual(await store.usage(), {});
  });

  it('the store keeps no unpacked trees when their bound is 0 or they are turned off (KILN_DEPENDENCY_CACHE_UNPACKED_MAX_BYTES)', () => {
    assert.equal(new DependencyCacheStore({ root: join(scratch, 'store-none'), maxUnpackedBytes: 0 }).trees, undefined);
    assert.equal(new DependencyCacheStore({ root: join(scratch, 'store-off'), keepUnpacked: false }).trees, undefined);
    assert.ok(new DependencyCacheStore({ root: join(scratch, 'store-on'), maxUnpackedBytes: 1 }).trees instanceof RestoredTrees);
  });
});
