import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { openPostgres, POSTGRES_POOL_SIZE, type Database } from '../../src/store/metadata/database.ts';
import { databaseBackends, freshPostgresUrl } from '../support/backends.ts';
import { startTcpRelay, type TcpRelay } from '../support/tcp-relay.ts';

const postgres = databaseBackends().find((backend) => backend.name === 'PostgreSQL');

/** The bytes of a simple-protocol query message whose text starts with `statement`. */
function isQuery(chunk: Buffer, statement: string): boolean {
  return chunk[0] === 0x51 /* 'Q' */ && chunk.subarray(5).toString('latin1').toLowerCase().startsWith(statement);
}

/** The rows of a raw query (the schema-generic database types them as unknown). */
function rowsOf(result: unknown): Record<string, unknown>[] {
  return (result as { rows: Record<string, unknown>[] }).rows;
}

/** drizzle wraps the driver's error as the cause of its own "Failed query". */
function isLostConnection(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (/connection terminated|not queryable|ECONNRESET/i.test(current.message)) return true;
  }
  return false;
}

describe('PostgreSQL connections lost in the middle of a transaction', { skip: postgres?.skip ?? 'no PostgreSQL backend' }, () => {
  let relay: TcpRelay;
  let database: Database;
  let dropOn: string | undefined;
  let closed = false;

  before(async () => {
    const url = new URL(await freshPostgresUrl());
    relay = await startTcpRelay({ host: url.hostname, port: Number(url.port) }, { dropConnectionWhen: (chunk) => dropOn !== undefined && isQuery(chunk, dropOn) });
    url.port = String(relay.port);
    database = await openPostgres(url.toString());
  });
  after(async () => {
    if (!closed) await database?.close();
    await relay?.close();
  });

  for (const statement of ['begin', 'commit']) {
    it(`give their connection back to the pool when ${statement.toUpperCase()} is the statement that fails`, async () => {
      dropOn = statement;
      try {
        // More failures than the pool has connections: a leaked connection per failure would leave none.
        for (let attempt = 0; attempt <= POSTGRES_POOL_SIZE; attempt++) {
          await assert.rejects(database.db.transaction(async (tx) => tx.execute(sql`select 1`)), isLostConnection);
        }
      } finally {
        dropOn = undefined;
      }
      const answer = await database.db.transaction(async (tx) => tx.execute(sql`select 41 + 1 as n`));
      assert.equal(Number(rowsOf(answer)[0]?.n), 42);
    });
  }

  it('keep a connection whose block failed and rolled back, with no transaction left open on it', async () => {
    let backend: number | undefined;
    await assert.rejects(
      database.db.transaction(async (tx) => {
        backend = Number(rowsOf(await tx.execute(sql`select pg_backend_pid() as pid`))[0]?.pid);
        throw new Error('the block gave up');
      }),
      /the block gave up/,
    );
    // The pool hands its most recently returned connection out first, so this is likely asked on that very one.
    const seen = await database.db.execute(sql`select state, pid = pg_backend_pid() as asking from pg_stat_activity where pid = ${backend}`);
    assert.equal(rowsOf(seen).length, 1, 'the server connection was kept, not thrown away');
    const [{ state, asking }] = rowsOf(seen) as [{ state: string; asking: boolean }];
    assert.ok(asking || state === 'idle', `the kept connection is outside any transaction (state ${state})`);
  });

  it('close without waiting for a connection that was lost', async () => {
    dropOn = 'begin';
    await assert.rejects(database.db.transaction(async (tx) => tx.execute(sql`select 1`)));
    dropOn = undefined;
    // pool.end() resolves only once every connection was given back; a leaked one would leave this pending.
    closed = true;
    await database.close();
  });
});
