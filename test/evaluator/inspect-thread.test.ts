import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { threadId } from 'node:worker_threads';
import { inspectOffThread } from '../../src/evaluator/inspect-thread.ts';
import { bulkyModule, wasiCommandModule } from '../support/wasm.ts';

const LIMITS = { maxBytes: 64 * 1024 * 1024, deadlineMs: 120_000 };

/** Turns of the event loop that completed while `work` was pending. */
async function turnsDuring<T>(work: Promise<T>): Promise<{ value: T; turns: number }> {
  let pending = true;
  let turns = 0;
  const value = work.finally(() => (pending = false));
  while (pending) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    turns++;
  }
  return { value: await value, turns };
}

describe('the evaluator inspects modules off the event loop', { timeout: 180_000 }, () => {
  it('validates a 32 MB module on another thread while this event loop keeps turning', async () => {
    const module = bulkyModule(32 * 1024 * 1024);
    const { value, turns } = await turnsDuring(inspectOffThread(module, LIMITS));
    assert.equal(value.ok, true, value.ok ? '' : value.reason);
    assert.ok(value.ok && value.threadId !== threadId, 'the validation ran on a worker thread, not this one');
    // Synchronous validation here would block the loop until done: at most a turn or two would pass.
    assert.ok(turns >= 10, `only ${turns} turns of the event loop while validating`);
    assert.equal(module[0], 0x00, 'the caller keeps its bytes (a copy is moved to the thread)');
  });

  it('judges an invalid module as the user’s failure, with the reason', async () => {
    const broken = Buffer.concat([wasiCommandModule(), Buffer.from([0x0a, 0x05, 0x01, 0x03, 0x00, 0xff, 0x0b])]);
    const result = await inspectOffThread(broken, LIMITS);
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.reason.length > 0);
    const garbage = await inspectOffThread(Buffer.from('not wasm at all'), LIMITS);
    assert.equal(garbage.ok, false);
  });

  it('refuses a module above the size bound without parsing it', async () => {
    const result = await inspectOffThread(Buffer.alloc(2048), { maxBytes: 1024, deadlineMs: 1000 });
    assert.deepEqual(result, { ok: false, reason: 'the module is 2048 bytes, above the 1024-byte limit for artifacts' });
  });

  it('abandons a validation that outlives its deadline', async () => {
    const result = await inspectOffThread(bulkyModule(32 * 1024 * 1024), { ...LIMITS, deadlineMs: 1 });
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.reason : '', /took longer than 1 ms/);
  });
});
