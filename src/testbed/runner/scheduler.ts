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
 *
 * Sending ahead (decision 0043, opt-in per acquire): while an owner's call
 * holds a slot and no other owner is waiting, the owner's next call is
 * granted a lease *ahead* on the same slot, so its runner can start it the
 * moment the current one ends instead of after the answer's round trip
 * through the API. It counts against the owner's queue, keeps its queue
 * wait (expired and not started: recalled, then refused as before), and is
 * recalled from its runner as soon as another owner has to wait, so the
 * slot still goes round robin. A slot still runs one call at a time.
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
  /** Granted ahead: the call waits on its runner behind its owner's call on this slot. */
  readonly ahead: boolean;
  /**
   * Why the scheduler took a call sent ahead back (its runner dropped it if it
   * had not started): 'yield' (another owner waits: queue it again) or the
   * refusal to answer (its queue wait ended). Undefined otherwise.
   */
  readonly recalled: 'yield' | TestbedLimitError | undefined;
  /** How the caller takes a call sent ahead back from its runner (set once the call is sent). */
  onRecall(recall: () => void): void;
  release(): void;
}

export interface AcquireOptions {
  /** May be granted ahead on a slot its owner holds (the caller handles `recalled`). */
  sendAhead?: boolean;
  /** A recalled call queued again: not charged to the rate again, first in its owner's queue, this long at most. */
  requeue?: { waitMs: number };
}

