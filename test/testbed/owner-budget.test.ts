/**
 * Shared data and queues are bounded per owner per test bed process (a
 * runner), across all its worker threads (decision 0030): the table itself,
 * and real filters on two slots (two Testbeds, each with its own worker
 * thread, over one table — how a runner builds its slots).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { ModuleCache } from '../../src/testbed/modules.ts';
import { OwnerBudgetLane, OwnerBudgets } from '../../src/testbed/owner-budget.ts';
import { Testbed, budgetLanes } from '../../src/testbed/testbed.ts';
import type { PluginSettings } from '../../src/testbed/testbed.ts';
import { filterWat, wat } from './wat.ts';

const artifact = (bytes: Uint8Array) => ({ sha256: createHash('sha256').update(bytes).digest('hex'), load: async () => bytes });
const pluginOf = (ownerId: string, versionId: string): PluginSettings => ({ info: { ownerId, name: 'budget', rootId: '', vmId: versionId, versionId, version: '1.0.0', applicationId: 'app' }, config: '' });
const request = (): HttpRequestData => ({ method: 'GET', path: '/', authority: 'example.test', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] });
const header = (pairs: Array<[string, string]>, key: string) => pairs.find(([k]) => k === key)?.[1];

describe('owner budget table', () => {
  it('charges one owner across lanes and refuses past the limit; another owner has its own row', () => {
    const budgets = new OwnerBudgets(4, 8);
    const one = new OwnerBudgetLane(budgets.layout, budgets.takeLane());
    const two = new OwnerBudgetLane(budgets.layout, budgets.takeLane());
    const onFirstThread = one.open(budgets.ticket('owner-a'));
    const onSecondThread = two.open(budgets.ticket('owner-a'));
    assert.equal(onFirstThread.reserve('sharedBytes', 600, 1000), true);
    assert.equal(onSecondThread.reserve('sharedBytes', 600, 1000), false, 'the second thread sees the first thread\'s charge');
    assert.equal(onSecondThread.reserve('sharedBytes', 400, 1000), true);
    const other = two.open(budgets.ticket('owner-b'));
    assert.equal(other.reserve('sharedBytes', 1000, 1000), true);
    assert.deepEqual(budgets.usage('owner-a'), { sharedKeys: 0, sharedBytes: 1000, queues: 0, queueBytes: 0, holders: 2 });
  });

  it('gives back what a dead thread held when its lane is released', () => {
    const budgets = new OwnerBudgets(4, 8);
    const lane = budgets.takeLane();
    const account = new OwnerBudgetLane(budgets.layout, lane).open(budgets.ticket('owner-a'));
    assert.equal(account.reserve('queues', 3, 3), true);
    // The thread is killed: its VMs never run dispose().
    budgets.releaseLane(lane);
    assert.deepEqual(budgets.usage('owner-a'), { sharedKeys: 0, sharedBytes: 0, queues: 0, queueBytes: 0, holders: 0 });
  });

  it('reuses the row of an owner no VM holds, and refuses a ticket from before the reuse', () => {
    const budgets = new OwnerBudgets(2, 2);
    const lane = new OwnerBudgetLane(budgets.layout, budgets.takeLane());
    const held = lane.open(budgets.ticket('owner-a'));
    const stale = budgets.ticket('owner-b');
    // owner-b holds nothing: a third owner takes its row.
    const third = budgets.ticket('owner-c');
    assert.equal(third.row, stale.row);
    assert.throws(() => lane.open(stale), { code: 'testbed_budget_stale' });
    lane.open(third).close();
    held.close();
    // With every row free again nothing is refused.
    assert.doesNotThrow(() => lane.open(budgets.ticket('owner-d')));
  });

  it('refuses a new owner when every row is held by a live VM (a named platform error, not a shared row)', () => {
    const budgets = new OwnerBudgets(2, 1);
    const lane = new OwnerBudgetLane(budgets.layout, budgets.takeLane());
    lane.open(budgets.ticket('owner-a'));
    assert.throws(() => budgets.ticket('owner-b'), { code: 'testbed_budget_rows' });
  });
});

describe('shared data is bounded per owner across the worker threads of one process', () => {
  const config = { ...loadTestbedConfig({ KILN_TESTBED_MAX_SHARED_BYTES: String(1024 * 1024) }), workers: 1, spares: 0, timeoutMs: 5_000 };
  const modules = new ModuleCache(config.moduleCacheEntries, config.moduleShape);
  const budgets = new OwnerBudgets(budgetLanes(1, 0, 2));
  let slotOne: Testbed;
  let slotTwo: Testbed;

  before(() => {
    slotOne = new Testbed(config, modules, budgets);
    slotTwo = new Testbed(config, modules, budgets);
  });
  after(async () => {
    await slotOne.close();
    await slotTwo.close();
  });

  // proxy_set_shared_data("k", 600 KiB); the status it got goes into header x-status as one character ("0" OK, ":" 10 INTERNAL_FAILURE).
  const module = wat(
    filterWat(
      `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $s i32)
         (local.set $s (call $set (i32.const 100) (i32.const 1) (i32.const 65536) (i32.const 614400) (i32.const 0)))
         (i32.store8 (i32.const 90) (i32.add (i32.const 48) (local.get $s)))
         (drop (call $add (i32.const 0) (i32.const 80) (i32.const 8) (i32.const 90) (i32.const 1)))
         (i32.const 0))
       (data (i32.const 100) "k") (data (i32.const 80) "x-status")`,
      `(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
       (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))`,
      16,
    ),
  );

  it('an owner that filled its budget on one slot is refused on the other, with the named limit; another owner still stores', async () => {
    const first = await slotOne.serveFilter(artifact(module), pluginOf('owner-full', 'v-one'), request(), {}, 'echo');
    assert.equal(first.outcome, 'ok', first.message);
    assert.equal(header(first.forwarded?.headers ?? [], 'x-status'), '0', 'the first VM stores 600 KiB');
    const second = await slotTwo.serveFilter(artifact(module), pluginOf('owner-full', 'v-two'), request(), {}, 'echo');
    assert.equal(header(second.forwarded?.headers ?? [], 'x-status'), ':', 'the same owner on another worker thread is refused (INTERNAL_FAILURE)');
    assert.ok(second.recording.limits.includes('maxSharedBytes'), JSON.stringify(second.recording.limits));
    const other = await slotTwo.serveFilter(artifact(module), pluginOf('owner-other', 'v-three'), request(), {}, 'echo');
    assert.equal(header(other.forwarded?.headers ?? [], 'x-status'), '0', "another owner's set_shared_data still works");
  });

  it("a slot whose thread stops gives its VMs' share back to the owner", async () => {
    await slotOne.close();
    const usage = budgets.usage('owner-full');
    assert.equal(usage?.sharedBytes, 0, JSON.stringify(usage));
    slotOne = new Testbed(config, modules, budgets);
    // A fresh version of the owner on the other slot: its warm VM there holds nothing yet.
    const again = await slotTwo.serveFilter(artifact(module), pluginOf('owner-full', 'v-four'), request(), {}, 'echo');
    assert.equal(header(again.forwarded?.headers ?? [], 'x-status'), '0', 'the owner may store again');
  });
});
