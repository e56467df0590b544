import { randomBytes } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { mkdir, readdir, rm, rmdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { mustRunHost, runHost } from './exec.ts';
import { defaultCacheDir } from './native.ts';
import { isAlive } from './procs.ts';
import { SlotMounter } from './slot-mounter.ts';

/**
 * How the disk limit is enforced.
 *
 * The job's work dir is bound writable at /build, so a bind of a plain host
 * directory would let a build fill the host disk (RLIMIT_FSIZE is per file;
 * ext4 here is mounted without quotas). Options measured on this machine:
 *   - a tmpfs mounted by us on the host with size=diskBytes: ~3 ms to mount,
 *     hard cap, ENOSPC at the limit, visible to the worker after the run;
 *     its pages are RAM, charged to the run's memory cgroup while written.
 *   - a loop-mounted ext4 image: no RAM cost, but mkfs + losetup + mount cost
 *     ~100 ms per job and loop devices are a scarce host resource.
 *   - only in-sandbox tmpfs (`bwrap --size N --tmpfs /build`) plus copying
 *     the source in: the results die with the sandbox's mount namespace.
 * We use the host tmpfs: `createWorkDir()` makes the job dir itself such a
 * tmpfs. A run whose workDir is not on a filesystem at most diskBytes large
 * still works but is staged: copied into a temporary capped tmpfs, run
 * there, and copied back (a note in the result says so) — slower, never
 * uncapped.
 */
export interface WorkDir {
  readonly path: string;
  /** Unmounts and removes the directory; every sandbox using it must be over. */
  dispose(): Promise<void>;
}

const COPY_TIMEOUT_MS = 10 * 60_000;

/** Rounding slack: tmpfs sizes are whole pages. */
const SIZE_SLACK = 64 * 1024;

/**
 * Creates a size-capped job directory under `parent` (mode 0755, nosuid,
 * nodev). The worker extracts the source into it and passes it as workDir.
 */
export async function createWorkDir(parent: string, diskBytes: number, prefix = 'kiln-work'): Promise<WorkDir> {
  const path = join(parent, `${prefix}-${randomBytes(6).toString('hex')}`);
  await mkdir(path, { recursive: true, mode: 0o755 });
  try {
    await mountTmpfs(path, diskBytes);
  } catch (error) {
    await rmdir(path).catch(() => undefined);
    throw error;
  }
  return { path, dispose: () => unmountAndRemove(path) };
}

/**
 * Names of volumes we create for ourselves (staging, self-tests) carry our
 * pid, so that volumes left mounted by a worker killed with -9 can be found.
 */
export function privateVolumePrefix(): string {
  return `stage-${process.pid}`;
}

/** Unmounts the private volumes under `root` whose creator is dead. */
export async function removeOrphanVolumes(root: string): Promise<void> {
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const owner = /^stage-(\d+)-/.exec(name)?.[1];
    if (!owner || isAlive(Number(owner))) continue;
    await unmountAndRemove(join(root, name)).catch(() => undefined);
  }
}

/**
 * Work dirs are mounted and unmounted by one long-lived root helper per
 * process (slot-mounter.c, asked through a pipe), not by mount(8) and
 * umount(8): starting a program forks this whole process, and while the
 * fork and exec run its event loop stands still — tens of milliseconds per
 * job for a process as large as the API with its embedded database and
 * local workers (decision 0044). Where the helper cannot be built or started
 * (no C compiler), mount(8) and umount(8) do the same work as before.
 */
let volumeHelper: Promise<SlotMounter | undefined> | undefined;

function helper(): Promise<SlotMounter | undefined> {
  volumeHelper ??= (async () => {
    const mounter = new SlotMounter(defaultCacheDir());
    try {
      await mounter.ready();
      return mounter;
    } catch {
      return undefined;
    }
  })();
  return volumeHelper;
}

