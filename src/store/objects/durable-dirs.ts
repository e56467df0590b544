import path from 'node:path';

/**
 * The directories whose fsync makes the chain `firstCreated` … `dir` (what
 * one recursive mkdir made) durable: each new directory's entry lives in its
 * parent (POSIX), so the parent of every created directory, shallowest first.
 * `dir` itself is synced with the meta file's rename.
 */
export function parentsToSync(firstCreated: string | undefined, dir: string): string[] {
  if (firstCreated === undefined) return [];
  const top = path.resolve(firstCreated);
  const parents: string[] = [];
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const parent = path.dirname(current);
    if (parent === current) return [];
    parents.unshift(parent);
    if (current === top) return parents;
  }
}
