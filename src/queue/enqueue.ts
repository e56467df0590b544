import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Executor } from '../store/metadata/database.ts';
import { jobs } from '../store/metadata/schema.ts';
import { JOBS_CHANNEL, type Job } from './jobs.ts';

/**
 * Enqueues the job of a queued build. Call inside the transaction that
 * created the build so the build and its job exist together or not at all;
 * the NOTIFY is delivered only when that transaction commits.
 */
export async function enqueueBuild(tx: Executor, buildId: string, maxAttempts: number): Promise<Job> {
  const [job] = await tx.insert(jobs).values({ id: randomUUID(), buildId, state: 'queued', maxAttempts }).returning();
  if (!job) throw new Error('insert returned no row');
  await tx.execute(sql`select pg_notify(${JOBS_CHANNEL}, '')`);
  return job;
}