interface Waiter {
  ownerId: string;
  affinity: string;
  sendAhead: boolean;
  /** When its queue wait ends (performance.now() clock): a call sent ahead keeps what is left of it. */
  waitEndsAt: number;
  grant(lease: Lease): void;
  fail(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

interface OwnerState {
  running: number;
  /** Calls granted ahead that have not yet become their slot's holder (counted with the queue). */
  ahead: number;
  queue: Waiter[];
  tokens: number;
  refilledAt: number;
}

/** A lease of an owner's call: holding its slot, or ahead of it (waiting on the runner behind the holder). */
class SlotLease implements Lease {
  readonly runner: number;
  readonly slot: number;
  state: 'ahead' | 'holding' | 'released';
  /** The owner's call granted ahead behind this one. */
  next: SlotLease | undefined;
  /** The holder this lease waits behind while ahead. */
  behind: SlotLease | undefined;
  recalled: 'yield' | TestbedLimitError | undefined;
  /** The queue wait of a call granted ahead (it ends when the call becomes the holder). */
  timer: ReturnType<typeof setTimeout> | undefined;
  private recaller: (() => void) | undefined;

  constructor(
    readonly ref: SlotRef,
    readonly ownerId: string,
    readonly owner: OwnerState,
    ahead: boolean,
    private readonly onRelease: (lease: SlotLease) => void,
  ) {
    this.runner = ref.runner;
    this.slot = ref.slot;
    this.state = ahead ? 'ahead' : 'holding';
  }

  get ahead(): boolean {
    return this.state === 'ahead';
  }

  onRecall(recall: () => void): void {
    this.recaller = recall;
  }

  /** Takes the call back from its runner (it answers it `runner_call_recalled` unless it had started). */
  recall(reason: 'yield' | TestbedLimitError): void {
    if (this.state !== 'ahead' || this.recalled !== undefined) return;
    this.recalled = reason;
    this.recaller?.();
  }

  release(): void {
    if (this.state === 'released') return;
    this.onRelease(this);
  }
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
  /** Owners' leases holding a slot (the ones a call may be sent ahead behind). */
  private readonly held = new Set<SlotLease>();
  /** Runners that said they keep calls sent ahead (RunnerHello.sendAhead). */
  private readonly sendsAhead = new Set<number>();

  constructor(private readonly limits: FairShareLimits) {}

  /** Slots currently known (free or held). */
  get slotCount(): number {
    return this.total;
  }

  /** `sendAhead`: the runner of these slots keeps a call sent ahead until the running one ends (one that does not say so never gets one). */
  addSlots(slots: SlotRef[], options: { sendAhead?: boolean } = {}): void {
    if (options.sendAhead) for (const slot of slots) this.sendsAhead.add(slot.runner);
    this.total += slots.length;
    this.free.push(...slots);
    this.pump();
  }

  /** A runner went away: its free slots vanish; held ones are not returned by their leases. */
  removeRunner(runner: number, slotCount: number): void {
    this.gone.add(runner);
    this.sendsAhead.delete(runner);
    this.total -= slotCount;
    for (let i = this.free.length - 1; i >= 0; i--) if (this.free[i]?.runner === runner) this.free.splice(i, 1);
  }

  /** Waits for a slot within the owner's limits, or fails with a TestbedLimitError naming the limit. */
  acquire(ownerId: string, affinity: string, options: AcquireOptions = {}): Promise<Lease> {
    const owner = this.owner(ownerId);
    if (!options.requeue) this.charge(ownerId, owner);
    if (owner.running < this.limits.ownerSlots && owner.queue.length === 0 && this.free.length > 0) {
      // pump() runs after every change, so a free slot means no waiting owner could take it.
      return Promise.resolve(this.grant(ownerId, owner, affinity));
    }
    if (!options.requeue && owner.queue.length + owner.ahead >= this.limits.ownerQueue) {
      throw this.concurrencyError(owner);
    }
    const waitMs = options.requeue?.waitMs ?? this.limits.queueWaitMs;
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        ownerId,
        affinity,
        sendAhead: options.sendAhead === true,
        waitEndsAt: performance.now() + waitMs,
        grant: resolve,
        fail: reject,
        timer: setTimeout(() => this.expire(waiter), waitMs),
      };
      if (options.requeue) owner.queue.unshift(waiter);
      else owner.queue.push(waiter);
      if (!this.turn.includes(ownerId)) this.turn.push(ownerId);
      // Another owner now waits: calls sent ahead on held slots go back, so freed slots go round robin.
      this.recallAheadOfOthers(ownerId);
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
    return Object.fromEntries([...this.owners].map(([id, state]) => [id, { running: state.running, queued: state.queue.length + state.ahead }]));
  }

  private owner(ownerId: string): OwnerState {
    let state = this.owners.get(ownerId);
    if (!state) {
      state = { running: 0, ahead: 0, queue: [], tokens: this.limits.ownerBurst, refilledAt: Date.now() };
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
    if (owner.running > 0 || owner.ahead > 0 || owner.queue.length > 0) return;
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
    this.sendAhead();
  }

  /**
   * The first waiting call of the only owner that waits goes ahead onto a
   * slot that owner holds (one call ahead per slot), keeping its queue wait.
   */
  private sendAhead(): void {
    const ownerId = this.turn.length === 1 ? this.turn[0] : undefined;
    if (ownerId === undefined) return;
    const owner = this.owner(ownerId);
    for (const holder of this.held) {
      const waiter = owner.queue[0];
      if (!waiter?.sendAhead) return;
      if (holder.ownerId !== ownerId || holder.next || holder.state !== 'holding' || !this.sendsAhead.has(holder.runner)) continue;
      owner.queue.shift();
      clearTimeout(waiter.timer);
      if (owner.queue.length === 0) this.leaveTurn(ownerId);
      const lease = new SlotLease(holder.ref, ownerId, owner, true, (l) => this.release(l));
      lease.behind = holder;
      holder.next = lease;
      owner.ahead++;
      // The queue wait goes on: a call not started within it is taken back and refused, as in the queue.
      lease.timer = setTimeout(() => lease.recall(this.concurrencyError(owner)), Math.max(0, waiter.waitEndsAt - performance.now()));
      waiter.grant(lease);
    }
  }

  /** Calls of other owners sent ahead are taken back (those already started run on). */
  private recallAheadOfOthers(ownerId: string): void {
    for (const holder of this.held) if (holder.next && holder.next.ownerId !== ownerId) holder.next.recall('yield');
  }

  private release(lease: SlotLease): void {
    const wasAhead = lease.state === 'ahead';
    lease.state = 'released';
    clearTimeout(lease.timer);
    const { owner, ownerId } = lease;
    if (wasAhead) {
      // Recalled, or lost with its runner, before its turn: it leaves the line behind its holder.
      if (lease.behind?.next === lease) lease.behind.next = undefined;
      owner.ahead--;
      this.forgetIdle(ownerId, owner);
      this.pump();
      return;
    }
    this.held.delete(lease);
    const next = lease.next;
    if (next && next.state === 'ahead') {
      // The call sent ahead is already running (or about to) on this slot: the slot passes to it.
      next.state = 'holding';
      next.behind = undefined;
      clearTimeout(next.timer);
      owner.ahead--;
      this.held.add(next);
      this.pump();
      return;
    }
    owner.running--;
    this.forgetIdle(ownerId, owner);
    this.returnSlot(lease.ref);
  }

  private grant(ownerId: string, owner: OwnerState, affinity: string): Lease {
    const slot = this.takeSlot(affinity);
    owner.running++;
    const lease = new SlotLease(slot, ownerId, owner, false, (l) => this.release(l));
    this.held.add(lease);
    return lease;
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
