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
import { EarlyInspections } from '../../src/evaluator/early-inspections.ts';
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

/**
 * Inspections started when a worker stores an artifact (decision 0047): the
 * evaluator uses one only for the very bytes stored at that key now.
 */
describe('inspections started when the artifacts were stored', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'kiln-evaluate-early-'));
  });
  after(async () => {
    await closeInspectThread();
    await rm(root, { recursive: true, force: true });
  });

  const LIMITS = { maxBytes: 1024 ** 2, deadlineMs: INSPECT_DEADLINE_MS };

  /** An object store that counts the objects read back. */
  async function store(): Promise<{ objects: FsObjectStore; reads: string[] }> {
    const objects = new FsObjectStore({ root: await mkdtemp(join(root, 'store-')) });
    const reads: string[] = [];
    const getBuffer = objects.getBuffer.bind(objects);
    objects.getBuffer = async (key: string) => {
      reads.push(key);
      return getBuffer(key);
    };
    return { objects, reads };
  }

  function evaluate(objects: FsObjectStore, early: EarlyInspections, kind?: JobResult['kind']) {
    const report: JobResult = { outcome: 'succeeded', stages: [], ...(kind ? { kind } : {}) };
    return evaluateReport(objects, { report, declaredKind: null, declaredLanguage: null, artifactKeys: KEYS, inspect: LIMITS, early });
  }

  it('judges the stored bytes from the inspection started when they were stored, without reading them back', async () => {
    const { objects, reads } = await store();
    const early = new EarlyInspections();
    for (const [key, bytes] of [[KEYS.original, proxyWasmModule()], [KEYS.optimized, Buffer.from('not wasm')]] as const) {
      const stored = await objects.put(key, bytes);
      early.start(key, stored.sha256, bytes, LIMITS);
    }
    const result = await evaluate(objects, early, 'proxy-wasm');
    assert.equal(result.outcome, 'succeeded');
    assert.deepEqual(Object.keys(result.artifacts), ['original']);
    assert.match(String(result.details.optimizedRejected), /invalid WebAssembly/, 'an early verdict of invalid counts too');
    assert.deepEqual(reads, []);
    // Used once: a second report of the same attempt is judged from the stored bytes.
    await evaluate(objects, early, 'proxy-wasm');
    assert.deepEqual(reads.sort(), [KEYS.optimized, KEYS.original]);
  });

  it('ignores an inspection of other bytes than those stored at the key now', async () => {
    const { objects, reads } = await store();
    const early = new EarlyInspections();
    // Valid bytes inspected, then other (invalid) bytes stored at the same key: the stored ones are judged.
    const valid = proxyWasmModule();
    early.start(KEYS.original, (await objects.put(KEYS.original, valid)).sha256, valid, LIMITS);
    await objects.put(KEYS.original, Buffer.from('not wasm at all'));
    const result = await evaluate(objects, early, 'proxy-wasm');
    assert.equal(result.outcome, 'failed');
    assert.match(String(result.reason), /invalid WebAssembly/);
    assert.deepEqual(reads, [KEYS.original]);
  });

  it('judges a component from its stored bytes (never inspected early), and keeps at most its bound of entries', async () => {
    const early = new EarlyInspections(2);
    const component = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    early.start('a', 'sha-a', component, LIMITS);
    assert.equal(early.take('a', 'sha-a'), undefined);
    for (const key of ['b', 'c', 'd']) early.start(key, `sha-${key}`, commandModule(), LIMITS);
    assert.equal(early.take('b', 'sha-b'), undefined, 'the oldest entry was dropped');
    assert.equal((await early.take('d', 'sha-d'))?.ok, true);
    assert.equal(early.take('c', 'sha-other'), undefined, 'another digest is not the inspected object');
  });
});
