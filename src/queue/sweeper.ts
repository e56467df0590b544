import type { Database } from '../store/metadata/database.ts';
import { sweepExpiredLeases, type SweepResult } from './lease.ts';

/**
 * Runs the lease sweep periodically. Several API instances may run it at
 * once: the sweep locks rows with SKIP LOCKED, so each expired job is handled
 * by exactly one of them.
 */
export function startLeaseSweeper(database: Database, intervalMs: number, onSwept: (result: SweepResult) => Promise<void>, onError: (error: unknown) => void): () => Promise<void> {
  let running: Promise<void> | undefined;
  const tick = () => {
    if (running) return;
    running = sweepExpiredLeases(database)
      .then(onSwept)
      .catch(onError)
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
