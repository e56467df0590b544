import { mkdir, open, readFile, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { isAlive } from './procs.ts';

/**
 * A pool of unprivileged host uids, one per concurrent sandboxed run.
 *
 * Why a pool: a sandbox launched as root writes root-owned files and can read
 * root-owned files bound inside; as a uid nobody else uses, the kernel's
 * ordinary permission checks protect the host, a per-uid RLIMIT_NPROC becomes
 * a per-run limit, and "kill every process of this uid" is a complete sweep.
 *
 * Leases are lock files (`<lockDir>/uid-<uid>`, content: the holder's pid) so
 * that several worker processes on one host never share a uid. A lock whose
 * holder is dead is reclaimed; the reclaim itself is serialised by a mkdir
 * mutex so two processes can never both take over the same stale lock.
 */
export interface UidLease {
  readonly uid: number;
  readonly gid: number;
  /** True when the previous holder died: its processes may still exist. */
  readonly reclaimed: boolean;
  release(): Promise<void>;
}

export interface UidPoolOptions {
  lockDir: string;
  /** First uid (and gid) of the range. Must not belong to anyone else. */
  base?: number;
  size?: number;
}

export const DEFAULT_UID_BASE = 200_000;
export const DEFAULT_UID_POOL_SIZE = 64;

const heldByDir = new Map<string, Set<number>>();

export class UidPool {
  readonly base: number;
  readonly size: number;
  private readonly lockDir: string;
  private readonly held: Set<number>;
  private cursor = 0;

  constructor(options: UidPoolOptions) {
    this.lockDir = options.lockDir;
    // Shared by every pool of this process on the same directory, so that a
    // lock file carrying our own pid but unknown here is known to be stale.
    this.held = heldByDir.get(options.lockDir) ?? new Set<number>();
    heldByDir.set(options.lockDir, this.held);
    this.base = options.base ?? DEFAULT_UID_BASE;
    this.size = options.size ?? DEFAULT_UID_POOL_SIZE;
  }

  async acquire(): Promise<UidLease> {
    await mkdir(this.lockDir, { recursive: true, mode: 0o700 });
    // Round robin from after the last uid handed out: a uid just released
    // (a run that ended, a prepared slot that replaces it) is the last to
    // be reused, so consecutive runs get different uids.
    const first = this.cursor;
    for (let step = 0; step < this.size; step++) {
      const uid = this.base + ((first + step) % this.size);
      if (this.held.has(uid)) continue;
      this.cursor = (uid - this.base + 1) % this.size;
      // Claim in-process first: concurrent acquire() calls must not race on one file.
      this.held.add(uid);
      const outcome = await this.tryLock(uid).catch((error: unknown) => {
        this.held.delete(uid);
        throw error;
      });
      if (outcome !== 'busy') return this.lease(uid, outcome === 'reclaimed');
      this.held.delete(uid);
    }
    throw new PlatformError('sandbox_busy', `all ${this.size} sandbox uids (${this.base}..${this.base + this.size - 1}) are in use`);
  }

  private lease(uid: number, reclaimed: boolean): UidLease {
    let released = false;
    return {
      uid,
      gid: uid,
      reclaimed,
      release: async () => {
        if (released) return;
        released = true;
        await unlink(this.lockPath(uid)).catch(() => undefined);
        this.held.delete(uid);
      },
    };
  }

  private lockPath(uid: number): string {
    return join(this.lockDir, `uid-${uid}`);
  }

  private async tryLock(uid: number): Promise<'fresh' | 'reclaimed' | 'busy'> {
    if (await createLock(this.lockPath(uid))) return 'fresh';
    if (!(await this.reclaimIfStale(uid))) return 'busy';
    return (await createLock(this.lockPath(uid))) ? 'reclaimed' : 'busy';
  }

  /** Removes the lock of `uid` if its holder is dead; true if it did. */
  private async reclaimIfStale(uid: number): Promise<boolean> {
    const mutex = join(this.lockDir, '.reclaim');
    if (!(await takeMutex(mutex))) return false;
    try {
      const holder = Number.parseInt(await readFile(this.lockPath(uid), 'utf8').catch(() => ''), 10);
      // A lock with our own pid that `held` does not know is left from a dead process that had our pid.
      if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) return false;
      await unlink(this.lockPath(uid)).catch(() => undefined);
      return true;
    } finally {
      await rmdir(mutex).catch(() => undefined);
    }
  }
}

async function createLock(path: string): Promise<boolean> {
  try {
    const handle = await open(path, 'wx', 0o600);
    await handle.writeFile(String(process.pid));
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** mkdir is atomic; a mutex older than 10 s belongs to a process that died holding it. */
async function takeMutex(path: string): Promise<boolean> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await mkdir(path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = Date.now() - (await stat(path).then((s) => s.mtimeMs, () => Date.now()));
      if (age > 10_000) await rmdir(path).catch(() => undefined);
      else await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
  return false;
}
