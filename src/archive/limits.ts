/**
 * Limits on an uploaded source archive, and the error that rejects one.
 *
 * Every upload is hostile (BRIEF §5): the limits bound what reading an archive
 * can cost us — bytes read from disk, bytes decompressed, bytes written,
 * entries, path sizes — whatever its headers claim.
 */
import { UserError, type UserErrorKind } from '../errors.ts';

export interface ArchiveLimits {
  /** Size of the archive file itself, as uploaded. */
  maxCompressedBytes: number;
  /** Sum of the decompressed contents of all regular files. */
  maxTotalBytes: number;
  /** Decompressed content of any one regular file. */
  maxFileBytes: number;
  /** Files and directories together. */
  maxEntries: number;
  /** UTF-8 bytes of an entry's normalized relative path. */
  maxPathLength: number;
  /** Components of an entry's normalized relative path. */
  maxDepth: number;
}

const MIB = 1024 * 1024;

export const DEFAULT_ARCHIVE_LIMITS: Readonly<ArchiveLimits> = Object.freeze({
  maxCompressedBytes: 64 * MIB,
  maxTotalBytes: 512 * MIB,
  maxFileBytes: 128 * MIB,
  maxEntries: 20_000,
  maxPathLength: 1024,
  maxDepth: 64,
});

/**
 * Why an archive was rejected, with the kind of refusal (the API answers
 * 413, 415 and 422 for them). The rule: too_large when the archive is too big
 * in some dimension (bytes or entries: the same archive, smaller, would be
 * accepted), unsupported_format when it is not an archive we read at all,
 * unprocessable when it is an archive whose content we refuse (unsafe or
 * malformed).
 */
export const ARCHIVE_REJECT_KIND = {
  unsupported_format: 'unsupported_format',
  archive_too_large: 'too_large',
  total_too_large: 'too_large',
  file_too_large: 'too_large',
  too_many_entries: 'too_large',
  path_too_long: 'unprocessable',
  path_too_deep: 'unprocessable',
  absolute_path: 'unprocessable',
  path_traversal: 'unprocessable',
  invalid_path: 'unprocessable',
  duplicate_path: 'unprocessable',
  path_conflict: 'unprocessable',
  symlink: 'unprocessable',
  hard_link: 'unprocessable',
  special_file: 'unprocessable',
  size_mismatch: 'unprocessable',
  overlapping_entries: 'unprocessable',
  encrypted_entry: 'unprocessable',
  unsupported_compression: 'unprocessable',
  corrupt_archive: 'unprocessable',
} as const satisfies Record<string, UserErrorKind>;

export type ArchiveRejectReason = keyof typeof ARCHIVE_REJECT_KIND;

/**
 * How far reading got when the archive was rejected: lets callers (and tests)
 * check that a bomb was stopped early instead of decompressed to the end.
 */
export interface ArchiveProgress {
  /** Bytes of the archive file read so far (file data, for zip). */
  compressedBytesRead: number;
  /** Bytes that came out of the decompressor so far (tar headers included). */
  uncompressedBytesRead: number;
}

/** Names in messages are cut: a 4 MiB pax path must not become a 4 MiB log line. */
const MAX_NAME_IN_MESSAGE = 256;

export function displayName(name: string): string {
  return name.length > MAX_NAME_IN_MESSAGE ? `${name.slice(0, MAX_NAME_IN_MESSAGE)}…` : name;
}

/**
 * The upload is refused. `code` (for API clients) is `archive_<reason>`;
 * the message names the entry (JSON-quoted, so control characters and NUL
 * show as escapes rather than reaching a terminal or a log) and says why.
 */
export class ArchiveRejectedError extends UserError {
  readonly entry: string | undefined;

  constructor(
    readonly reason: ArchiveRejectReason,
    why: string,
    entry?: string,
    readonly details: ArchiveProgress = { compressedBytesRead: 0, uncompressedBytesRead: 0 },
  ) {
    const shown = entry === undefined ? undefined : displayName(entry);
    super(ARCHIVE_REJECT_KIND[reason], `archive_${reason}`, shown === undefined ? `archive rejected: ${why}` : `entry ${JSON.stringify(shown)}: ${why}`);
    this.name = 'ArchiveRejectedError';
    this.entry = shown;
  }
}
