/**
 * Where an uploaded archive waits while it is inspected and stored. A small
 * one stays in memory: writing it to a temp file, reading it back twice
 * (inspection, then the object store) and removing the file again cost more
 * than everything else an upload does but the database (profiled, issue 16).
 * A large one, or any upload while this process already holds its memory
 * budget of uploads, goes to a temp file as before, so memory stays bounded
 * whatever the number of concurrent uploads.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

const MIB = 1024 * 1024;

export interface UploadSpoolLimits {
  /** Largest archive one upload keeps in memory; a larger one is spooled to a temp file. */
  memoryBytes: number;
  /** Bytes of all uploads this process keeps in memory at once; beyond it, uploads are spooled to temp files. */
  memoryTotalBytes: number;
}

export const DEFAULT_UPLOAD_SPOOL: UploadSpoolLimits = { memoryBytes: 1 * MIB, memoryTotalBytes: 64 * MIB };

export type SpooledArchive = { kind: 'memory'; bytes: Buffer } | { kind: 'file'; path: string };

/** The bytes of uploads held in memory by this process, against a fixed total. */
export class UploadMemoryBudget {
  private used = 0;

  constructor(readonly totalBytes: number) {}

  /** Takes `bytes` of the budget if they are free; false (nothing taken) otherwise. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.totalBytes) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }

  get usedBytes(): number {
    return this.used;
  }
}

/**
 * One upload's spool: receives the archive stream once, then `dispose()`
 * gives its memory back and removes its temp directory (created only if the
 * archive went to disk).
 */
export class UploadSpool {
  private heldBytes = 0;
  private tempDir: string | undefined;

  constructor(
    private readonly dataDir: string,
    private readonly limits: UploadSpoolLimits,
    private readonly budget: UploadMemoryBudget,
  ) {}

  async receive(source: AsyncIterable<Buffer>): Promise<SpooledArchive> {
    const iterator = source[Symbol.asyncIterator]();
    const chunks: Buffer[] = [];
    for (;;) {
      const next = await iterator.next();
      if (next.done) return { kind: 'memory', bytes: chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks, this.heldBytes) };
      const chunk = next.value;
      if (!this.hold(chunk.length)) return this.spill(chunks, chunk, iterator);
      chunks.push(chunk);
    }
  }

  async dispose(): Promise<void> {
    this.release();
    if (this.tempDir) await rm(this.tempDir, { recursive: true, force: true });
  }

  private hold(bytes: number): boolean {
    if (this.heldBytes + bytes > this.limits.memoryBytes || !this.budget.tryTake(bytes)) return false;
    this.heldBytes += bytes;
    return true;
  }

  private release(): void {
    this.budget.give(this.heldBytes);
    this.heldBytes = 0;
  }

  /** Writes what was held, the chunk that did not fit and the rest of the stream to a temp file. */
  private async spill(held: Buffer[], chunk: Buffer, rest: AsyncIterator<Buffer>): Promise<SpooledArchive> {
    this.tempDir = path.join(this.dataDir, 'tmp', `upload-${randomUUID()}`);
    await mkdir(this.tempDir, { recursive: true, mode: 0o700 });
    const file = path.join(this.tempDir, 'source');
    const release = (): void => this.release();
    async function* everything(): AsyncGenerator<Buffer> {
      try {
        yield* held.splice(0);
        release();
        yield chunk;
        for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
      } finally {
        // A failed write stops reading the upload too (as piping the stream would).
        await rest.return?.();
      }
    }
    await pipeline(everything(), createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    return { kind: 'file', path: file };
  }
}
