import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { asc, eq } from 'drizzle-orm';
import { insertVersionsWithQueuedBuilds } from '../../src/queue/enqueue.ts';
import { BUILD_LOG_CHANNEL, BuildLogs, MAX_LOG_CAP_BYTES } from '../../src/store/build-logs.ts';
import type { Database } from '../../src/store/metadata/database.ts';
import { builds, logChunks } from '../../src/store/metadata/schema.ts';
import { FsObjectStore } from '../../src/store/objects/fs-store.ts';
import { databaseBackends } from '../support/backends.ts';
import { newApplication, queuedVersionInput } from '../support/rows.ts';

/** The API's cap in these tests: small, so that a few appends reach it. */
const CAP = 1_000;
const NOTE = '\n[kiln] log truncated: the log limit was reached\n';

for (const backend of databaseBackends()) {
  describe(`build log appends (one statement each), on ${backend.name}`, { skip: backend.skip }, () => {
    let database: Database;
    let objectsDir: string;
    let logs: BuildLogs;

    before(async () => {
      database = await backend.open();
      objectsDir = await mkdtemp(join(tmpdir(), 'kiln-log-append-'));
      logs = new BuildLogs(database, new FsObjectStore({ root: objectsDir }), CAP);
    });
    after(async () => {
      await database.close();
      await rm(objectsDir, { recursive: true, force: true });
    });

    async function newBuild(): Promise<string> {
      const [created] = await insertVersionsWithQueuedBuilds(database.db, [{ version: queuedVersionInput(await newApplication(database.db), '1.0.0'), maxAttempts: 3 }]);
      assert.ok(created);
      return created.build.id;
    }

    async function stored(buildId: string): Promise<{ text: string; seqs: number[]; logBytes: number }> {
      const rows = await database.db.select().from(logChunks).where(eq(logChunks.buildId, buildId)).orderBy(asc(logChunks.seq));
      const [row] = await database.db.select({ logBytes: builds.logBytes }).from(builds).where(eq(builds.id, buildId));
      return { text: Buffer.concat(rows.map((chunk) => chunk.data)).toString('utf8'), seqs: rows.map((chunk) => chunk.seq), logBytes: row?.logBytes ?? -1 };
    }

    it('keeps appends in order, each seq the log length after it, and reads them back after any seq', async () => {
      const buildId = await newBuild();
      assert.equal(await logs.append(buildId, Buffer.from('one\n')), 4);
      assert.equal(await logs.append(buildId, Buffer.from('two two\n')), 8);
      assert.equal(await logs.append(buildId, Buffer.from('three\n')), 6);
      const log = await stored(buildId);
      assert.equal(log.text, 'one\ntwo two\nthree\n');
      assert.deepEqual(log.seqs, [4, 12, 18]);
      assert.equal(log.logBytes, 18);
      const after = await logs.chunksAfter(buildId, 4);
      assert.deepEqual(
        after.map((chunk) => chunk.data.toString('utf8')),
        ['two two\n', 'three\n'],
      );
    });

    it('loses and doubles nothing when 40 appends to one build race', async () => {
      const buildId = await newBuild();
      const lines = Array.from({ length: 40 }, (_, index) => `line ${String(index).padStart(2, '0')}\n`);
      const kept = await Promise.all(lines.map((line) => logs.append(buildId, Buffer.from(line))));
      assert.deepEqual(kept, lines.map((line) => line.length));
      const log = await stored(buildId);
      assert.deepEqual(log.text.split('\n').filter(Boolean).sort(), lines.map((line) => line.trim()).sort(), 'every line exactly once');
      assert.equal(new Set(log.seqs).size, 40);
      assert.equal(log.logBytes, lines.join('').length);
      assert.equal(log.seqs.at(-1), log.logBytes);
    });

    it('cuts the append that crosses the cap, says so once, and keeps nothing after it', async () => {
      const buildId = await newBuild();
      assert.equal(await logs.append(buildId, Buffer.alloc(900, 'a')), 900);
      const crossing = await logs.append(buildId, Buffer.alloc(300, 'b'));
      assert.equal(crossing, 100 + NOTE.length);
      assert.equal(await logs.append(buildId, Buffer.from('after the cap\n')), 0);
      const log = await stored(buildId);
      assert.equal(log.text, `${'a'.repeat(900)}${'b'.repeat(100)}${NOTE}`);
      assert.equal(log.logBytes, 1_000 + NOTE.length);
      assert.equal(log.seqs.length, 2, 'the refused append stored no chunk');
    });

    it('cuts racing appends at the cap exactly once, whatever their order', async () => {
      const buildId = await newBuild();
      // Eight fit whole (960 bytes), the ninth is cut to 40, the last three are refused.
      const kept = await Promise.all(Array.from({ length: 12 }, () => logs.append(buildId, Buffer.alloc(120, 'x'))));
      assert.deepEqual(
        [...kept].sort((a, b) => a - b),
        [0, 0, 0, 40 + NOTE.length, ...Array<number>(8).fill(120)].sort((a, b) => a - b),
      );
      const log = await stored(buildId);
      assert.equal(log.text, `${'x'.repeat(1_000)}${NOTE}`);
      assert.equal(log.seqs.length, 9);
    });

    it('notifies followers of an append that kept something, and not of one the cap refused', async () => {
      const buildId = await newBuild();
      const seen: string[] = [];
      const stop = await database.notifier.listen(BUILD_LOG_CHANNEL, (payload) => seen.push(payload));
      try {
        await logs.append(buildId, Buffer.alloc(CAP + 1, 'z'));
        await logs.append(buildId, Buffer.from('refused\n'));
        // A NOTIFY sent after both appends: once it is back, theirs would have been too.
        const marker = randomUUID();
        await logs.append(await newBuild(), Buffer.from(marker));
        const deadline = Date.now() + 10_000;
        while (!seen.includes(buildId) || seen.filter((id) => id !== buildId).length === 0) {
          if (Date.now() > deadline) assert.fail(`notifications seen: ${seen.join(', ')}`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        assert.equal(seen.filter((id) => id === buildId).length, 1);
      } finally {
        await stop();
      }
    });

    it("keeps a second owner's log whole while the first floods its own past the cap", async () => {
      const flooded = await newBuild();
      const other = await newBuild();
      const lines = Array.from({ length: 20 }, (_, index) => `other ${index}\n`);
      const [flood, kept] = await Promise.all([
        Promise.all(Array.from({ length: 30 }, () => logs.append(flooded, Buffer.alloc(200, 'f')))),
        Promise.all(lines.map((line) => logs.append(other, Buffer.from(line)))),
      ]);
      assert.equal(flood.filter((bytes) => bytes > 0).length, 5, 'the flood is cut at its own cap');
      assert.deepEqual(kept, lines.map((line) => line.length));
      const log = await stored(other);
      assert.deepEqual(log.text.split('\n').filter(Boolean).sort(), lines.map((line) => line.trim()).sort());
      assert.equal(log.logBytes, lines.join('').length);
    });

    it('appends nothing to a build that does not exist', async () => {
      assert.equal(await logs.append(randomUUID(), Buffer.from('nobody\n')), 0);
    });

    it('refuses a cap its seq could not count', () => {
      assert.throws(() => new BuildLogs(database, new FsObjectStore({ root: objectsDir }), MAX_LOG_CAP_BYTES + 1), RangeError);
    });
  });
}
