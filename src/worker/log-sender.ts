import type { WorkerApiClient } from './client.ts';
import type { JobSpec } from './protocol.ts';

/**
 * Batches build output and sends it in order: one request in flight, the
 * next batch gathered meanwhile, so a chatty compiler costs a few requests a
 * second rather than one per line.
 */
export class LogSender {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;

  constructor(
    private readonly client: WorkerApiClient,
    private readonly job: JobSpec,
    private readonly flushIntervalMs = 200,
    private readonly maxBatchBytes = 256 * 1024,
  ) {}

  write(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= this.maxBatchBytes) this.flushSoon(0);
    else this.flushSoon(this.flushIntervalMs);
  }

  line(text: string): void {
    this.write(Buffer.from(`[kiln] ${text}\n`));
  }

  private flushSoon(delayMs: number): void {
    if (this.timer && delayMs > 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
  }

  /**
   * Sends everything written so far; resolves once the API has stored it.
   * (The client retries a batch through a short API outage.)
   */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pending.length > 0) {
      const batch = Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      this.inFlight = this.inFlight.then(() =>
        this.client.appendLog(this.job, batch).catch((error: unknown) => {
          this.failure ??= error;
        }),
      );
    }
    return this.inFlight;
  }

  /** The first error a send hit (e.g. the lease was lost), if any. */
  get error(): unknown {
    return this.failure;
  }
}
