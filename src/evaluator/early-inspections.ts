import { isComponentBinary } from '../wasm/component.ts';
import { inspectOffThread, type Inspection, type InspectLimits } from './inspect-thread.ts';

/**
 * Inspections started when a worker stores an artifact, ahead of its report
 * (decision 0047). The evaluator judges the *stored* object when the report
 * arrives; until now it read the object back and only then validated it, so
 * the report waited for both. An artifact's inspection now starts as soon as
 * the object is stored, while the worker uploads the other variant and sends
 * its log, and the evaluator takes it over when the stored object is the one
 * that was inspected: same key and same sha256 (the digest the store
 * computed when it wrote those bytes, and reports for the object now). Any
 * other case — another object at that key, an evicted or failed entry, a
 * component (judged by its own small parser from the bytes), another API
 * process — is judged from the stored bytes as before.
 *
 * Bounded: at most `max` entries, the oldest dropped first (a report that
 * never comes, a lost lease, leaves one entry until then).
 */
export class EarlyInspections {
  private readonly entries = new Map<string, { sha256: string; inspection: Promise<Inspection | undefined> }>();

  constructor(private readonly max = 64) {}

  /** The object at `key` was stored with these bytes (digest `sha256`): inspect them now. */
  start(key: string, sha256: string, bytes: Uint8Array, limits: InspectLimits): void {
    if (isComponentBinary(bytes)) return;
    // A failure of the inspection itself (not a verdict) is not kept: the evaluator then inspects again.
    const inspection = inspectOffThread(bytes, limits).catch(() => undefined);
    this.entries.delete(key);
    this.entries.set(key, { sha256, inspection });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.max) break;
      this.entries.delete(oldest);
    }
  }

  /**
   * The inspection of exactly the object stored at `key` now (`sha256`), taken
   * out (used once); undefined when there is none or it failed.
   */
  take(key: string, sha256: string): Promise<Inspection | undefined> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    return entry.sha256 === sha256 ? entry.inspection : undefined;
  }
}
