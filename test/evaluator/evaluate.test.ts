/**
 * The evaluator's verdict on a reported success, with both variants stored
 * (judged at once): the original decides the outcome and the kind, and an
 * optimized variant that is invalid or of another kind is dropped with its
 * reason while the original is served.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { evaluateReport, INSPECT_DEADLINE_MS } from '../../src/evaluator/evaluate.ts';
import { closeInspectThread } from '../../src/evaluator/inspect-thread.ts';
import { FsObjectStore } from '../../src/store/objects/fs-store.ts';
import type { JobResult } from '../../src/worker/protocol.ts';
import { moduleWithExports, proxyWasmModule } from '../support/wasm.ts';

const KEYS = { original: 'builds/b1/attempts/1/original.wasm', optimized: 'builds/b1/attempts/1/optimized.wasm' };
const commandModule = () => moduleWithExports(['_start']);

describe('evaluating a reported success with both variants', () => {
  let root: string;
  let objects: FsObjectStore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'kiln-evaluate-'));
  });
  after(async () => {
    await closeInspectThread();
    await rm(root, { recursive: true, force: true });
  });

  async function evaluate(original: Buffer, optimized: Buffer | undefined, kind?: JobResult['kind']) {
    objects = new FsObjectStore({ root: await mkdtemp(join(root, 'store-')) });
    await objects.put(KEYS.original, original);
    if (optimized) await objects.put(KEYS.optimized, optimized);
    const report: JobResult = { outcome: 'succeeded', stages: [], ...(kind ? { kind } : {}) };
    return evaluateReport(objects, { report, declaredKind: null, declaredLanguage: null, artifactKeys: KEYS, inspect: { maxBytes: 1024 ** 2, deadlineMs: INSPECT_DEADLINE_MS } });
  }

  it('keeps a valid optimized variant of the same kind beside the original', async () => {
    const result = await evaluate(commandModule(), commandModule(), 'wasi-command');
    assert.equal(result.outcome, 'succeeded');
    assert.equal(result.kind, 'wasi-command');
    assert.deepEqual(Object.keys(result.artifacts).sort(), ['optimized', 'original']);
  });

  it('drops an optimized variant of another kind when no kind was known beforehand, and serves the original', async () => {
    const result = await evaluate(commandModule(), proxyWasmModule());
    assert.equal(result.outcome, 'succeeded');
    assert.equal(result.kind, 'wasi-command', 'the original decides the kind');
    assert.deepEqual(Object.keys(result.artifacts), ['original']);
    assert.match(String(result.details.optimizedRejected), /wasi-command/);
  });

  it('drops an invalid optimized variant, and fails the build on an invalid original whatever the optimized one is', async () => {
    const dropped = await evaluate(proxyWasmModule(), Buffer.from('not wasm'), 'proxy-wasm');
    assert.equal(dropped.outcome, 'succeeded');
    assert.deepEqual(Object.keys(dropped.artifacts), ['original']);
    assert.match(String(dropped.details.optimizedRejected), /invalid WebAssembly/);

    const failed = await evaluate(Buffer.from('not wasm'), proxyWasmModule(), 'proxy-wasm');
    assert.equal(failed.outcome, 'failed');
    assert.match(String(failed.reason), /invalid WebAssembly/);
    assert.deepEqual(failed.artifacts, {});
  });
});
