import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { buildApp, type App } from '../api/app.ts';
import { BuildEvents } from '../api/build-events.ts';
import { FinishedBuildCache } from '../api/finished-builds.ts';
import { createMetrics } from '../api/metrics.ts';
import { repositories, type Services } from '../api/services.ts';
import type { KilnConfig } from '../config.ts';
import { startLeaseSweeper } from '../queue/sweeper.ts';
import { BuildLogs } from '../store/build-logs.ts';
import { openDatabase } from '../store/metadata/database.ts';
import { createObjectStore } from '../store/objects/index.ts';
import { bootstrapCredentials, type LocalCredentials } from './bootstrap.ts';
import { UploadMemoryBudget } from '../archive/spool.ts';
import { KnownApplications } from '../use-cases/known-applications.ts';
import { EarlyInspections } from '../evaluator/early-inspections.ts';
import { QueuedVersionWriter } from '../queue/queued-version-writer.ts';

export interface RunningKiln {
  url: string;
  app: App;
  services: Services;
  credentials: LocalCredentials;
  close(): Promise<void>;
}

/**
 * Stops accepting at once (new requests get 503), lets in-flight ones finish
 * for up to `graceMs`, then closes whatever connections remain so that a
 * stuck client cannot hold the process (and the database) open.
 */
async function closeWithin(app: App, graceMs: number, logger: Logger): Promise<void> {
  const force = setTimeout(() => {
    logger.warn({ graceMs }, 'shutdown grace over: closing the connections still open');
    app.server.closeAllConnections();
  }, graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(force);
  }
}

export interface StartOptions {
  logger?: Logger;
  logRequests?: boolean;
  sweepIntervalMs?: number;
}

/**
 * Starts the API: database (migrated), object store, credentials, HTTP
 * server and the lease sweeper. Local workers are started by the caller
 * (`kiln serve`) against the returned URL, exactly as remote ones would be.
 */
export async function startKiln(config: KilnConfig, options: StartOptions = {}): Promise<RunningKiln> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'kiln-api' } });
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  // Uploads half-received when the process died are garbage.
  await rm(path.join(config.dataDir, 'tmp'), { recursive: true, force: true });
  const database = await openDatabase({ url: config.databaseUrl, dataDir: path.join(config.dataDir, 'db') });
  const objects = await createObjectStore(config.objects);
  await objects.ping();
  const credentials = await bootstrapCredentials(database, config.dataDir);
  const logs = new BuildLogs(database, objects, config.logMaxBytes);
  await logs.finalizePending();
  await logs.start();
  const services: Services = { config, database, objects, logs, metrics: createMetrics(), logger, finishedBuilds: new FinishedBuildCache(), buildEvents: new BuildEvents(), uploadMemory: new UploadMemoryBudget(config.uploadSpool.memoryTotalBytes), knownApplications: new KnownApplications(), inspections: new EarlyInspections(), queuedVersions: new QueuedVersionWriter(database.db), ...repositories(database) };
  const app = await buildApp(services, { logRequests: options.logRequests });
  const address = await app.listen({ host: config.host, port: config.port });
  const url = address.replace('0.0.0.0', '127.0.0.1');
  // Beside local-token, so the CLI on this machine finds a non-default port too.
  await writeFile(path.join(config.dataDir, 'local-url'), `${url}\n`, { mode: 0o600 });
  const stopSweeper = startLeaseSweeper(
    database,
    options.sweepIntervalMs ?? 1_000,
    async (result) => {
      for (const buildId of result.requeued) await logs.appendLine(buildId, 'the worker stopped responding (lease expired); re-queued');
      for (const buildId of [...result.crashed, ...result.cancelled]) {
        await logs.finalize(buildId);
        logs.touch(buildId);
      }
    },
    (error) => logger.error({ err: error }, 'lease sweep failed'),
  );
  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    services,
    credentials,
    close() {
      closing ??= (async () => {
        await stopSweeper();
        await closeWithin(app, config.shutdownGraceMs, logger);
        await logs.stop();
        await database.close();
      })();
      return closing;
    },
  };
}
