/**
 * Streams through a whole archive, one entry at a time, validating as it
 * goes. Inspection and extraction are both visitors of this walk: there is no
 * way to get at an entry's bytes without the checks having run first.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { BytesReader, type RandomAccess } from './content.ts';
import { detectFormatOf, type ArchiveFormat } from './format.ts';
import { EntryLedger, type EntryKind } from './ledger.ts';
import { ArchiveRejectedError, type ArchiveLimits } from './limits.ts';
import { walkTarGz } from './tar.ts';
import { walkZip } from './zip.ts';

export interface ArchiveEntry {
  /** The name as stored in the archive (for messages). */
  readonly name: string;
  /** Validated relative path ('' for the root directory itself). */
  readonly path: string;
  readonly segments: readonly string[];
  readonly kind: EntryKind;
  /** Any execute bit in the archived mode; the only mode bit Kiln keeps. */
  readonly executable: boolean;
  /**
   * Decompressed content, metered: a chunk that would cross a limit throws
   * instead of being yielded. Read it once, fully, or throw.
   */
  readonly content: AsyncIterable<Buffer>;
}

export type EntryVisitor = (entry: ArchiveEntry) => Promise<void>;

export interface ArchiveSummary {
  format: ArchiveFormat;
  /** Files and directories. */
  entries: number;
  fileCount: number;
  directoryCount: number;
  /** Decompressed bytes of all regular files, as actually read. */
  totalBytes: number;
  /** Size of the archive file. */
  compressedBytes: number;
  /** Relative paths of regular files in archive order, at most MAX_LISTED_FILES. */
  files: string[];
  filesTruncated: boolean;
}

export async function walkArchive(archivePath: string, limits: Readonly<ArchiveLimits>, visit: EntryVisitor): Promise<ArchiveSummary> {
  // One handle for the whole walk: the bytes checked are the bytes parsed,
  // even if someone replaces the file at archivePath meanwhile.
  const handle = await open(archivePath, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    // A FIFO or a device would block forever or never end.
    if (!stats.isFile()) throw new ArchiveRejectedError('unsupported_format', 'the upload is not a regular file');
    return await walkReadable(handle, stats.size, limits, visit);
  } finally {
    await handle.close();
  }
}

/** The same walk over an archive held in memory (a small upload that never touched the disk). */
export async function walkArchiveBytes(bytes: Buffer, limits: Readonly<ArchiveLimits>, visit: EntryVisitor): Promise<ArchiveSummary> {
  return walkReadable(new BytesReader(bytes), bytes.length, limits, visit);
}

async function walkReadable(source: RandomAccess, size: number, limits: Readonly<ArchiveLimits>, visit: EntryVisitor): Promise<ArchiveSummary> {
  if (size > limits.maxCompressedBytes) {
    throw new ArchiveRejectedError('archive_too_large', `the archive is ${size} bytes, more than the limit of ${limits.maxCompressedBytes}`);
  }
  const ledger = new EntryLedger(limits);
  const format = await detectFormatOf(source);
  if (format === 'tar.gz') await walkTarGz(source, size, ledger, visit);
  else await walkZip(source, size, ledger, visit);
  return summarize(format, size, ledger);
}

function summarize(format: ArchiveFormat, compressedBytes: number, ledger: EntryLedger): ArchiveSummary {
  return {
    format,
    entries: ledger.entries,
    fileCount: ledger.fileCount,
    directoryCount: ledger.directoryCount,
    totalBytes: ledger.totalBytes,
    compressedBytes,
    files: [...ledger.listedFiles],
    filesTruncated: ledger.listedFiles.length < ledger.fileCount,
  };
}
