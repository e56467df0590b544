/**
 * Sending an owner's next call ahead onto the slot its running call holds
 * (decision 0043), in units: the scheduler's leases granted ahead (one per
 * slot, only while no other owner waits, recalled when one does or when the
 * call's queue wait ends) and the runner's SlotLine (one call at a time per
 * slot, the waiting one started as the running one settles, dropped on
 * recall); then end to end through the API and a runner process: a call
 * sent ahead behind its owner's busy loop is taken back when another owner
 * has to wait (that owner runs first, the call still succeeds), and is
 * refused when its queue wait ends. runners.test.ts (busy loops, refusals,
 * another owner's calls) runs with sending ahead on as well.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PlatformError } from '../../src/errors.ts';
import { RECALLED_CODE } from '../../src/testbed/runner/messages.ts';
import { SlotLine } from '../../src/testbed/runner/runner.ts';
import type { FairShareLimits, Lease } from '../../src/testbed/runner/scheduler.ts';
import { SlotScheduler, TestbedLimitError } from '../../src/testbed/runner/scheduler.ts';
import { call, startTestKiln } from '../support/kiln.ts';
import type { ApiAnswer, TestKiln } from '../support/kiln.ts';
import { publish } from './support.ts';
import type { Json } from './support.ts';
import { busyFunction, okFunction } from './wat.ts';

const LIMITS: FairShareLimits = { ownerSlots: 1, ownerQueue: 3, queueWaitMs: 60_000, ownerRate: 1_000, ownerBurst: 1_000 };
const AHEAD = { sendAhead: true };

function scheduler(limits: Partial<FairShareLimits> = {}, slots = 2, sendAhead = true): SlotScheduler {
  const s = new SlotScheduler({ ...LIMITS, ...limits });
  s.addSlots(
    Array.from({ length: slots }, (_, slot) => ({ runner: 1, slot })),
    { sendAhead },
  );
  return s;
}

/** The lease if granted within a few event-loop turns, else 'waiting'. */
async function state(promise: Promise<Lease>): Promise<Lease | 'waiting'> {
  return Promise.race([promise, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 20))]);
}

