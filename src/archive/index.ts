/** Safe reading, extraction and packing of untrusted source archives. */
export { ArchiveRejectedError, ARCHIVE_REJECT_KIND, DEFAULT_ARCHIVE_LIMITS } from './limits.ts';
export type { ArchiveLimits, ArchiveProgress, ArchiveRejectReason } from './limits.ts';
export { detectFormat, inspectArchive, inspectArchiveBytes } from './inspect.ts';
export type { ArchiveFormat, ArchiveSummary } from './inspect.ts';
export { extractArchive } from './extract.ts';
export { packDirectory, PackRefusedError } from './pack.ts';
export type { PackOptions, PackRefusal, PackResult } from './pack.ts';
export { MAX_LISTED_FILES } from './ledger.ts';
