/**
 * Packs a project for upload: `packDirectory` (deterministic .tar.gz; skips
 * .git/, node_modules/, cargo's target/; refuses symlinks leaving the
 * directory) plus the project's `.gitignore`/`.kilnignore` rules, and Kiln's
 * own data directory, which holds tokens and must never be uploaded.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import { packDirectory } from '../archive/pack.ts';
import { createIgnoreFilter } from './gitignore.ts';

/** Above this, deploy warns: uploads that big are usually build output or data by mistake. */
export const LARGE_ARCHIVE_BYTES = 10 * 1024 * 1024;

export interface PackedProject {
  archive: Buffer;
  sha256: string;
  /** Uncompressed bytes of all files. */
  bytes: number;
  /** Packed files, in archive order. */
  files: string[];
  /** Left out by an ignore rule (`dir/` for a directory). */
  ignored: string[];
  durationMs: number;
}

export async function packProject(dir: string): Promise<PackedProject> {
  const started = performance.now();
  const filter = createIgnoreFilter(dir, ['/.kiln/']);
  const files: string[] = [];
  const result = await packDirectory(dir, {
    ignore: (relPath, kind) => {
      const ignored = filter.ignore(relPath, kind);
      if (!ignored && kind === 'file') files.push(relPath);
      return ignored;
    },
  });
  return {
    archive: result.archive,
    sha256: createHash('sha256').update(result.archive).digest('hex'),
    bytes: result.bytes,
    files,
    ignored: filter.ignored,
    durationMs: performance.now() - started,
  };
}

/** The biggest packed files: what to put in .gitignore when the archive is too large. */
export function largestFiles(dir: string, files: string[], count = 5): Array<{ path: string; bytes: number }> {
  return files
    .map((file) => ({ path: file, bytes: sizeOf(path.join(dir, file)) }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, count);
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