function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: Error): void } {
  let resolve: (value: T) => void = () => undefined;
  let reject: (error: Error) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('calls sent ahead (scheduler)', () => {
  it("grants an owner's next call ahead on the slot it holds, one per slot, and hands the slot on when the holder ends", async () => {
    const s = scheduler();
    const first = await s.acquire('a', 'x', AHEAD);
    assert.equal(first.ahead, false);
    const second = await state(s.acquire('a', 'x', AHEAD));
    assert.ok(second !== 'waiting', 'the second call is granted at once');
    assert.equal(second.ahead, true);
    assert.deepEqual({ runner: second.runner, slot: second.slot }, { runner: first.runner, slot: first.slot }, 'on the slot the owner holds, never on the free one');
    const thirdPromise = s.acquire('a', 'x', AHEAD);
    assert.equal(await state(thirdPromise), 'waiting', 'one call ahead per slot; the rest queue');
    assert.deepEqual(s.usage(), { a: { running: 1, queued: 2 } }, 'a call ahead counts as queued');
    first.release();
    assert.equal(second.ahead, false, 'the call ahead now holds the slot');
    const third = await state(thirdPromise);
    assert.ok(third !== 'waiting');
    assert.equal(third.ahead, true, 'the next queued call goes ahead behind the new holder');
    assert.equal(third.slot, first.slot);
    second.release();
    third.release();
    assert.deepEqual(s.usage(), {});
  });

  it('counts calls ahead against the owner queue: the same number of calls is refused as without', async () => {
    const s = scheduler({ ownerQueue: 1 });
    const held = await s.acquire('a', 'x', AHEAD);
    const ahead = await s.acquire('a', 'x', AHEAD);
    assert.throws(() => s.acquire('a', 'x', AHEAD), (error: unknown) => error instanceof TestbedLimitError && error.code === 'owner_concurrency_limit');
    held.release();
    ahead.release();
  });

  it('recalls calls ahead when another owner has to wait, so the freed slot goes round robin', async () => {
    const s = scheduler({}, 1);
    const held = await s.acquire('a', 'x', AHEAD);
    const ahead = await s.acquire('a', 'x', AHEAD);
    let recalls = 0;
    ahead.onRecall(() => recalls++);
    const other = s.acquire('b', 'y', AHEAD);
    assert.equal(recalls, 1, 'the runner is asked to take the call back');
    assert.equal(ahead.recalled, 'yield');
    // The runner dropped it (it had not started): its caller releases it and queues it again.
    ahead.release();
    const requeued = s.acquire('a', 'x', { ...AHEAD, requeue: { waitMs: 60_000 } });
    held.release();
    const granted = await state(other);
    assert.ok(granted !== 'waiting', "the other owner's call gets the slot first");
    assert.equal(granted.ownerId, 'b');
    assert.equal(await state(requeued), 'waiting', 'not ahead behind another owner');
    granted.release();
    const again = await state(requeued);
    assert.ok(again !== 'waiting');
    again.release();
  });

  it('recalls a call ahead whose queue wait ends before it became the holder, with the refusal the queue gives', async () => {
    const s = scheduler({ queueWaitMs: 20 }, 1);
    const held = await s.acquire('a', 'x', AHEAD);
    const ahead = await s.acquire('a', 'x', AHEAD);
    const recalled = deferred<void>();
    ahead.onRecall(() => recalled.resolve());
    await recalled.promise;
    assert.ok(ahead.recalled instanceof TestbedLimitError);
    assert.equal(ahead.recalled.code, 'owner_concurrency_limit');
    ahead.release();
    held.release();
    assert.deepEqual(s.usage(), {});
  });

  it('counts the queue wait of a call that goes ahead from when it was queued, not from when it went ahead', async () => {
    const s = scheduler({ queueWaitMs: 300 }, 1);
    const held = await s.acquire('a', 'x', AHEAD);
    const ahead = await s.acquire('a', 'x', AHEAD);
    const queued = s.acquire('a', 'x', AHEAD);
    await new Promise((resolve) => setTimeout(resolve, 200));
    held.release();
    const third = await queued;
    assert.equal(third.ahead, true, 'it went ahead 200 ms into its 300 ms wait');
    const recalled = new Promise<'recalled'>((resolve) => third.onRecall(() => resolve('recalled')));
    // What is left of its wait is about 100 ms; a fresh wait would last 300.
    const first = await Promise.race([recalled, new Promise<'fresh wait'>((resolve) => setTimeout(() => resolve('fresh wait'), 250))]);
    assert.equal(first, 'recalled');
    third.release();
    ahead.release();
  });

  it('keeps the slot held when a recalled call ahead had already started (the holder ended first)', async () => {
    const s = scheduler({}, 1);
    const held = await s.acquire('a', 'x', AHEAD);
    const ahead = await s.acquire('a', 'x', AHEAD);
    const other = s.acquire('b', 'y', AHEAD);
    held.release();
    assert.equal(ahead.ahead, false, 'it holds the slot: the runner may be running it');
    assert.equal(await state(other), 'waiting');
    ahead.release();
    const granted = await state(other);
    assert.ok(granted !== 'waiting');
    granted.release();
  });

  it('never sends ahead without the option (the scheduler as before)', async () => {
    const s = scheduler();
    const held = await s.acquire('a', 'x');
    assert.equal(await state(s.acquire('a', 'x')), 'waiting');
    held.release();
  });

  it('never sends ahead to a runner that did not say it keeps calls sent ahead (an older remote runner)', async () => {
    const s = scheduler({}, 2, false);
    const held = await s.acquire('a', 'x', AHEAD);
    const next = s.acquire('a', 'x', AHEAD);
    assert.equal(await state(next), 'waiting');
    held.release();
    const granted = await state(next);
    assert.ok(granted !== 'waiting');
    assert.equal(granted.ahead, false);
    granted.release();
  });
});

describe('a slot line on the runner', () => {
  it('runs one call at a time and starts the waiting one as soon as the running one settles', async () => {
    const line = new SlotLine();
    const order: string[] = [];
    const first = deferred<string>();
    const one = line.run(1, () => {
      order.push('start 1');
      return first.promise;
    });
    const two = line.run(2, async () => {
      order.push('start 2');
      return 'two';
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['start 1'], 'the second waits');
    await assert.rejects(
      line.run(3, async () => 'three'),
      (error: unknown) => error instanceof PlatformError && error.code === 'runner_slot_busy',
    );
    first.resolve('one');
    assert.equal(await one, 'one');
    assert.equal(await two, 'two');
    assert.deepEqual(order, ['start 1', 'start 2']);
  });

  it('starts the waiting call after a failed one too', async () => {
    const line = new SlotLine();
    const failing = line.run(1, async () => {
      throw new Error('trap');
    });
    const next = line.run(2, async () => 'ran');
    await assert.rejects(failing, /trap/);
    assert.equal(await next, 'ran');
  });

  it('drops a recalled call that has not started, and ignores a recall for one that has', async () => {
    const line = new SlotLine();
    const first = deferred<string>();
    let started = false;
    const one = line.run(1, () => first.promise);
    const two = line.run(2, async () => {
      started = true;
      return 'two';
    });
    line.recall(1);
    line.recall(2);
    await assert.rejects(two, (error: unknown) => error instanceof PlatformError && error.code === RECALLED_CODE);
    first.resolve('one');
    assert.equal(await one, 'one');
    assert.equal(started, false);
    assert.equal(await line.run(3, async () => 'three'), 'three', 'the slot is free again');
  });
});

const OK_FUNCTION = okFunction();

const BUSY_FUNCTION = busyFunction();

/** One runner with one slot: every call of every owner goes through the same worker thread. */
function oneSlotEnv(queueWaitMs: number): Record<string, string> {
  return { KILN_TESTBED_RUNNERS: '1', KILN_TESTBED_WORKERS: '1', KILN_TESTBED_SPARES: '1', KILN_TESTBED_OWNER_SLOTS: '1', KILN_TESTBED_OWNER_QUEUE: '4', KILN_TESTBED_QUEUE_WAIT_MS: String(queueWaitMs), KILN_TESTBED_PREWARM: '1', KILN_TESTBED_SEND_AHEAD: '1' };
}

// The busy loop must outlast the test's own steps (polls and invokes over HTTP) even on a loaded
// machine, and the queue wait must outlast the poll that sees the call sent ahead: both in seconds.
for (const scenario of [
  { name: 'another owner waits', queueWaitMs: 20_000, busyMs: 5_000 },
  { name: 'the queue wait ends', queueWaitMs: 2_000, busyMs: 6_000 },
]) {
  describe(`a call sent ahead behind a busy loop, when ${scenario.name} (one slot, a runner process)`, { timeout: 120_000 }, () => {
    let t: TestKiln;
    let bobToken: string;
    let okId: string;
    let busyId: string;
    let bobOkId: string;
    const invoke = (token: string, id: string, json: unknown = {}) => call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token, json });

    async function waitForUsage(check: (owners: Record<string, { running: number; queued: number }>) => boolean, what: string): Promise<void> {
      for (let i = 0; i < 400; i++) {
        const listing = await call<Json>(t.url, 'GET', '/v1/testbed/runners', { token: t.adminToken });
        if (listing.body.slots === 1 && check(listing.body.owners)) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.fail(`gave up waiting for ${what}`);
    }

    before(async () => {
      t = await startTestKiln({ env: oneSlotEnv(scenario.queueWaitMs) });
      okId = await publish(t, OK_FUNCTION, { kind: 'wasi-command' });
      busyId = await publish(t, BUSY_FUNCTION, { kind: 'wasi-command' });
      bobToken = (await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: 'bob' } })).body.token;
      bobOkId = await publish({ ...t, ownerToken: bobToken }, OK_FUNCTION, { kind: 'wasi-command' });
      // Both modules compiled on the runner, so what follows waits only for the busy loop.
      assert.equal((await invoke(t.ownerToken, okId)).body.outcome, 'ok');
      assert.equal((await invoke(bobToken, bobOkId)).body.outcome, 'ok');
    });

    after(async () => {
      await t?.close();
    });

    it(scenario.name === 'another owner waits' ? "is taken back and runs after the other owner's call" : 'is taken back and refused like a queued call', async () => {
      const finished: string[] = [];
      const track = (name: string, answer: Promise<ApiAnswer<Json>>) =>
        answer.then((result) => {
          finished.push(name);
          return result;
        });
      const busy = track('busy', invoke(t.ownerToken, busyId, { limits: { timeoutMs: scenario.busyMs } }));
      await waitForUsage((owners) => Object.values(owners).some((o) => o.running === 1), 'the busy loop to hold the slot');
      const ahead = track('ahead', invoke(t.ownerToken, okId));
      await waitForUsage((owners) => Object.values(owners).some((o) => o.running === 1 && o.queued === 1), 'the next call to be sent ahead');
      if (scenario.name === 'another owner waits') {
        const bob = track('bob', invoke(bobToken, bobOkId));
        const [busyResult, aheadResult, bobResult] = await Promise.all([busy, ahead, bob]);
        assert.equal(busyResult.body.outcome, 'timeout', JSON.stringify(busyResult.body));
        assert.equal(bobResult.body.outcome, 'ok', JSON.stringify(bobResult.body));
        assert.equal(aheadResult.status, 200, JSON.stringify(aheadResult.body));
        assert.equal(aheadResult.body.outcome, 'ok', 'taken back and queued again, then run: not an error');
        assert.deepEqual(finished, ['busy', 'bob', 'ahead'], "the slot the busy loop freed went to the other owner's waiting call first");
      } else {
        const refused = await ahead;
        assert.deepEqual(finished, ['ahead'], 'refused while the busy loop still runs');
        assert.equal(refused.status, 429, JSON.stringify(refused.body));
        assert.equal(refused.body.error.code, 'owner_concurrency_limit');
        assert.ok(Number(refused.headers.get('retry-after')) >= 1);
        assert.equal((await busy).body.outcome, 'timeout');
        assert.equal((await invoke(t.ownerToken, okId)).body.outcome, 'ok', 'the slot is usable again');
      }
    });
  });
}
