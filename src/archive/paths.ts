/**
 * The one place that decides whether an entry name is acceptable and what
 * relative path it designates. Inspection, extraction and packing all use it,
 * so a name that passes here is the very path that gets written.
 */
import type { ArchiveLimits, ArchiveRejectReason } from './limits.ts';

export interface EntryPath {
  /** Normalized: `/`-separated, no `.`/empty components, no trailing slash; '' is the root. */
  path: string;
  segments: string[];
}

export interface PathProblem {
  reason: ArchiveRejectReason;
  why: string;
}

/** Linux NAME_MAX: a longer component would fail at write time with a vaguer error. */
const MAX_COMPONENT_BYTES = 255;

export function isPathProblem(value: EntryPath | PathProblem): value is PathProblem {
  return 'reason' in value;
}

export function checkEntryPath(name: string, limits: Pick<ArchiveLimits, 'maxPathLength' | 'maxDepth'>): EntryPath | PathProblem {
  const character = checkCharacters(name);
  if (character) return character;
  if (name.startsWith('/')) return { reason: 'absolute_path', why: 'absolute paths are not allowed' };
  // Drive letters (C:foo, C:/foo) are absolute or drive-relative on Windows.
  if (/^[A-Za-z]:/.test(name)) return { reason: 'absolute_path', why: 'paths starting with a drive letter are not allowed' };
  // `./src` is common (tar -C dir .); `..` is refused anywhere, even where it
  // would stay inside, so no later step ever has to reason about it.
  const segments = name.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) return { reason: 'path_traversal', why: 'path leaves the archive root (".." component)' };
  return checkSize(segments, limits);
}

function checkCharacters(name: string): PathProblem | undefined {
  if (name.includes('\0')) return { reason: 'invalid_path', why: 'path contains a NUL byte' };
  // Control characters in names are legal on Linux but let a name forge lines
  // in build logs and terminals; no source tree needs them.
  if (hasControlCharacter(name)) return { reason: 'invalid_path', why: 'path contains a control character' };
  // Decoders turn invalid UTF-8 into U+FFFD; two different byte names could
  // then collapse into one path.
  if (name.includes('\uFFFD')) return { reason: 'invalid_path', why: 'path is not valid UTF-8' };
  // A backslash is a separator on Windows: `..\\x` would be traversal there.
  if (name.includes('\\')) return { reason: 'invalid_path', why: 'path contains a backslash' };
  return undefined;
}

function checkSize(segments: string[], limits: Pick<ArchiveLimits, 'maxPathLength' | 'maxDepth'>): EntryPath | PathProblem {
  const path = segments.join('/');
  const bytes = Buffer.byteLength(path);
  if (bytes > limits.maxPathLength) return { reason: 'path_too_long', why: `path is ${bytes} bytes long, more than the limit of ${limits.maxPathLength}` };
  if (segments.some((segment) => Buffer.byteLength(segment) > MAX_COMPONENT_BYTES)) {
    return { reason: 'path_too_long', why: `a path component is longer than ${MAX_COMPONENT_BYTES} bytes` };
  }
  if (segments.length > limits.maxDepth) return { reason: 'path_too_deep', why: `path is ${segments.length} levels deep, more than the limit of ${limits.maxDepth}` };
  return { path, segments };
}

function hasControlCharacter(name: string): boolean {
  for (let index = 0; index < name.length; index += 1) {
    const code = name.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
