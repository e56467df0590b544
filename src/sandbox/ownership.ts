import { lchown, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { mustRunHost } from './exec.ts';

/**
 * Hands the work dir to the run's uid: every entry, recursively, never
 * following a symlink (lchown; `chown -R -h`). Left owned by that uid after
 * the run: the worker is root and reads it anyway, and the next run hands it
 * to its own uid again.
 *
 * Small trees are walked in-process (a spawn costs ~5 ms, more than the
 * sandbox itself); past SMALL_TREE entries `chown -R` is faster than Node.
 */
const SMALL_TREE = 256;

export async function handOver(dir: string, uid: number, gid: number): Promise<void> {
  if (await walkSmall(dir, uid, gid)) return;
  await mustRunHost('/usr/bin/chown', ['-R', '-h', `${uid}:${gid}`, '--', dir], 'sandbox_chown_failed', 'handing the work dir to the sandbox uid');
}

/** lchowns the tree unless it is large; false means "too large, nothing guaranteed". */
async function walkSmall(dir: string, uid: number, gid: number): Promise<boolean> {
  const pending = [dir];
  const entries: string[] = [dir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      entries.push(path);
      if (entries.length > SMALL_TREE) return false;
      if (entry.isDirectory()) pending.push(path);
    }
  }
  await Promise.all(entries.map((path) => lchown(path, uid, gid)));
  return true;
}
