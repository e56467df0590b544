/**
 * Fair sharing of runner slots between owners (decision 0013).
 *
 * A slot is one worker thread of one runner; a call holds one slot from
 * start to end. Three limits keep one owner from delaying another:
 *
 * - `ownerSlots`: the most slots one owner's calls may hold at once. With
 *   fewer than all slots, another owner always finds one free, whatever the
 *   first owner runs (busy loops end at their deadline; the slot is theirs
 *   until then and no one else's).
 * - `ownerQueue` and `queueWaitMs`: calls beyond an owner's slots wait in
 *   that owner's queue, at most this many and this long; then 429.
 * - `ownerRate` / `ownerBurst`: calls per second per owner (token bucket),
 *   checked before queueing: 429 with Retry-After.
 *
 * A freed slot goes to the owners with waiting calls in turn (round robin),
 * so a long queue from one owner cannot starve a short one.
 */
import { UserError } from '../../errors.ts';
import { Lru } from '../lru.ts';

export interface FairShareLimits {
  ownerSlots: number;
  ownerQueue: number;
  queueWaitMs: number;
  ownerRate: number;
  ownerBurst: number;
}

/** A 429 (or 503) that tells the client when to try again. */
export class TestbedLimitError extends UserError {
  constructor(
    kind: 'rate_limited' | 'unavailable',
    code: string,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(kind, code, message);
    this.name = 'TestbedLimitError';
  }
}

/** Where a call runs: a runner (by id) and one of its slots. */
export interface SlotRef {
  runner: number;
  slot: number;
}

export interface Lease extends SlotRef {
  ownerId: string;
  release(): void;
}

