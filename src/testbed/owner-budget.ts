/**
 * Per-owner budgets for what a filter keeps beyond a call (shared data keys
 * and bytes, queues and their bytes), counted across every worker thread of
 * one test bed process — a runner — rather than per thread (decision 0030).
 *
 * Host functions run synchronously inside a worker thread, so they cannot
 * ask the runner's main thread; the counts live in a SharedArrayBuffer that
 * every worker of the process maps, and a charge is one compare-and-swap on
 * the owner's total.
 *
 * Layout (Int32 cells): a generation per owner row, the totals per row, and
 * per *lane* (one lane per live worker thread) the same fields again. The
 * lane cells are what a worker that is killed mid-call (a deadline, a crash)
 * still holds: its VMs never run dispose(), so the main thread subtracts the
 * dead lane from the totals once the thread is gone. Rows are handed to
 * owners by the main thread (an LRU); a row is reused for another owner only
 * when no VM holds it, and its generation changes, so a message still
 * naming the old owner's ticket cannot charge the new owner.
 */
import { PlatformError } from '../errors.ts';

/** What is counted per owner. `holders` is the number of VMs drawing on the row. */
export const USAGE_FIELDS = ['sharedKeys', 'sharedBytes', 'queues', 'queueBytes', 'holders'] as const;
export type UsageField = (typeof USAGE_FIELDS)[number];
const FIELD_INDEX: Readonly<Record<UsageField, number>> = { sharedKeys: 0, sharedBytes: 1, queues: 2, queueBytes: 3, holders: 4 };
const FIELDS = USAGE_FIELDS.length;

/** Owners with a row at once in one process; more than the VMs a process can hold (slots × warm VMs), so a row is always free. */
export const DEFAULT_OWNER_ROWS = 4_096;

/** What a worker needs to map the table (crosses to workers in workerData). */
export interface OwnerBudgetLayout {
  buffer: SharedArrayBuffer;
  rows: number;
  lanes: number;
}

/** A VM's claim on its owner's row, handed out by the main thread with each VM it starts. */
export interface OwnerTicket {
  row: number;
  generation: number;
}

/** One owner's account as a VM's shared data and queues see it. */
export interface OwnerAccount {
  /** Adds `delta` when the total stays within `max`; false (nothing added) otherwise. */
  reserve(field: UsageField, delta: number, max: number): boolean;
  /** Gives `delta` back. */
  give(field: UsageField, delta: number): void;
  /** The VM is gone: whatever it still holds must already have been given back. */
  close(): void;
}

function cells(layout: OwnerBudgetLayout): Int32Array {
  return new Int32Array(layout.buffer);
}

function generationCell(row: number): number {
  return row;
}

function totalCell(layout: OwnerBudgetLayout, row: number, field: UsageField): number {
  return layout.rows + row * FIELDS + FIELD_INDEX[field];
}

function laneCell(layout: OwnerBudgetLayout, lane: number, row: number, field: UsageField): number {
  return layout.rows * (1 + FIELDS) + (lane * layout.rows + row) * FIELDS + FIELD_INDEX[field];
}

/** The main thread's side: rows for owners, lanes for worker threads. */
export class OwnerBudgets {
  readonly layout: OwnerBudgetLayout;
  private readonly view: Int32Array;
  /** Owner → row, least recently used first (Map keeps insertion order; a use re-inserts). */
  private readonly rowOf = new Map<string, number>();
  private readonly ownerOfRow = new Map<number, string>();
  private nextUnusedRow = 0;
  private readonly freeLanes: number[];

  constructor(lanes: number, rows = DEFAULT_OWNER_ROWS) {
    const bytes = Int32Array.BYTES_PER_ELEMENT * rows * (1 + FIELDS + lanes * FIELDS);
    this.layout = { buffer: new SharedArrayBuffer(bytes), rows, lanes };
    this.view = cells(this.layout);
    this.freeLanes = Array.from({ length: lanes }, (_, lane) => lanes - 1 - lane);
  }

  /** The owner's row and its generation, for a VM about to start. */
  ticket(ownerId: string): OwnerTicket {
    let row = this.rowOf.get(ownerId);
    if (row === undefined) row = this.assignRow(ownerId);
    else {
      this.rowOf.delete(ownerId);
      this.rowOf.set(ownerId, row);
    }
    return { row, generation: Atomics.load(this.view, generationCell(row)) };
  }

  /** A lane for a new worker thread. */
  takeLane(): number {
    const lane = this.freeLanes.pop();
    if (lane === undefined) throw new PlatformError('testbed_budget_lanes', `all ${this.layout.lanes} owner-budget lanes are held by worker threads; the test bed cannot start another`);
    return lane;
  }

