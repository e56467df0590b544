import { EventEmitter } from 'node:events';
import { and, asc, eq, gt, inArray, isNull, sql } from 'drizzle-orm';
import type { Database, Executor } from './metadata/database.ts';
import { builds, logChunks, TERMINAL_BUILD_STATES } from './metadata/schema.ts';
import type { Build } from './metadata/repositories/builds.ts';
import { buildLogKey } from './objects/keys.ts';
import type { ObjectStore } from './objects/object-store.ts';

/** NOTIFY channel carrying the id of a build whose log or state changed (wakes log followers). */
export const BUILD_LOG_CHANNEL = 'kiln_build_logs';

/**
 * The largest cap a log may have. A chunk's seq is the log's length after
 * it (see append), and seq is a 32-bit integer: a cap below 1 GiB keeps
 * every length, the note included, far inside it.
 */
export const MAX_LOG_CAP_BYTES = 1024 ** 3;

/** Ends the part of a chunk that fitted under the cap. */
const TRUNCATED_NOTE = Buffer.from('\n[kiln] log truncated: the log limit was reached\n');

/** The rows of a raw statement: node-postgres and PGlite both answer with `rows`. */
function rowsOf<T>(result: unknown): T[] {
  return (result as { rows: T[] }).rows;
}

/**
 * Build logs: appended as chunks in the database while the build runs (each
 * append is durable before the worker gets its 204), joined into one object
 * when the build ends. Readers get the object if it exists, else the chunks.
 */
export class BuildLogs {
  private readonly events = new EventEmitter();

  constructor(
    private readonly database: Database,
    private readonly objects: ObjectStore,
    /** Hard cap kept by the API whatever a worker sends. */
    private readonly maxBytes: number,
  ) {
    this.events.setMaxListeners(0);
    if (!Number.isInteger(maxBytes) || maxBytes < 1 || maxBytes > MAX_LOG_CAP_BYTES) throw new RangeError(`a build log's cap must be 1 to ${MAX_LOG_CAP_BYTES} bytes, got ${maxBytes}`);
  }

  private unlisten?: () => Promise<void>;

  /**
   * Followers are woken by NOTIFY, so appends made through another API
   * instance reach them too; our own NOTIFYs come back the same way, after
   * commit. Before start() (tools, tests without a server) wakes stay in process.
   */
  async start(): Promise<void> {
    this.unlisten ??= await this.database.notifier.listen(BUILD_LOG_CHANNEL, (buildId) => {
      if (buildId) this.events.emit(buildId);
    });
  }

  async stop(): Promise<void> {
    await this.unlisten?.();
    this.unlisten = undefined;
  }

  /** Delivered when `executor`'s transaction commits (at once outside one). */
  private async notify(executor: Executor, buildId: string): Promise<void> {
    await executor.execute(sql`select pg_notify(${BUILD_LOG_CHANNEL}, ${buildId})`);
  }

  static objectKey(build: Pick<Build, 'ownerId' | 'versionId' | 'id'>): string {
    return buildLogKey(build);
  }

  /**
   * Appends in order; returns the bytes actually kept (0 once the cap is
   * reached). One statement (decision 0054): it locks the build's row,
   * keeps what fits under the cap (and says where the log was cut), stores
   * the chunk, grows log_bytes and notifies followers, atomically. On the
   * embedded database each round trip is planned and run on the event loop,
   * and the transaction it replaces made six.
   *
   * A chunk's seq is the log's length once it is appended: it grows with
   * every append, and two appends that waited on the same row lock still get
   * different ones (each reads the length its predecessor left, which the
   * lock hands over; a max(seq) read in the statement would see the
   * snapshot from before the wait).
   */
  async append(buildId: string, data: Buffer): Promise<number> {
    if (data.length === 0) return 0;
    const result = await this.database.db.execute(sql`
      with input as (select ${data}::bytea as data),
      current as (select ${builds.logBytes} as before from ${builds} where ${builds.id} = ${buildId} for update),
      kept as (
        select case when octet_length(input.data) > ${this.maxBytes}::bigint - current.before
          then substring(input.data from 1 for (${this.maxBytes}::bigint - current.before)::int) || ${TRUNCATED_NOTE}::bytea
          else input.data end as chunk
        from input, current where current.before < ${this.maxBytes}::bigint
      ),
      grown as (
        update ${builds} set log_bytes = ${builds.logBytes} + octet_length(kept.chunk) from kept where ${builds.id} = ${buildId}
        returning ${builds.logBytes} as after, octet_length(kept.chunk) as kept
      ),
      stored as (insert into ${logChunks} (build_id, seq, data) select ${buildId}::uuid, grown.after, kept.chunk from grown, kept)
      select grown.kept, pg_notify(${BUILD_LOG_CHANNEL}, ${buildId}) from grown`);
    this.wakeLocally(buildId);
    const [row] = rowsOf<{ kept: number | string }>(result);
    return row ? Number(row.kept) : 0;
  }

