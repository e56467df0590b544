/**
 * State a plugin shares across its contexts: the key-value store with
 * compare-and-swap, the named queues and the metrics. It lives as long as
 * the plugin's VM (in a real proxy it outlives requests the same way).
 *
 * It is bounded PER OWNER: every VM of one owner in this test bed process
 * draws on the same OwnerAccount (owner-budget.ts: one table shared by the
 * process's worker threads), so a tenant cannot multiply its share by
 * starting more versions or VMs, or by landing on more workers. A VM gives
 * its share back when it is disposed.
 */
import type { OwnerAccount } from '../owner-budget.ts';
import type { OwnerSharedLimits } from '../protocol.ts';
import type { MetricTypeName } from './abi.ts';
import { Status } from './abi.ts';

export type SharedLimits = OwnerSharedLimits;

export const DEFAULT_SHARED_LIMITS: SharedLimits = { maxSharedKeys: 1_000, maxSharedBytes: 4 * 1024 * 1024, maxQueues: 64, maxQueueDepth: 1_000, maxQueueBytes: 4 * 1024 * 1024, maxMetrics: 1000 };

/** Tells the filter's recording which limit refused what. */
export type LimitReporter = (limit: string, note: string) => void;

interface SharedValue {
  value: Uint8Array;
  cas: number;
}

export class SharedData {
  private readonly entries = new Map<string, SharedValue>();
  // Never 0: a CAS of 0 means "no check" in proxy_set_shared_data.
  private nextCas = 1;

  constructor(
    private readonly limits: SharedLimits,
    private readonly usage: OwnerAccount,
    private readonly refused: LimitReporter,
  ) {}

  get(key: string): SharedValue | undefined {
    return this.entries.get(key);
  }

  /** A non-zero `cas` must match the stored one; a key that does not exist yet accepts any (as Envoy does). */
  set(key: string, value: Uint8Array, cas: number): number {
    const existing = this.entries.get(key);
    if (cas !== 0 && existing !== undefined && existing.cas !== cas) return Status.CAS_MISMATCH;
    const { usage, limits } = this;
    if (!existing && !usage.reserve('sharedKeys', 1, limits.maxSharedKeys)) {
      this.refused('maxSharedKeys', `proxy_set_shared_data refused: the owner's filters already hold ${limits.maxSharedKeys} keys`);
      return Status.INTERNAL_FAILURE;
    }
    const delta = value.length + key.length - (existing ? existing.value.length + key.length : 0);
    if (delta > 0 && !usage.reserve('sharedBytes', delta, limits.maxSharedBytes)) {
      if (!existing) usage.give('sharedKeys', 1);
      this.refused('maxSharedBytes', `proxy_set_shared_data refused: the owner's shared data would exceed ${limits.maxSharedBytes} bytes`);
      return Status.INTERNAL_FAILURE;
    }
    if (delta < 0) usage.give('sharedBytes', -delta);
    this.entries.set(key, { value, cas: this.nextCas });
    this.nextCas = this.nextCas >= 0xffff_ffff ? 1 : this.nextCas + 1;
    return Status.OK;
  }

  /** Gives the owner's share back (the VM is going away). */
  clear(): void {
    for (const [key, entry] of this.entries) {
      this.usage.give('sharedBytes', key.length + entry.value.length);
      this.usage.give('sharedKeys', 1);
    }
    this.entries.clear();
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

  constructor(
    private readonly limits: SharedLimits,
    private readonly usage: OwnerAccount,
    private readonly refused: LimitReporter,
  ) {}

  /** The queue's id, or undefined when the owner has as many queues as it may. */
  register(name: string, ownerContextId: number): number | undefined {
    const existing = this.byName.get(name);
    if (existing !== undefined) return existing;
    if (!this.usage.reserve('queues', 1, this.limits.maxQueues)) {
      this.refused('maxQueues', `proxy_register_shared_queue refused: the owner's filters already have ${this.limits.maxQueues} queues`);
      return undefined;
    }
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
    if (queue.items.length >= this.limits.maxQueueDepth) {
      this.refused('maxQueueDepth', `proxy_enqueue_shared_queue refused: queue ${JSON.stringify(queue.name)} already holds ${this.limits.maxQueueDepth} items`);
      return { status: Status.INTERNAL_FAILURE };
    }
    if (!this.usage.reserve('queueBytes', value.length, this.limits.maxQueueBytes)) {
      this.refused('maxQueueBytes', `proxy_enqueue_shared_queue refused: the owner's queues would exceed ${this.limits.maxQueueBytes} bytes`);
      return { status: Status.INTERNAL_FAILURE };
    }
    queue.items.push(value);
    return { status: Status.OK, owner: queue.ownerContextId };
  }

  /** Gives the owner's share back (the VM is going away). */
  clear(): void {
    for (const queue of this.byId.values()) {
      for (const item of queue.items) this.usage.give('queueBytes', item.length);
      this.usage.give('queues', 1);
    }
    this.byId.clear();
    this.byName.clear();
  }

  dequeue(id: number): { status: number; value?: Uint8Array } {
    const queue = this.byId.get(id);
    if (!queue) return { status: Status.NOT_FOUND };
    const value = queue.items.shift();
    if (value === undefined) return { status: Status.EMPTY };
    this.usage.give('queueBytes', value.length);
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