interface Waiter {
  ownerId: string;
  affinity: string;
  grant(lease: Lease): void;
  fail(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

interface OwnerState {
  running: number;
  queue: Waiter[];
  tokens: number;
  refilledAt: number;
}

export class SlotScheduler {
  private readonly free: SlotRef[] = [];
  private readonly owners = new Map<string, OwnerState>();
  /** Owners with queued calls, in the order they are served. */
  private readonly turn: string[] = [];
  /** The slot a key (a version) last ran on: its warm VM and compiled module are there. */
  private readonly lastSlot = new Lru<string, SlotRef>(4096);
  private total = 0;
  /** Runners that went away: slots their leases release later are dropped. */
  private readonly gone = new Set<number>();

  constructor(private readonly limits: FairShareLimits) {}

  /** Slots currently known (free or held). */
  get slotCount(): number {
    return this.total;
  }

  addSlots(slots: SlotRef[]): void {
    this.total += slots.length;
    this.free.push(...slots);
    this.pump();
  }

  /** A runner went away: its free slots vanish; held ones are not returned by their leases. */
  removeRunner(runner: number, slotCount: number): void {
    this.gone.add(runner);
    this.total -= slotCount;
    for (let i = this.free.length - 1; i >= 0; i--) if (this.free[i]?.runner === runner) this.free.splice(i, 1);
  }

  /** Waits for a slot within the owner's limits, or fails with a TestbedLimitError naming the limit. */
  acquire(ownerId: string, affinity: string): Promise<Lease> {
    const owner = this.owner(ownerId);
    this.charge(ownerId, owner);
    if (owner.running < this.limits.ownerSlots && owner.queue.length === 0 && this.free.length > 0) {
      // pump() runs after every change, so a free slot means no waiting owner could take it.
      return Promise.resolve(this.grant(ownerId, owner, affinity));
    }
    if (owner.queue.length >= this.limits.ownerQueue) {
      throw this.concurrencyError(owner);
    }
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        ownerId,
        affinity,
        grant: resolve,
        fail: reject,
        timer: setTimeout(() => this.expire(waiter), this.limits.queueWaitMs),
      };
      owner.queue.push(waiter);
      if (!this.turn.includes(ownerId)) this.turn.push(ownerId);
      this.pump();
    });
  }

  /**
   * A slot for work no owner is charged for (warming a version whose build
   * just succeeded): only when one is free now and no owner's call is
   * waiting, so it never delays a call; the key then prefers that slot.
   */
  takeIdle(affinity: string): (SlotRef & { release(): void }) | undefined {
    if (this.free.length === 0 || this.turn.length > 0) return undefined;
    const slot = this.takeSlot(affinity);
    let released = false;
    return {
      ...slot,
      release: () => {
        if (released) return;
        released = true;
        this.returnSlot(slot);
      },
    };
  }

  /** Calls held and waiting, per owner (for /v1/testbed/runners and tests). */
  usage(): Record<string, { running: number; queued: number }> {
    return Object.fromEntries([...this.owners].map(([id, state]) => [id, { running: state.running, queued: state.queue.length }]));
  }

  private owner(ownerId: string): OwnerState {
    let state = this.owners.get(ownerId);
    if (!state) {
      state = { running: 0, queue: [], tokens: this.limits.ownerBurst, refilledAt: Date.now() };
      this.owners.set(ownerId, state);
    }
    return state;
  }

  /** Token bucket: refill by elapsed time, take one, or refuse naming the rate. */
  private charge(ownerId: string, owner: OwnerState): void {
    const now = Date.now();
    owner.tokens = Math.min(this.limits.ownerBurst, owner.tokens + ((now - owner.refilledAt) / 1000) * this.limits.ownerRate);
    owner.refilledAt = now;
    if (owner.tokens >= 1) {
      owner.tokens -= 1;
      return;
    }
    const waitSeconds = Math.max(1, Math.ceil((1 - owner.tokens) / this.limits.ownerRate));
    throw new TestbedLimitError(
      'rate_limited',
      'owner_rate_limit',
      `owner ${ownerId} is above the test bed's rate limit of ${this.limits.ownerRate} calls/s (burst ${this.limits.ownerBurst}; KILN_TESTBED_OWNER_RATE, KILN_TESTBED_OWNER_BURST)`,
      waitSeconds,
    );
  }

  private concurrencyError(owner: OwnerState): TestbedLimitError {
    return new TestbedLimitError(
      'rate_limited',
      'owner_concurrency_limit',
      `this owner already has ${owner.running} test bed calls running (the limit is ${this.limits.ownerSlots}, KILN_TESTBED_OWNER_SLOTS) and ${owner.queue.length} waiting (KILN_TESTBED_OWNER_QUEUE ${this.limits.ownerQueue}, KILN_TESTBED_QUEUE_WAIT_MS ${this.limits.queueWaitMs}); retry later`,
      Math.max(1, Math.ceil(this.limits.queueWaitMs / 1000)),
    );
  }

  /** An owner with nothing running, nothing queued and a full bucket is indistinguishable from a new one. */
  private forgetIdle(ownerId: string, owner: OwnerState): void {
    if (owner.running > 0 || owner.queue.length > 0) return;
    const tokens = owner.tokens + ((Date.now() - owner.refilledAt) / 1000) * this.limits.ownerRate;
    if (tokens >= this.limits.ownerBurst) this.owners.delete(ownerId);
  }

  private expire(waiter: Waiter): void {
    const owner = this.owner(waiter.ownerId);
    const index = owner.queue.indexOf(waiter);
    if (index === -1) return;
    owner.queue.splice(index, 1);
    if (owner.queue.length === 0) this.leaveTurn(waiter.ownerId);
    this.forgetIdle(waiter.ownerId, owner);
    if (this.total === 0) {
      waiter.fail(new TestbedLimitError('unavailable', 'no_test_bed_runners', `no test bed runner connected within ${this.limits.queueWaitMs} ms (start one with \`kiln testbed\`, or local ones with KILN_TESTBED_RUNNERS)`, 5));
    } else if (owner.running >= this.limits.ownerSlots) {
      waiter.fail(this.concurrencyError(owner));
    } else {
      waiter.fail(new TestbedLimitError('unavailable', 'test_bed_busy', `every test bed slot (${this.total}) stayed busy for ${this.limits.queueWaitMs} ms (KILN_TESTBED_QUEUE_WAIT_MS)`, 1));
    }
  }

  /** Hands free slots to waiting owners, one call per owner per round. */
  private pump(): void {
    let progressed = true;
    while (this.free.length > 0 && this.turn.length > 0 && progressed) {
      progressed = false;
      for (const ownerId of [...this.turn]) {
        if (this.free.length === 0) return;
        const owner = this.owner(ownerId);
        if (owner.running >= this.limits.ownerSlots) continue;
        const waiter = owner.queue.shift();
        if (!waiter) {
          this.leaveTurn(ownerId);
          continue;
        }
        clearTimeout(waiter.timer);
        if (owner.queue.length === 0) this.leaveTurn(ownerId);
        else this.rotate(ownerId);
        waiter.grant(this.grant(ownerId, owner, waiter.affinity));
        progressed = true;
      }
    }
  }

  private grant(ownerId: string, owner: OwnerState, affinity: string): Lease {
    const slot = this.takeSlot(affinity);
    owner.running++;
    let released = false;
    return {
      ...slot,
      ownerId,
      release: () => {
        if (released) return;
        released = true;
        owner.running--;
        this.forgetIdle(ownerId, owner);
        this.returnSlot(slot);
      },
    };
  }

  /** The slot the key last ran on when it is free, else the longest-free slot. */
  private takeSlot(affinity: string): SlotRef {
    const preferred = this.lastSlot.get(affinity);
    const index = preferred ? this.free.findIndex((s) => s.runner === preferred.runner && s.slot === preferred.slot) : -1;
    const [slot] = this.free.splice(index === -1 ? 0 : index, 1);
    if (!slot) throw new Error('takeSlot called without a free slot');
    this.lastSlot.set(affinity, slot);
    return slot;
  }

  private returnSlot(slot: SlotRef): void {
    if (!this.removed(slot)) this.free.push(slot);
    this.pump();
  }

  private removed(slot: SlotRef): boolean {
    return this.gone.has(slot.runner);
  }

  private leaveTurn(ownerId: string): void {
    const index = this.turn.indexOf(ownerId);
    if (index !== -1) this.turn.splice(index, 1);
  }

  private rotate(ownerId: string): void {
    this.leaveTurn(ownerId);
    this.turn.push(ownerId);
  }
}
