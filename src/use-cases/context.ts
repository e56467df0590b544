import type { Logger } from 'pino';
import type { KilnConfig } from '../config.ts';
import type { BuildLogs } from '../store/build-logs.ts';
import type { Database } from '../store/metadata/database.ts';
import type { SqlApplicationRepository } from '../store/metadata/repositories/applications.ts';
import type { SqlBuildRepository } from '../store/metadata/repositories/builds.ts';
import type { SqlOwnerRepository } from '../store/metadata/repositories/owners.ts';
import type { SqlVersionRepository } from '../store/metadata/repositories/versions.ts';
import type { ObjectStore } from '../store/objects/object-store.ts';
import type { UploadMemoryBudget } from '../archive/spool.ts';
import type { EarlyInspections } from '../evaluator/early-inspections.ts';
import type { KnownApplications } from './known-applications.ts';
import type { QueuedVersionWriter } from '../queue/queued-version-writer.ts';

/**
 * What use cases work with, built once at start-up. The API's `Services`
 * satisfies it; use cases never see HTTP, so each takes only the parts it
 * names (`Pick<UseCaseContext, …>`) and tests can hand them just those.
 */
export interface UseCaseContext {
  config: KilnConfig;
  database: Database;
  objects: ObjectStore;
  logger: Logger;
  owners: SqlOwnerRepository;
  applications: SqlApplicationRepository;
  versions: SqlVersionRepository;
  builds: SqlBuildRepository;
  logs: BuildLogs;
  /** Finished builds cached by the API: a deleted version's must not be served from memory. */
  finishedBuilds: { clear(): void };
  /** Memory this process lends to uploads in flight (config.uploadSpool.memoryTotalBytes). */
  uploadMemory: UploadMemoryBudget;
  /** Applications recently found to be their owner's: an upload skips the lookup (known-applications.ts). */
  knownApplications: KnownApplications;
  /** Artifacts' inspections started when a worker stored them, taken over by the evaluator (early-inspections.ts). */
  inspections: EarlyInspections;
  /** New versions' rows, written together with the other uploads' ready at the same time (group commit, queued-version-writer.ts). */
  queuedVersions: QueuedVersionWriter;
}
