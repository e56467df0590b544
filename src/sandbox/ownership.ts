import { lchownSync, opendirSync } from 'node:fs';
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
 * The walk is synchronous: at most SMALL_TREE metadata calls of a few µs
 * each, where every call through fs/promises is a round trip to libuv's
 * pool (two thread wakes, ~0.1–0.3 ms here) on each sandbox start.
 */
const SMALL_TREE = 256;

export async function handOver(dir: string, uid: number, gid: number): Promise<void> {
  if (walkSmall(dir, uid, gid)) return;
  await mustRunHost('/usr/bin/chown', ['-R', '-h', `${uid}:${gid}`, '--', dir], 'sandbox_chown_failed', 'handing the work dir to the sandbox uid');
}

/** lchowns the tree unless it is large; false means "too large, nothing guaranteed". */
function walkSmall(dir: string, uid: number, gid: number): boolean {
  const pending = [dir];
  const entries: string[] = [dir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    // Read entry by entry (opendir buffers a few at a time): a huge directory costs no more than SMALL_TREE entries.
    const listing = opendirSync(current);
    try {
      for (let entry = listing.readSync(); entry !== null; entry = listing.readSync()) {
        const path = join(current, entry.name);
        entries.push(path);
        if (entries.length > SMALL_TREE) return false;
        if (entry.isDirectory()) pending.push(path);
      }
    } finally {
      listing.closeSync();
    }
  }
  for (const path of entries) lchownSync(path, uid, gid);
  return true;
}
