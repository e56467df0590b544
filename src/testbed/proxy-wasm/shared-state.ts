/**
 * State a plugin shares across its contexts: the key-value store with
 * compare-and-swap, the named queues and the metrics. It lives as long as
 * the plugin's VM (in a real proxy it outlives requests the same way), and is
 * bounded so a filter cannot grow the host without limit.
 */
import type { MetricTypeName } from './abi.ts';
import { Status } from './abi.ts';

export interface SharedLimits {
  maxSharedBytes: number;
  maxQueueItems: number;
  maxMetrics: number;
}

export const DEFAULT_SHARED_LIMITS: SharedLimits = { maxSharedBytes: 16 * 1024 * 1024, maxQueueItems: 10_000, maxMetrics: 1000 };

interface SharedValue {
  value: Uint8Array;
  cas: number;
}

export class SharedData {
  private readonly entries = new Map<string, SharedValue>();
  private bytes = 0;
  // Never 0: a CAS of 0 means "no check" in proxy_set_shared_data.
  private nextCas = 1;

  constructor(private readonly limits: SharedLimits) {}

  get(key: string): SharedValue | undefined {
    return this.entries.get(key);
  }

  /** A non-zero `cas` must match the stored one; a key that does not exist yet accepts any (as Envoy does). */
  set(key: string, value: Uint8Array, cas: number): number {
    const existing = this.entries.get(key);
    if (cas !== 0 && existing !== undefined && existing.cas !== cas) return Status.CAS_MISMATCH;
    const grown = this.bytes - (existing ? existing.value.length + key.length : 0) + value.length + key.length;
    if (grown > this.limits.maxSharedBytes) return Status.INTERNAL_FAILURE;
    this.bytes = grown;
    this.entries.set(key, { value, cas: this.nextCas });
    this.nextCas = this.nextCas >= 0xffff_ffff ? 1 : this.nextCas + 1;
    return Status.OK;
  }

  snapshot(): Array<{ key: string; size: number; cas: number }> {
    return [...this.entries].map(([key, entry]) => ({ key, size: entry.value.length, cas: entry.cas }));
  }
}

interface Queue {
  name: string;
  /** The root context that registered it: proxy_on_queue_ready goes there. */
  ownerContextId: number;
  items: Uint8Array[];
}

export class SharedQueues {
  private readonly byId = new Map<number, Queue>();
  private readonly byName = new Map<string, number>();
  private nextId = 1;
  /** Bytes queued over all queues, bounded like shared data. */
  private bytes = 0;

  constructor(private readonly limits: SharedLimits) {}

  register(name: string, ownerContextId: number): number {
    const existing = this.byName.get(name);
    if (existing !== undefined) return existing;
    const id = this.nextId++;
    this.byId.set(id, { name, ownerContextId, items: [] });
    this.byName.set(name, id);
    return id;
  }

  resolve(name: string): number | undefined {
    return this.byName.get(name);
  }

  /** The owner to notify, or a failure status. */
  enqueue(id: number, value: Uint8Array): { status: number; owner?: number } {
    const queue = this.byId.get(id);
    if (!queue) return { status: Status.NOT_FOUND };
    if (queue.items.length >= this.limits.maxQueueItems || this.bytes + value.length > this.limits.maxSharedBytes) return { status: Status.INTERNAL_FAILURE };
    queue.items.push(value);
    this.bytes += value.length;
    return { status: Status.OK, owner: queue.ownerContextId };
  }

  dequeue(id: number): { status: number; value?: Uint8Array } {
    const queue = this.byId.get(id);
    if (!queue) return { status: Status.NOT_FOUND };
    const value = queue.items.shift();
    if (value === undefined) return { status: Status.EMPTY };
    this.bytes -= value.length;
    return { status: Status.OK, value };
  }
}

export interface MetricSnapshot {
  name: string;
  type: MetricTypeName;
  value: string;
  /** Histograms: how many values were recorded and their sum. */
  count?: number;
  sum?: string;
}

interface Metric {
  name: string;
  type: MetricTypeName;
  value: bigint;
  count: number;
  sum: bigint;
}

export class Metrics {
  private readonly byId = new Map<number, Metric>();
  private readonly byKey = new Map<string, number>();
  private nextId = 1;

  constructor(private readonly limits: SharedLimits) {}

  define(type: MetricTypeName, name: string): number | undefined {
    const key = `${type}\0${name}`;
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    if (this.byId.size >= this.limits.maxMetrics) return undefined;
    const id = this.nextId++;
    this.byId.set(id, { name, type, value: 0n, count: 0, sum: 0n });
    this.byKey.set(key, id);
    return id;
  }

  increment(id: number, delta: bigint): number {
    const metric = this.byId.get(id);
    if (!metric) return Status.NOT_FOUND;
    // Counters only go up; a histogram records values, it is not incremented.
    if (metric.type === 'histogram' || (metric.type === 'counter' && delta < 0n)) return Status.BAD_ARGUMENT;
    metric.value = BigInt.asUintN(64, metric.value + delta);
    return Status.OK;
  }

  record(id: number, value: bigint): number {
    const metric = this.byId.get(id);
    if (!metric) return Status.NOT_FOUND;
    const unsigned = BigInt.asUintN(64, value);
    if (metric.type === 'histogram') {
      metric.count++;
      metric.sum += unsigned;
    }
    metric.value = unsigned;
    return Status.OK;
  }

  get(id: number): { status: number; value?: bigint } {
    const metric = this.byId.get(id);
    if (!metric) return { status: Status.NOT_FOUND };
    if (metric.type === 'histogram') return { status: Status.BAD_ARGUMENT };
    return { status: Status.OK, value: metric.value };
  }

  snapshot(): MetricSnapshot[] {
    return [...this.byId.values()].map((m) => ({
      name: m.name,
      type: m.type,
      value: m.value.toString(),
      ...(m.type === 'histogram' ? { count: m.count, sum: m.sum.toString() } : {}),
    }));
  }
}
