/**
 * Inspection of an uploaded archive before it is accepted: reads and
 * decompresses all of it, writes nothing, and either returns what is inside
 * or throws ArchiveRejectedError saying which entry is refused and why.
 */
import { DEFAULT_ARCHIVE_LIMITS, type ArchiveLimits } from './limits.ts';
import { walkArchive, walkArchiveBytes, type ArchiveSummary } from './walk.ts';

export { detectFormat, type ArchiveFormat } from './format.ts';
export type { ArchiveSummary } from './walk.ts';

export async function inspectArchive(archivePath: string, limits: Readonly<ArchiveLimits> = DEFAULT_ARCHIVE_LIMITS): Promise<ArchiveSummary> {
  // The walk drains every entry itself: that is where sizes are verified.
  return walkArchive(archivePath, limits, async () => {});
}

/** The same inspection of an archive held in memory. */
export async function inspectArchiveBytes(archive: Buffer, limits: Readonly<ArchiveLimits> = DEFAULT_ARCHIVE_LIMITS): Promise<ArchiveSummary> {
  return walkArchiveBytes(archive, limits, async () => {});
}
