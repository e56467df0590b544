import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePg, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { schema, type Schema } from './schema.ts';

export type Db = PgDatabase<PgQueryResultHKT, Schema>;
/** A transaction handle or the database itself: repositories accept either. */
export type Executor = Parameters<Parameters<Db['transaction']>[0]>[0] | Db;

/** Wake-ups between API instances (and the in-process long-polls). */
export interface Notifier {
  /** `onNotify` gets the NOTIFY payload ('' when none was sent). */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
}

export interface Database {
  readonly dialect: 'pglite' | 'postgres';
  readonly db: Db;
  readonly notifier: Notifier;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const migrationsFolder = fileURLToPath(new URL('../../../drizzle', import.meta.url));

export async function openPglite(dataDir: string | undefined): Promise<Database> {
  if (dataDir) await mkdir(dataDir, { recursive: true });
  const client = dataDir ? new PGlite(dataDir) : new PGlite();
  const db = drizzlePglite(client, { schema });
  await migratePglite(db, { migrationsFolder });
  return {
    dialect: 'pglite',
    db: db as unknown as Db,
    notifier: sharedNotifier((channel, onNotify) => client.listen(channel, (payload) => onNotify(payload ?? ''))),
    async ping() {
      await client.query('select 1');
    },
    async close() {
      await client.close();
    },
  };
}

/** Connections one API process keeps to PostgreSQL; a query beyond them waits for one to free up. */
export const POSTGRES_POOL_SIZE = 10;
/** How long a query waits for a pooled connection (or a new one) before failing as unavailable. */
export const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;

export async function openPostgres(url: string): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: POSTGRES_POOL_SIZE, connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS });
  // A client losing its server (database restart) must not crash the
  // process: idle clients report through the pool, and a client checked out
  // between two statements of a transaction reports on itself. The failed
  // statement still rejects; the pool drops the broken client on release.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = drizzlePg(pool, { schema });
  db.transaction = transactionsThatAlwaysRelease(pool);
  await migratePg(db, { migrationsFolder });
  const listeners = new Set<pg.Client>();
  return {
    dialect: 'postgres',
    db: db as unknown as Db,
    notifier: sharedNotifier((channel, onNotify) => listenWithReconnect(url, channel, onNotify, listeners)),
    async ping() {
      await pool.query('select 1');
    },
    async close() {
      for (const client of listeners) await client.end().catch(() => undefined);
      await pool.end();
    },
  };
}

type PgDb = NodePgDatabase<Schema>;

/**
 * drizzle's pooled transaction sends BEGIN before the block that gives its
 * connection back, so a connection that dies exactly then (a database
 * restart) is never released: the pool shrinks by one for good, and
 * `pool.end()` waits for it forever. Our transactions check the connection
 * out themselves and run drizzle's transaction on that one client, so the
 * connection always goes back, and is thrown away when BEGIN, COMMIT or
 * ROLLBACK failed (it may be dead, or still inside the transaction).
 */
function transactionsThatAlwaysRelease(pool: pg.Pool): PgDb['transaction'] {
  const onClient = new WeakMap<pg.PoolClient, PgDb>();
  return async (run, config) => {
    const client = await pool.connect();
    let db = onClient.get(client);
    if (!db) onClient.set(client, (db = drizzlePg(client, { schema })));
    const bodyFailed: { error?: unknown } = {};
    try {
      const result = await db.transaction(async (tx) => {
        try {
          return await run(tx);
        } catch (error) {
          bodyFailed.error = error;
          throw error;
        }
      }, config);
      client.release();
      return result;
    } catch (error) {
      // drizzle rethrows the block's own error only after its ROLLBACK went through.
      const connectionIsClean = 'error' in bodyFailed && bodyFailed.error === error;
      client.release(connectionIsClean ? undefined : asError(error));
      throw error;
    }
  };
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

type Subscribe = (channel: string, onNotify: (payload: string) => void) => Promise<() => Promise<void>>;

/**
 * One database subscription per channel, fanned out in process: every
 * long-polling claim listens, and a connection per poll would be wasteful.
 */
function sharedNotifier(subscribe: Subscribe): Notifier {
  const channels = new Map<string, { callbacks: Set<(payload: string) => void>; ready: Promise<() => Promise<void>> }>();
  return {
    async listen(channel, onNotify) {
      let entry = channels.get(channel);
      if (!entry) {
        const callbacks = new Set<(payload: string) => void>();
        const ready = subscribe(channel, (payload) => callbacks.forEach((callback) => callback(payload)));
        entry = { callbacks, ready };
        channels.set(channel, entry);
      }
      entry.callbacks.add(onNotify);
      await entry.ready;
      const callbacks = entry.callbacks;
      return async () => {
        callbacks.delete(onNotify);
      };
    },
  };
}

/**
 * LISTEN needs a dedicated connection. If it drops (database restart), we
 * reconnect in the background; long-polls also re-check periodically, so a
 * lost notification only delays a claim, never loses a job.
 */
async function listenWithReconnect(url: string, channel: string, onNotify: (payload: string) => void, clients: Set<pg.Client>): Promise<() => Promise<void>> {
  let stopped = false;
  let current: pg.Client | undefined;
  const connect = async (): Promise<void> => {
    if (stopped) return;
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    client.on('notification', (message) => onNotify(message.payload ?? ''));
    client.on('error', () => {
      clients.delete(client);
      client.end().catch(() => undefined);
      setTimeout(() => void connect().catch(() => undefined), 1_000).unref();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      current = client;
      clients.add(client);
      onNotify(''); // anything enqueued while we were disconnected
    } catch {
      await client.end().catch(() => undefined);
      setTimeout(() => void connect().catch(() => undefined), 1_000).unref();
    }
  };
  await connect();
  return async () => {
    stopped = true;
    if (current) {
      clients.delete(current);
      await current.end().catch(() => undefined);
    }
  };
}

export function openDatabase(options: { url?: string; dataDir?: string }): Promise<Database> {
  return options.url ? openPostgres(options.url) : openPglite(options.dataDir);
}
