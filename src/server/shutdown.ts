import type { Logger } from 'pino';

/**
 * Runs a clean shutdown and exits 0 when it is done. If it is still not done
 * after `boundMs` (a stuck dependency: a database that does not answer its
 * close), exits 1 rather than linger half-stopped with nothing answering.
 */
export function shutdownThenExit(stop: () => Promise<unknown>, logger: Logger, boundMs: number): void {
  const stuck = setTimeout(() => {
    logger.error({ boundMs }, 'shutdown did not finish in time; exiting anyway');
    process.exit(1);
  }, boundMs);
  stuck.unref();
  stop().then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
}

/** Beyond the HTTP grace: workers report their killed jobs, the database closes. */
export const SHUTDOWN_SLACK_MS = 20_000;

/** On the first SIGINT or SIGTERM: log it, run `stop`, exit (bounded by `boundMs`, as above). */
export function stopOnSignals(stop: () => Promise<unknown>, logger: Logger, boundMs: number): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    shutdownThenExit(stop, logger, boundMs);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}
