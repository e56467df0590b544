import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { UploadMemoryBudget, UploadSpool, type SpooledArchive } from '../../src/archive/spool.ts';

const KIB = 1024;

function chunked(bytes: Buffer, size: number): Readable {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; offset += size) chunks.push(bytes.subarray(offset, offset + size));
  return Readable.from(chunks);
}

async function contents(archive: SpooledArchive): Promise<Buffer> {
  return archive.kind === 'memory' ? archive.bytes : readFile(archive.path);
}

describe('upload spool: memory for small uploads within the budget, a temp file otherwise', () => {
  let dataDir: string;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'kiln-spool-'));
  });
  after(() => rm(dataDir, { recursive: true, force: true }));

  const tempEntries = async () => readdir(join(dataDir, 'tmp')).catch(() => []);

  it('keeps an upload under the per-upload size in memory, writes no file, and gives its memory back', async () => {
    const budget = new UploadMemoryBudget(64 * KIB);
    const spool = new UploadSpool(dataDir, { memoryBytes: 16 * KIB, memoryTotalBytes: 64 * KIB }, budget);
    const bytes = randomBytes(10 * KIB);
    const archive = await spool.receive(chunked(bytes, 3 * KIB));
    assert.equal(archive.kind, 'memory');
    assert.deepEqual(await contents(archive), bytes);
    assert.equal(budget.usedBytes, bytes.length, 'held while the upload is processed');
    assert.deepEqual(await tempEntries(), []);
    await spool.dispose();
    assert.equal(budget.usedBytes, 0);
  });

  it('spools an upload larger than the per-upload size to a temp file, byte for byte, and removes it on dispose', async () => {
    const budget = new UploadMemoryBudget(64 * KIB);
    const spool = new UploadSpool(dataDir, { memoryBytes: 16 * KIB, memoryTotalBytes: 64 * KIB }, budget);
    const bytes = randomBytes(40 * KIB);
    const archive = await spool.receive(chunked(bytes, 3 * KIB));
    assert.equal(archive.kind, 'file');
    assert.deepEqual(await contents(archive), bytes);
    assert.equal(budget.usedBytes, 0, 'the chunks held before the spill are given back once written');
    assert.equal((await tempEntries()).length, 1);
    await spool.dispose();
    assert.deepEqual(await tempEntries(), []);
  });

  it('spools a small upload to a file when the process budget is taken by other uploads', async () => {
    const budget = new UploadMemoryBudget(16 * KIB);
    const limits = { memoryBytes: 16 * KIB, memoryTotalBytes: 16 * KIB };
    const first = new UploadSpool(dataDir, limits, budget);
    const second = new UploadSpool(dataDir, limits, budget);
    const held = await first.receive(chunked(randomBytes(12 * KIB), 4 * KIB));
    assert.equal(held.kind, 'memory');
    const bytes = randomBytes(8 * KIB);
    const spilled = await second.receive(chunked(bytes, 4 * KIB));
    assert.equal(spilled.kind, 'file', 'only 4 KiB of the budget was left');
    assert.deepEqual(await contents(spilled), bytes);
    await Promise.all([first.dispose(), second.dispose()]);
    assert.equal(budget.usedBytes, 0);
  });

  it('with a per-upload size of 0, every upload goes to a file', async () => {
    const budget = new UploadMemoryBudget(64 * KIB);
    const spool = new UploadSpool(dataDir, { memoryBytes: 0, memoryTotalBytes: 64 * KIB }, budget);
    const archive = await spool.receive(chunked(randomBytes(KIB), KIB));
    assert.equal(archive.kind, 'file');
    await spool.dispose();
  });

  it('an empty upload is an empty buffer (the archive check then refuses it)', async () => {
    const spool = new UploadSpool(dataDir, { memoryBytes: KIB, memoryTotalBytes: KIB }, new UploadMemoryBudget(KIB));
    const archive = await spool.receive(Readable.from([]));
    assert.equal(archive.kind, 'memory');
    assert.equal((await contents(archive)).length, 0);
    await spool.dispose();
  });
});
