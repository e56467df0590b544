/**
 * The fair-share scheduler on its own (a unit test: slots are plain
 * numbers, no runner behind them): owner slot limits, the owner queue and
 * its wait, the rate limit, round robin between owners, and runners going
 * away with calls in flight.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FairShareLimits, Lease } from '../../src/testbed/runner/scheduler.ts';
import { SlotScheduler, TestbedLimitError } from '../../src/testbed/runner/scheduler.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

const LIMITS: FairShareLimits = { ownerSlots: 1, ownerQueue: 2, queueWaitMs: 60_000, ownerRate: 1_000, ownerBurst: 1_000 };

function scheduler(limits: Partial<FairShareLimits> = {}, slots = 2): SlotScheduler {
  const s = new SlotScheduler({ ...LIMITS, ...limits });
  s.addSlots(Array.from({ length: slots }, (_, slot) => ({ runner: 1, slot })));
  return s;
}

async function refusal(promise: Promise<unknown> | (() => unknown)): Promise<TestbedLimitError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    assert.ok(error instanceof TestbedLimitError, String(error));
    return error;
  }
  assert.fail('expected a refusal');
}

describe('fair-share scheduler', () => {
  it('gives one owner at most ownerSlots slots, so another owner always finds one', async () => {
    const s = scheduler();
    const a1 = await s.acquire('a', 'x');
    const a2 = s.acquire('a', 'x');
    const b1 = await s.acquire('b', 'y');
    assert.notDeepEqual({ runner: a1.runner, slot: a1.slot }, { runner: b1.runner, slot: b1.slot });
    assert.deepEqual(s.usage(), { a: { running: 1, queued: 1 }, b: { running: 1, queued: 0 } });
    a1.release();
    const granted = await a2;
    assert.equal(granted.slot, a1.slot, 'the queued call takes the slot its owner freed');
    granted.release();
    b1.release();
  });

  it('refuses calls beyond the owner queue with 429 naming the limit', async () => {
    const s = scheduler({ ownerQueue: 1 });
    const held = await s.acquire('a', 'x');
    const queued = s.acquire('a', 'x');
    const refused = await refusal(() => s.acquire('a', 'x'));
    assert.equal(httpStatusOf(refused), 429);
    assert.equal(refused.code, 'owner_concurrency_limit');
    assert.match(refused.message, /KILN_TESTBED_OWNER_SLOTS/);
    assert.ok(refused.retryAfterSeconds >= 1);
    held.release();
    (await queued).release();
  });

  it('lets a queued call wait at most queueWaitMs', async () => {
    const s = scheduler({ queueWaitMs: 20 });
    const held = await s.acquire('a', 'x');
    const refused = await refusal(s.acquire('a', 'x'));
    assert.equal(refused.code, 'owner_concurrency_limit');
    held.release();
    assert.deepEqual(s.usage(), {});
  });

  it('limits the rate per owner with a token bucket, and not other owners', async () => {
    const s = scheduler({ ownerRate: 1, ownerBurst: 2, ownerSlots: 2 });
    (await s.acquire('a', 'x')).release();
    (await s.acquire('a', 'x')).release();
    const refused = await refusal(() => s.acquire('a', 'x'));
    assert.equal(refused.code, 'owner_rate_limit');
    assert.match(refused.message, /KILN_TESTBED_OWNER_RATE/);
    assert.equal(refused.retryAfterSeconds, 1);
    (await s.acquire('b', 'x')).release();
  });

  it('serves waiting owners in turn when slots free up', async () => {
    const s = scheduler({ ownerSlots: 2, ownerQueue: 10 }, 2);
    const holders = [await s.acquire('c', 'z'), await s.acquire('c', 'z')];
    const order: string[] = [];
    // Each call ends as soon as it starts, so slots free up one at a time.
    const waiting = [s.acquire('a', 'x'), s.acquire('a', 'x'), s.acquire('a', 'x'), s.acquire('b', 'y')].map((p, i) =>
      p.then((lease: Lease) => {
        order.push(`${lease.ownerId}${i}`);
        lease.release();
      }),
    );
    holders[0]?.release();
    await Promise.all(waiting);
    holders[1]?.release();
    assert.deepEqual(order, ['a0', 'b3', 'a1', 'a2'], 'b waits for one of a’s calls, not for all three');
  });

  it('drops the slots of a runner that went away, even when their leases are released later', async () => {
    const s = scheduler({ ownerSlots: 2 }, 0);
    s.addSlots([{ runner: 7, slot: 0 }]);
    const lease = await s.acquire('a', 'x');
    s.removeRunner(7, 1);
    lease.release();
    assert.equal(s.slotCount, 0);
    const waiting = s.acquire('a', 'x');
    s.addSlots([{ runner: 8, slot: 0 }]);
    const next = await waiting;
    assert.equal(next.runner, 8);
    next.release();
  });

  it('answers 503 when no runner joins in time', async () => {
    const s = scheduler({ queueWaitMs: 20 }, 0);
    const refused = await refusal(s.acquire('a', 'x'));
    assert.equal(httpStatusOf(refused), 503);
    assert.equal(refused.code, 'no_test_bed_runners');
  });
});
