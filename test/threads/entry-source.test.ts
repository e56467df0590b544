/**
 * Worker threads start from one bundle per entry under tsx (how the tests
 * and bin/kiln run): a silent fall-back to registering the loader in every
 * worker would still work, only slower, so it is checked here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { threadEntrySource } from '../../src/threads/entry-source.ts';

const SRC = new URL('../../src/', import.meta.url);

describe('worker thread entry scripts', () => {
  for (const [caller, entry] of [
    ['testbed/pool.ts', './worker'],
    ['testbed/component/runner.ts', './worker'],
    ['evaluator/inspect-thread.ts', './inspect-worker'],
  ] as const) {
    it(`bundles ${caller}'s ${entry} once, with no TypeScript loader in the worker`, () => {
      const callerUrl = new URL(caller, SRC).href;
      const source = threadEntrySource(callerUrl, entry);
      assert.doesNotMatch(source, /tsx\/esm\/api/);
      assert.match(source, /__commonJS|require\(/, 'a CommonJS bundle');
      assert.equal(threadEntrySource(callerUrl, entry), source, 'the same bundle the second time');
    });
  }

  it('imports the compiled .js entry directly when the caller is compiled JavaScript', () => {
    assert.equal(threadEntrySource('file:///opt/kiln/dist/testbed/pool.js', './worker'), 'import("file:///opt/kiln/dist/testbed/worker.js");');
  });
});