  /** A host-side line (platform facts) appended to the build's log. */
  appendLine(buildId: string, line: string): Promise<number> {
    return this.append(buildId, Buffer.from(`[kiln] ${line}\n`));
  }

  async read(build: Pick<Build, 'id' | 'logKey'>): Promise<Buffer> {
    if (build.logKey) return this.readObject(build.logKey);
    const rows = await this.database.db.select({ data: logChunks.data }).from(logChunks).where(eq(logChunks.buildId, build.id)).orderBy(asc(logChunks.seq));
    if (rows.length > 0) return Buffer.concat(rows.map((row) => row.data));
    // The caller's row may predate finalize(): the chunks went (all at once, in
    // one transaction) into the object since. Without this the log of a build
    // that just ended read back empty.
    const [fresh] = await this.database.db.select({ logKey: builds.logKey }).from(builds).where(eq(builds.id, build.id));
    return fresh?.logKey ? this.readObject(fresh.logKey) : Buffer.alloc(0);
  }

  private async readObject(key: string): Promise<Buffer> {
    const { body } = await this.objects.getBuffer(key);
    return body;
  }

  /** Chunks appended after `afterSeq` (for live following). */
  async chunksAfter(buildId: string, afterSeq: number): Promise<Array<{ seq: number; data: Buffer }>> {
    return this.database.db
      .select({ seq: logChunks.seq, data: logChunks.data })
      .from(logChunks)
      .where(and(eq(logChunks.buildId, buildId), gt(logChunks.seq, afterSeq)))
      .orderBy(asc(logChunks.seq));
  }

  /**
   * Moves a finished build's chunks into one object. Idempotent: safe to run
   * again after a crash between the object write and the chunk deletion.
   * `known` is the build's row when the caller has just read it.
   */
  async finalize(buildId: string, known?: Build): Promise<void> {
    const [build] = known?.id === buildId ? [known] : await this.database.db.select().from(builds).where(eq(builds.id, buildId));
    if (!build || build.logKey) {
      this.touch(buildId);
      return;
    }
    const content = await this.read(build);
    const key = BuildLogs.objectKey(build);
    await this.objects.put(key, content, { contentType: 'text/plain' });
    // One statement, so all or nothing as a transaction was, in one round trip.
    await this.database.db.execute(sql`
      with moved as (update ${builds} set log_key = ${key} where ${builds.id} = ${buildId}),
      dropped as (delete from ${logChunks} where ${logChunks.buildId} = ${buildId})
      select pg_notify(${BUILD_LOG_CHANNEL}, ${buildId})`);
    this.wakeLocally(buildId);
  }

  /** Finalizes logs of builds that ended while the process died mid-way. */
  async finalizePending(): Promise<void> {
    const pending = await this.database.db
      .select({ id: builds.id })
      .from(builds)
      .where(and(isNull(builds.logKey), inArray(builds.state, [...TERMINAL_BUILD_STATES])));
    for (const row of pending) await this.finalize(row.id);
  }

  /** Calls `onChange` whenever the build's log or state may have changed. */
  subscribe(buildId: string, onChange: () => void): () => void {
    this.events.on(buildId, onChange);
    return () => this.events.off(buildId, onChange);
  }

  /** Wakes followers (here and on other API instances) after a state change that did not append to the log. */
  touch(buildId: string): void {
    this.wakeLocally(buildId);
    // Best effort: a follower that misses it still re-checks (see api/follow-log.ts).
    this.notify(this.database.db, buildId).catch(() => this.events.emit(buildId));
  }

  /** Only when not listening: a listening instance is woken by its own NOTIFY, once. */
  private wakeLocally(buildId: string): void {
    if (!this.unlisten) this.events.emit(buildId);
  }
}