export async function mountTmpfs(path: string, bytes: number): Promise<void> {
  const size = Math.max(4096, Math.floor(bytes));
  // Inodes cost kernel memory and tmpfs' default allows millions of them;
  // one per 4 KiB of space is plenty for a cargo target dir.
  const inodes = Math.max(65_536, Math.floor(size / 4096));
  const options = `size=${size},nr_inodes=${inodes},mode=0755`;
  const mounter = await helper();
  if (mounter) return mounter.mountTmpfs(path, options);
  await mustRunHost('/usr/bin/mount', ['-t', 'tmpfs', '-o', `${options},nosuid,nodev`, 'kiln-work', path], 'sandbox_volume_failed', `mounting a ${size}-byte tmpfs at ${path}`);
}

export async function unmountAndRemove(path: string): Promise<void> {
  const mounter = await helper();
  if (mounter) await mounter.unmount(path);
  else await unmountWithPrograms(path);
  await rm(path, { recursive: true, force: true });
}

async function unmountWithPrograms(path: string): Promise<void> {
  const result = await runHost('/usr/bin/umount', [path]);
  if (result.code !== 0 && !/not mounted/.test(result.stderr)) {
    // Busy means a process still has it open; detach it so the host path is freed anyway.
    await mustRunHost('/usr/bin/umount', ['--lazy', path], 'sandbox_volume_failed', `unmounting ${path}`);
  }
}

export interface Capacity {
  totalBytes: number;
  freeBytes: number;
}

function capacityOf(stats: { blocks: number; bavail: number; bsize: number }): Capacity {
  return { totalBytes: stats.blocks * stats.bsize, freeBytes: stats.bavail * stats.bsize };
}

export async function capacity(path: string): Promise<Capacity> {
  return capacityOf(await statfs(path));
}

/** Synchronous (one statfs on every run, cheaper than a thread-pool round trip). */
export function isCapped(path: string, diskBytes: number): boolean {
  return capacityOf(statfsSync(path)).totalBytes <= diskBytes + SIZE_SLACK;
}

/** Less than this much free space left after a failed run means "disk full". */
export async function looksFull(path: string): Promise<boolean> {
  const { totalBytes, freeBytes } = await capacity(path).catch(() => ({ totalBytes: 0, freeBytes: Infinity }));
  return freeBytes < Math.max(256 * 1024, totalBytes * 0.001);
}

/**
 * A temporary capped copy of an uncapped workDir (see the top comment).
 * Copies are done by `cp -a` as root: it never follows symlinks in the
 * source, and the destination tree is fresh, so it cannot be redirected.
 */
export class StagedVolume {
  private constructor(
    readonly path: string,
    private readonly origin: string,
  ) {}

  static async create(origin: string, stagingRoot: string, diskBytes: number): Promise<StagedVolume> {
    const volume = await createWorkDir(stagingRoot, diskBytes, privateVolumePrefix());
    const staged = new StagedVolume(volume.path, origin);
    const copy = await runHost('/usr/bin/cp', ['-a', '--', `${origin}/.`, `${volume.path}/`], { timeoutMs: COPY_TIMEOUT_MS });
    if (copy.code !== 0) {
      await volume.dispose();
      const full = /No space left/.test(copy.stderr);
      throw new PlatformError(full ? 'sandbox_workdir_too_large' : 'sandbox_volume_failed', `staging ${origin}: ${copy.stderr.trim().slice(0, 500)}`);
    }
    return staged;
  }

  /** Replaces the origin's contents with the staged tree, then drops the tmpfs. */
  async finish(): Promise<void> {
    try {
      for (const entry of await readdir(this.origin)) await rm(join(this.origin, entry), { recursive: true, force: true });
      await mustRunHost('/usr/bin/cp', ['-a', '--', `${this.path}/.`, `${this.origin}/`], 'sandbox_volume_failed', `copying results back to ${this.origin}`, COPY_TIMEOUT_MS);
    } finally {
      await unmountAndRemove(this.path);
    }
  }

  async discard(): Promise<void> {
    await unmountAndRemove(this.path);
  }
}
