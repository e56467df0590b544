/**
 * The dependency cache around builds, with the real sandbox steps (tar and
 * zstd in bubblewrap): a saved entry is kept unpacked, the next build of the
 * same owner gets the unpacked copy, a damaged copy falls back to the
 * tarball (which keeps a new copy), and another owner gets neither.
 */
import assert from 'node:assert/strict';
import { appendFile, chmod, lstat, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CachePlan } from '../../src/build-cache/plan.ts';
import { openDependencyCache, saveDependencyCache, type CacheRunContext, type CacheSession } from '../../src/build-cache/session.ts';
import { DependencyCacheStore } from '../../src/build-cache/store.ts';
import { BASE_DIRECTORIES, BASE_ENV } from '../../src/build-kit/paths.ts';
import { createSandbox, createWorkDir, DEFAULT_LIMITS, type Sandbox, type WorkDir } from '../../src/sandbox/index.ts';
import { sandboxSkip } from '../testbed/support.ts';

const skip = await sandboxSkip();
const ownerA = 'a'.repeat(32);
const ownerB = 'b'.repeat(32);
const PLAN: CachePlan = { key: 'c'.repeat(40), directories: ['target'], keyedSourceDirectories: [], describe: 'test plan' };

describe('the dependency cache session with unpacked copies', { skip, timeout: 300_000 }, () => {
  let scratch: string;
  let store: DependencyCacheStore;
  let sandbox: Sandbox;
  const volumes: WorkDir[] = [];

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'kiln-cache-session-'));
    await chmod(scratch, 0o755);
    store = new DependencyCacheStore({ root: join(scratch, 'cache') });
    sandbox = createSandbox('bubblewrap');
  });
  after(async () => {
    for (const volume of volumes) await volume.dispose().catch(() => undefined);
    await sandbox?.close?.();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function job(): Promise<{ jobDir: string; log: string[]; run: CacheRunContext }> {
    const volume = await createWorkDir(scratch, DEFAULT_LIMITS.diskBytes, 'job');
    volumes.push(volume);
    const jobDir = volume.path;
    for (const directory of ['src', ...BASE_DIRECTORIES]) await mkdir(join(jobDir, directory), { recursive: true });
    await writeFile(join(jobDir, 'src', 'main.rs'), 'fn main() {}\n');
    const log: string[] = [];
    const run: CacheRunContext = { sandbox, jobDir, mounts: [], env: { ...BASE_ENV }, limits: DEFAULT_LIMITS, log: (line) => log.push(line), onOutput: () => undefined };
    return { jobDir, log, run };
  }

  const open = (namespace: string, run: CacheRunContext): Promise<CacheSession> => openDependencyCache(async () => PLAN, store, namespace, run);

  it('keeps a saved entry unpacked, hands it to the same owner, falls back to the tarball when the copy is damaged, and never serves another owner', async () => {
    const first = await job();
    const missed = await open(ownerA, first.run);
    assert.equal(missed.report.hit, false);
    await mkdir(join(first.jobDir, 'target', 'release'), { recursive: true });
    await writeFile(join(first.jobDir, 'target', 'release', 'libdep.rlib'), 'compiled deps');
    await saveDependencyCache(missed, first.run);
    assert.equal(missed.report.saved, true, first.log.join('\n'));
    assert.deepEqual(await store.trees?.usage(), { [ownerA]: 'compiled deps'.length }, 'the saved entry was kept unpacked');

    const entry = join(store.root, 'entries', ownerA, `${PLAN.key}.tar.zst`);
    const longAgo = new Date(Date.now() - 3600_000);
    await utimes(entry, longAgo, longAgo);
    const second = await job();
    const unpacked = await open(ownerA, second.run);
    assert.equal(unpacked.report.hit, true, second.log.join('\n'));
    assert.equal(unpacked.report.unpacked, true);
    assert.ok((await lstat(entry)).mtimeMs > longAgo.getTime(), 'a hit on the unpacked copy counts as a use of the entry for eviction');
    assert.equal(await readFile(join(second.jobDir, 'target', 'release', 'libdep.rlib'), 'utf8'), 'compiled deps');

    await appendFile(join(store.root, 'trees', ownerA, PLAN.key, 'target', 'release', 'libdep.rlib'), ' damaged');
    const third = await job();
    const fallback = await open(ownerA, third.run);
    assert.equal(fallback.report.hit, true, third.log.join('\n'));
    assert.equal(fallback.report.unpacked, undefined, 'the tarball was unpacked in the sandbox');
    assert.match(third.log.join('\n'), /unpacked copy was unusable/);
    assert.equal(await readFile(join(third.jobDir, 'target', 'release', 'libdep.rlib'), 'utf8'), 'compiled deps', 'the damage never reached the build');

    const fourth = await job();
    const again = await open(ownerA, fourth.run);
    assert.equal(again.report.unpacked, true, 'the tarball restore kept a new unpacked copy');
    assert.equal(await readFile(join(fourth.jobDir, 'target', 'release', 'libdep.rlib'), 'utf8'), 'compiled deps');

    const other = await job();
    const otherOwner = await open(ownerB, other.run);
    assert.equal(otherOwner.report.hit, false, 'another owner gets neither the tarball nor the unpacked copy');
    assert.equal(await lstat(join(other.jobDir, 'target')).catch(() => undefined), undefined);
  });
});
