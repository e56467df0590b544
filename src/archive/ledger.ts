/**
 * Book-keeping shared by the tar and zip readers: counts entries, admits
 * paths (validity, duplicates, file/directory conflicts) and meters the bytes
 * that actually come out of the decompressor. Every limit is enforced here, so
 * both formats obey exactly the same rules.
 */
import { ArchiveRejectedError, type ArchiveLimits, type ArchiveProgress, type ArchiveRejectReason } from './limits.ts';
import { checkEntryPath, isPathProblem, type EntryPath } from './paths.ts';

export type EntryKind = 'file' | 'directory';

/** The summary lists at most this many file paths; the counts stay exact. */
export const MAX_LISTED_FILES = 1000;

export class EntryLedger {
  readonly progress: ArchiveProgress = { compressedBytesRead: 0, uncompressedBytesRead: 0 };
  entries = 0;
  fileCount = 0;
  directoryCount = 0;
  totalBytes = 0;
  readonly listedFiles: string[] = [];
  private declaredTotal = 0;
  private readonly seen = new Set<string>();
  private readonly filePaths = new Set<string>();
  private readonly directoryPaths = new Set<string>();

  constructor(readonly limits: Readonly<ArchiveLimits>) {}

  /** Builds the error with a snapshot of how far reading got. */
  reject(reason: ArchiveRejectReason, why: string, entry?: string): ArchiveRejectedError {
    return new ArchiveRejectedError(reason, why, entry, { ...this.progress });
  }

  /**
   * Called once per entry, in archive order, before any of its content is
   * read. `declaredSize` is what the headers claim: honest bombs are refused
   * here, liars are caught by the meter.
   */
  admit(name: string, kind: EntryKind, declaredSize: number): EntryPath {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) throw this.reject('too_many_entries', `archive has more than ${this.limits.maxEntries} entries`, name);
    const checked = checkEntryPath(name, this.limits);
    if (isPathProblem(checked)) throw this.reject(checked.reason, checked.why, name);
    if (kind === 'file' && checked.path === '') throw this.reject('invalid_path', 'a file entry must have a name', name);
    this.checkUnique(name, checked, kind);
    if (kind === 'file') this.declareFile(name, checked.path, declaredSize);
    else this.directoryCount += 1;
    return checked;
  }

  private checkUnique(name: string, entry: EntryPath, kind: EntryKind): void {
    if (entry.path === '') return;
    if (this.seen.has(entry.path)) throw this.reject('duplicate_path', `path "${entry.path}" appears more than once in the archive`, name);
    this.seen.add(entry.path);
    if (kind === 'file' && this.directoryPaths.has(entry.path)) {
      throw this.reject('path_conflict', `"${entry.path}" is a file here but a directory elsewhere in the archive`, name);
    }
    const parents = kind === 'file' ? entry.segments.length - 1 : entry.segments.length;
    for (let depth = 1; depth <= parents; depth += 1) {
      const prefix = entry.segments.slice(0, depth).join('/');
      if (this.filePaths.has(prefix)) throw this.reject('path_conflict', `"${prefix}" is a file in this archive, not a directory`, name);
      this.directoryPaths.add(prefix);
    }
    if (kind === 'file') this.filePaths.add(entry.path);
  }

  private declareFile(name: string, path: string, declaredSize: number): void {
    const { maxFileBytes, maxTotalBytes } = this.limits;
    if (declaredSize > maxFileBytes) throw this.reject('file_too_large', `file declares ${declaredSize} bytes, more than the limit of ${maxFileBytes}`, name);
    this.declaredTotal += declaredSize;
    if (this.declaredTotal > maxTotalBytes) throw this.reject('total_too_large', `files declare more than ${maxTotalBytes} bytes in total`, name);
    this.fileCount += 1;
    if (this.listedFiles.length < MAX_LISTED_FILES) this.listedFiles.push(path);
  }

  /** Meters one file's decompressed content as it flows, chunk by chunk. */
  meterFile(name: string): FileMeter {
    return new FileMeter(this, name);
  }

  addContent(name: string, fileBytes: number, chunkBytes: number): void {
    const { maxFileBytes, maxTotalBytes } = this.limits;
    if (fileBytes > maxFileBytes) throw this.reject('file_too_large', `file decompresses to more than ${maxFileBytes} bytes`, name);
    this.totalBytes += chunkBytes;
    if (this.totalBytes > maxTotalBytes) throw this.reject('total_too_large', `archive decompresses to more than ${maxTotalBytes} bytes`, name);
  }
}

export class FileMeter {
  bytes = 0;

  constructor(
    private readonly ledger: EntryLedger,
    private readonly name: string,
  ) {}

  /** Throws before the chunk is handed on when it would cross a limit. */
  add(chunkBytes: number): void {
    this.bytes += chunkBytes;
    this.ledger.addContent(this.name, this.bytes, chunkBytes);
  }
}
