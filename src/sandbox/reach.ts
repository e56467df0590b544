import { realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * The first directory from `dir` up to `/` that a run's uid cannot search.
 * A run's uid is never a directory's owner nor in its group, so only the
 * bits for other users count. bwrap runs as that uid and resolves every
 * bind source's path, the work dir's too even when it is handed over as a
 * descriptor; a closed directory on the way makes it fail after it has
 * already reported the sandbox's first process, which would look like the
 * command's own exit code 1 (see bubblewrap.ts).
 */
export async function firstClosedDirectory(dir: string): Promise<string | undefined> {
  for (let current = await realpath(dir); ; current = dirname(current)) {
    if (((await stat(current)).mode & 0o001) === 0) return current;
    if (current === dirname(current)) return undefined;
  }
}