  /**
   * The worker thread on `lane` is gone (terminated, crashed, closed): what its
   * VMs held goes back to their owners, and the lane is free again. Call only
   * after the thread has stopped, or it could charge the lane again.
   */
  releaseLane(lane: number): void {
    for (let row = 0; row < this.nextUnusedRow; row++) {
      for (const field of USAGE_FIELDS) {
        const held = Atomics.exchange(this.view, laneCell(this.layout, lane, row, field), 0);
        if (held !== 0) Atomics.sub(this.view, totalCell(this.layout, row, field), held);
      }
    }
    this.freeLanes.push(lane);
  }

  /** An owner's totals in this process (tests, and /v1/testbed/runners if ever wanted). */
  usage(ownerId: string): Record<UsageField, number> | undefined {
    const row = this.rowOf.get(ownerId);
    if (row === undefined) return undefined;
    return Object.fromEntries(USAGE_FIELDS.map((field) => [field, Atomics.load(this.view, totalCell(this.layout, row, field))])) as Record<UsageField, number>;
  }

  private assignRow(ownerId: string): number {
    const row = this.nextUnusedRow < this.layout.rows ? this.nextUnusedRow++ : this.reclaimRow();
    this.rowOf.set(ownerId, row);
    this.ownerOfRow.set(row, ownerId);
    return row;
  }

  /**
   * The least recently used row no VM holds. The generation moves first and
   * holders are read after it: a worker adds its holder first and checks the
   * generation after, so one of the two always sees the other.
   */
  private reclaimRow(): number {
    for (const [ownerId, row] of this.rowOf) {
      const holders = totalCell(this.layout, row, 'holders');
      if (Atomics.load(this.view, holders) !== 0) continue;
      Atomics.add(this.view, generationCell(row), 1);
      // A VM that started between the two reads keeps the row (and saw the old generation, which was still right).
      if (Atomics.load(this.view, holders) !== 0) continue;
      this.rowOf.delete(ownerId);
      this.ownerOfRow.delete(row);
      for (const field of USAGE_FIELDS) Atomics.store(this.view, totalCell(this.layout, row, field), 0);
      return row;
    }
    throw new PlatformError('testbed_budget_rows', `all ${this.layout.rows} owner-budget rows are held by live VMs`);
  }
}

/** A worker thread's side: accounts on its lane of the shared table. */
export class OwnerBudgetLane {
  private readonly view: Int32Array;

  constructor(
    private readonly layout: OwnerBudgetLayout,
    private readonly lane: number,
  ) {
    this.view = cells(layout);
  }

  /** Opens a VM's account on its owner's row; a ticket from before the row was reused is refused. */
  open(ticket: OwnerTicket): OwnerAccount {
    const { row } = ticket;
    this.add(row, 'holders', 1);
    if (Atomics.load(this.view, generationCell(row)) !== ticket.generation) {
      this.add(row, 'holders', -1);
      throw new PlatformError('testbed_budget_stale', 'the owner-budget row of this call was reused for another owner before the VM started; retry the call');
    }
    let closed = false;
    return {
      reserve: (field, delta, max) => this.reserve(row, field, delta, max),
      give: (field, delta) => this.add(row, field, -delta),
      close: () => {
        if (closed) return;
        closed = true;
        this.add(row, 'holders', -1);
      },
    };
  }

  private reserve(row: number, field: UsageField, delta: number, max: number): boolean {
    const total = totalCell(this.layout, row, field);
    for (;;) {
      const current = Atomics.load(this.view, total);
      if (current + delta > max) return false;
      if (Atomics.compareExchange(this.view, total, current, current + delta) === current) break;
    }
    Atomics.add(this.view, laneCell(this.layout, this.lane, row, field), delta);
    return true;
  }

  private add(row: number, field: UsageField, delta: number): void {
    Atomics.add(this.view, totalCell(this.layout, row, field), delta);
    Atomics.add(this.view, laneCell(this.layout, this.lane, row, field), delta);
  }
}

/** Accounts kept in one thread only (a VM made outside the pool: unit tests of the host). */
export class LocalOwnerAccounts {
  private readonly totals = new Map<string, Record<UsageField, number>>();

  open(ownerId: string): OwnerAccount {
    let totals = this.totals.get(ownerId);
    if (!totals) {
      totals = { sharedKeys: 0, sharedBytes: 0, queues: 0, queueBytes: 0, holders: 0 };
      this.totals.set(ownerId, totals);
    }
    const mine = totals;
    mine.holders++;
    let closed = false;
    return {
      reserve(field, delta, max) {
        if (mine[field] + delta > max) return false;
        mine[field] += delta;
        return true;
      },
      give(field, delta) {
        mine[field] -= delta;
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (--mine.holders <= 0) this.totals.delete(ownerId);
      },
    };
  }
}
