import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { inspectArchive, inspectArchiveBytes, type ArchiveSummary } from '../archive/inspect.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';
import type { OptimizeOptions } from '../store/metadata/schema.ts';
import { sourceKey } from '../store/objects/keys.ts';
import type { UseCaseContext } from './context.ts';
import { requireApplication } from './lookups.ts';
import { isForeignKeyViolation } from '../store/metadata/errors.ts';
import { notFound, UserError } from '../errors.ts';
import { UploadSpool, type SpooledArchive } from '../archive/spool.ts';

export const DEFAULT_OPTIMIZE: OptimizeOptions = { strip: true, wasmOpt: 'O2', wizer: true, memoryCapPages: null };

/** What the uploader says about the version (already validated by the caller's schema). */
export interface UploadMetadata {
  version: string;
  language?: string;
  kind?: string;
  phases?: string[];
  config?: string;
  notes?: string;
  optimize?: Partial<OptimizeOptions>;
}

export interface ReceivedUpload {
  metadata: UploadMetadata;
  /** The source archive, as the receiver put it into the spool it was given. */
  archive: SpooledArchive;
}

export interface UploadRequest {
  ownerId: string;
  applicationId: string;
  /**
   * Reads the upload into `spool`. Called only once the application is
   * known to be the owner's, so a wrong id is refused before any body is read.
   */
  receive: (spool: UploadSpool) => Promise<ReceivedUpload>;
}

export type UploadContext = Pick<UseCaseContext, 'config' | 'database' | 'objects' | 'applications' | 'uploadMemory' | 'knownApplications' | 'queuedVersions'>;

/**
 * A new version and its first build: the archive is inspected (limits,
 * hostile entries), stored, and then the version, its queued build and the
 * build's job are created in one statement (all or nothing, one round trip;
 * shared with the other uploads ready at the same time, decision 0046), so a
 * worker never sees a job without its source, nor a version without its
 * build.
 */
export async function uploadVersion(context: UploadContext, request: UploadRequest): Promise<{ version: Version; build: Build }> {
  await requireOwnedApplication(context, request.ownerId, request.applicationId);
  const spool = new UploadSpool(context.config.dataDir, context.config.uploadSpool, context.uploadMemory);
  try {
    const { metadata, archive } = await request.receive(spool);
    const summary = await inspect(archive, context.config.archiveLimits);
    const versionId = randomUUID();
    const key = sourceKey({ ownerId: request.ownerId, id: versionId }, summary.format);
    // Durability first: the object is written before any row points at it.
    const body = archive.kind === 'memory' ? archive.bytes : createReadStream(archive.path);
    const stored = await context.objects.put(key, body, { contentType: 'application/octet-stream' });
    try {
      // Committed alone or together with other uploads ready at the same time; answered only once committed.
      return await context.queuedVersions.insert(
        {
          id: versionId,
          ownerId: request.ownerId,
          applicationId: request.applicationId,
          version: metadata.version,
          // What the uploader left out takes its default in one place (enqueue.ts).
          language: metadata.language,
          kind: metadata.kind,
          phases: metadata.phases,
          config: metadata.config,
          notes: metadata.notes,
          optimize: { ...DEFAULT_OPTIMIZE, ...metadata.optimize },
          sourceKey: key,
          sourceSha256: stored.sha256,
          sourceSize: stored.size,
          sourceFormat: summary.format,
        },
        context.config.queue.maxAttempts,
      );
    } catch (error) {
      // Refused by a constraint (a duplicate version, an application deleted
      // meanwhile): nothing was written and no row refers to the object, so
      // it is removed now rather than left to the consistency check. Any other
      // failure may have come after the commit (a connection lost before the
      // answer): the object stays, an orphan at worst, never a dangling row.
      const refused = error instanceof UserError || isForeignKeyViolation(error);
      if (refused) await context.objects.delete(key).catch(() => undefined);
      // Deleted since it was found (through another API process, or during this upload).
      if (isForeignKeyViolation(error)) {
        context.knownApplications.forget(request.ownerId, request.applicationId);
        throw notFound('application', request.applicationId);
      }
      throw error;
    }
  } finally {
    await spool.dispose();
  }
}

/** The owner's application must exist before any of the body is read: found recently, or looked up now. */
async function requireOwnedApplication(context: UploadContext, ownerId: string, applicationId: string): Promise<void> {
  if (context.knownApplications.has(ownerId, applicationId)) return;
  await requireApplication(context, ownerId, applicationId);
  context.knownApplications.remember(ownerId, applicationId);
}

function inspect(archive: SpooledArchive, limits: UploadContext['config']['archiveLimits']): Promise<ArchiveSummary> {
  return archive.kind === 'memory' ? inspectArchiveBytes(archive.bytes, limits) : inspectArchive(archive.path, limits);
}
