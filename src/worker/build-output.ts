/**
 * Output collection: the module the language names is copied out of the job
 * directory without ever following a path the build could have planted.
 */
import { constants } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { lstat, open, rename, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { formatBytes } from '../format/bytes.ts';
import type { BuildContext, Language } from '../languages/language.ts';
import { BuildStop, throwIfCancelled } from './build-stop.ts';

export const DEFAULT_MAX_ARTIFACT_BYTES = 64 * 1024 ** 2;

export interface CollectOptions {
  /** Host path the module is copied to; its directory must exist. */
  artifactPath: string;
  maxArtifactBytes?: number;
  signal?: AbortSignal;
}

/** Copies the module the language names to the artifact path; returns its size. */
export async function collectOutput(language: Language, context: BuildContext, options: CollectOptions): Promise<number> {
  throwIfCancelled(options.signal);
  const relativePath = await language.locateOutput(context);
  const bytes = await copyOutputSafely(context.jobDir, relativePath, options.artifactPath, options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES);
  context.log(`kiln: module ${relativePath} (${formatBytes(bytes)}) collected`);
  return bytes;
}

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d]);

/**
 * Copies `root/relativePath` to `destination` without ever leaving root.
 * Runs only after every sandboxed process is dead, so nothing can swap a
 * path component between our checks and the open: every component is
 * lstat-ed (no symlink anywhere), the file is opened with O_NOFOLLOW and
 * must be a regular file no larger than maxBytes, and it must start with
 * the Wasm magic. Problems with what the build left are the user's
 * (`failed`); I/O errors are ours.
 */
export async function copyOutputSafely(root: string, relativePath: string, destination: string, maxBytes: number): Promise<number> {
  const parts = safeParts(relativePath);
  let current = root;
  for (const [index, part] of parts.entries()) {
    current = join(current, part);
    const stats = await lstat(current).catch(() => undefined);
    const isLast = index === parts.length - 1;
    if (stats === undefined) throw new BuildStop('failed', `the build produced no ${relativePath}`);
    if (stats.isSymbolicLink()) throw new BuildStop('failed', `${relativePath} is or passes through a symlink; refusing to copy it`);
    if (!isLast && !stats.isDirectory()) throw new BuildStop('failed', `${relativePath}: ${part} is not a directory`);
    if (isLast && !stats.isFile()) throw new BuildStop('failed', `${relativePath} is not a regular file`);
  }
  return copyRegularFile(current, relativePath, destination, maxBytes);
}

function safeParts(relativePath: string): string[] {
  const parts = relativePath.split('/');
  const unsafe =
    relativePath === '' ||
    isAbsolute(relativePath) ||
    relativePath.includes('\0') ||
    parts.some((part) => part === '' || part === '.' || part === '..');
  // The path derives from the user's project files, so a bad one is theirs to fix.
  if (unsafe) throw new BuildStop('failed', `refusing the output path ${JSON.stringify(relativePath)}: it must stay inside the build directory`);
  return parts;
}

async function copyRegularFile(source: string, shownAs: string, destination: string, maxBytes: number): Promise<number> {
  const input = await open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const stats = await input.stat();
    if (!stats.isFile()) throw new BuildStop('failed', `${shownAs} is not a regular file`);
    if (stats.size > maxBytes) throw new BuildStop('failed', `${shownAs} is larger than ${formatBytes(maxBytes)}`);
    // Read at most one byte past the cap: a file growing after fstat is caught too.
    const buffer = Buffer.alloc(Math.min(stats.size, maxBytes) + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await input.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw new BuildStop('failed', `${shownAs} is larger than ${formatBytes(maxBytes)}`);
    const content = buffer.subarray(0, length);
    if (!content.subarray(0, 4).equals(WASM_MAGIC)) throw new BuildStop('failed', `${shownAs} is not a WebAssembly module`);
    await writeArtifact(destination, content);
    return length;
  } finally {
    await input.close();
  }
}

/**
 * Writes through a fresh temporary name (O_EXCL: never follows or reuses an
 * entry) and renames it into place, so whatever sits at `destination` — a
 * symlink or a FIFO a build planted, if a caller put it inside the job dir —
 * is replaced, never followed or opened.
 */
async function writeArtifact(destination: string, content: Buffer): Promise<void> {
  const temporary = `${destination}.${randomBytes(6).toString('hex')}.partial`;
  const output = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    await output.writeFile(content);
  } finally {
    await output.close();
  }
  try {
    await rename(temporary, destination);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
