import type { jobs } from '../store/metadata/schema.ts';

export type Job = typeof jobs.$inferSelect;

/** NOTIFY channel that wakes long-polling claimers. */
export const JOBS_CHANNEL = 'kiln_jobs';

export interface QueueSettings {
  /** How long a claim or heartbeat keeps the job; past it the job is re-queued. */
  leaseMs: number;
  /** Attempts before a build whose workers keep dying is marked crashed. */
  maxAttempts: number;
}

export const DEFAULT_QUEUE_SETTINGS: QueueSettings = { leaseMs: 30_000, maxAttempts: 3 };

/** The lease is not (or no longer) held: the worker must drop the job. */
export class LeaseLostError extends Error {
  readonly status = 409;
  readonly code = 'lease_lost';
  constructor(jobId: string) {
    super(`job ${jobId} is no longer leased to this worker (expired, cancelled or completed)`);
    this.name = 'LeaseLostError';
  }
}
