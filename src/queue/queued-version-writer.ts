/**
 * Group commit for new versions: uploads whose rows are ready while earlier
 * ones are still being written go to the database together, as one
 * statement (insertVersionsWithQueuedBuilds), instead of one statement each.
 *
 * Why: on the upload path each request paid a whole statement of its own on
 * PostgreSQL (parse/bind of a four-CTE insert, three index updates, a NOTIFY,
 * a commit) and a pool round trip on the API's event loop; concurrent uploads
 * queued for the pool's connections behind each other (issue 16, decision
 * 0046). A batch pays the statement, the NOTIFY, the commit and the round
 * trip once.
 *
 * What it promises each caller, exactly as a statement of its own did:
 * - its promise resolves only after the statement holding its rows has
 *   committed, and with its own rows;
 * - its own failure is its own: a statement is all or nothing, so when a
 *   batch is refused by a constraint (one member's duplicate version, one
 *   member's application deleted meanwhile) nothing of it was written and
 *   every member is then written alone, one after the other, each getting
 *   the answer it would have had alone (409 for the duplicate, 404 for the
 *   deleted application, its rows for everyone else);
 * - any other failure of the batch (the database gone, a timeout) rejects
 *   every member with that error; nothing of the batch was written (one
 *   statement), so no member is acknowledged and none is half-written.
 *
 * No timer: a request arriving while fewer than `maxInFlight` statements
 * are running is sent at once (alone, at low load: no added latency); the
 * ones that arrive while all are busy wait for the next free slot and go
 * together, a power of two of them at a time (batchSize).
 */
import type { Executor } from '../store/metadata/database.ts';
import { isForeignKeyViolation, isUniqueViolation } from '../store/metadata/errors.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';
import { insertVersionsWithQueuedBuilds, insertVersionWithQueuedBuild, type QueuedVersionInput, type QueuedVersionRow } from './enqueue.ts';

export interface QueuedVersionWriterOptions {
  /** Most members in one statement (its placeholders grow with it; PostgreSQL allows 65,535). */
  maxBatch?: number;
  /** Statements running at once; the rest of the requests wait and go together. */
  maxInFlight?: number;
}

/**
 * Two statements at a time keep the database busy while the API prepares
 * the next batch, and leave the pool's other connections (10) to reads.
 */
export const DEFAULT_MAX_IN_FLIGHT = 2;
/** 17 placeholders a member: 64 members stay far under the protocol's limit. */
export const DEFAULT_MAX_BATCH = 64;

type Created = { version: Version; build: Build };

interface Member extends QueuedVersionRow {
  resolve: (created: Created) => void;
  reject: (error: unknown) => void;
}

export class QueuedVersionWriter {
  private readonly waiting: Member[] = [];
  private inFlight = 0;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly db: Executor,
    options: QueuedVersionWriterOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? DEFAULT_MAX_BATCH);
    this.maxInFlight = Math.max(1, options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
  }

  /** The version, its queued build 1 and the build's job, committed (alone or with others) before this resolves. */
  insert(version: QueuedVersionInput, maxAttempts: number): Promise<Created> {
    return new Promise<Created>((resolve, reject) => {
      this.waiting.push({ version, maxAttempts, resolve, reject });
      this.sendWhileFree();
    });
  }

  private sendWhileFree(): void {
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      const batch = this.waiting.splice(0, batchSize(this.waiting.length, this.maxBatch));
      this.inFlight++;
      void this.write(batch).finally(() => {
        this.inFlight--;
        this.sendWhileFree();
      });
    }
  }

  /** Settles every member of `batch`; never rejects itself. */
  private async write(batch: Member[]): Promise<void> {
    if (batch.length === 1) return this.writeAlone(batch[0] as Member);
    let created: Created[];
    try {
      created = await insertVersionsWithQueuedBuilds(this.db, batch);
    } catch (error) {
      // A constraint refused one member's row, and with it the whole
      // statement (nothing was written): each member is written alone now,
      // so the failure reaches only the member it belongs to.
      if (isUniqueViolation(error) || isForeignKeyViolation(error)) {
        for (const member of batch) await this.writeAlone(member);
        return;
      }
      for (const member of batch) member.reject(error);
      return;
    }
    batch.forEach((member, index) => member.resolve(created[index] as Created));
  }

  private async writeAlone(member: Member): Promise<void> {
    try {
      member.resolve(await insertVersionWithQueuedBuild(this.db, member.version, member.maxAttempts));
    } catch (error) {
      member.reject(error);
    }
  }
}

/**
 * How many of `waiting` members the next statement takes: the largest power
 * of two up to `maxBatch`. Each batch size is a statement of its own, built
 * by the query builder and, on PostgreSQL, parsed once per connection: with
 * every count from 2 to 64 a busy API built and sent 63 of them (up to 630
 * server-side parses over a pool of 10), with powers of two 6 (decision
 * 0053). The members left over go with the next free statement.
 */
export function batchSize(waiting: number, maxBatch: number): number {
  let size = 1;
  while (size * 2 <= Math.min(waiting, maxBatch)) size *= 2;
  return size;
}

