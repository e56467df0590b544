import type { Logger } from 'pino';
import type { KilnConfig } from '../config.ts';
import type { BuildLogs } from '../store/build-logs.ts';
import type { Database } from '../store/metadata/database.ts';
import { SqlApplicationRepository } from '../store/metadata/repositories/applications.ts';
import { SqlBuildRepository } from '../store/metadata/repositories/builds.ts';
import { SqlOwnerRepository } from '../store/metadata/repositories/owners.ts';
import { SqlTokenRepository } from '../store/metadata/repositories/tokens.ts';
import { SqlVersionRepository } from '../store/metadata/repositories/versions.ts';
import type { ObjectStore } from '../store/objects/object-store.ts';
import type { UseCaseContext } from '../use-cases/context.ts';
import type { BuildEvents } from './build-events.ts';
import type { FinishedBuildCache } from './finished-builds.ts';
import type { Metrics } from './metrics.ts';

/** Everything a route needs, built once at start-up: what use cases need, plus the API's own parts. */
export interface Services extends UseCaseContext {
  config: KilnConfig;
  database: Database;
  objects: ObjectStore;
  owners: SqlOwnerRepository;
  tokens: SqlTokenRepository;
  applications: SqlApplicationRepository;
  versions: SqlVersionRepository;
  builds: SqlBuildRepository;
  logs: BuildLogs;
  metrics: Metrics;
  logger: Logger;
  finishedBuilds: FinishedBuildCache;
  buildEvents: BuildEvents;
}

export function repositories(database: Database) {
  return {
    owners: new SqlOwnerRepository(database.db),
    tokens: new SqlTokenRepository(database.db),
    applications: new SqlApplicationRepository(database.db),
    versions: new SqlVersionRepository(database.db),
    builds: new SqlBuildRepository(database.db),
  };
}
