/**
 * The prepared start-up measurement (decision 0039): a measuring process
 * started in the real bubblewrap sandbox before its module exists, which
 * measures the module handed over later, exits when released, and is
 * replaced by a fresh process when it waited too long.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isStartupTimes, measureStartup, prepareMeasurement } from '../../src/optimize/startup.ts';
import type { ToolContext } from '../../src/optimize/tool-run.ts';
import { createSandbox, createWorkDir, type WorkDir } from '../../src/sandbox/index.ts';
import type { Sandbox, SandboxLimits } from '../../src/sandbox/sandbox.ts';
import { until } from '../support/until.ts';
import { filterWat, wat } from '../testbed/wat.ts';
import { commandModule } from './modules.ts';

const LIMITS: SandboxLimits = { wallMs: 60_000, memoryBytes: 512 * 1024 ** 2, pids: 64, diskBytes: 16 * 1024 ** 2, logBytes: 1024 ** 2, cpus: 1 };
/** Longer than the test's timeout: a process that is not released or handed its module makes the test fail. */
const NEVER_MS = 10 * 60_000;

interface RecordedRun {
  command: string[];
  /** Whether the module file was in the volume when the run started. */
  moduleExisted: boolean;
  output: string;
  ended: boolean;
}

let workRoot: string;
const volumes: WorkDir[] = [];
before(async () => {
  workRoot = await mkdtemp(join(tmpdir(), 'kiln-startup-'));
  await chmod(workRoot, 0o755);
});
after(async () => {
  await rm(workRoot, { recursive: true, force: true });
});

/** A context on a fresh volume whose sandbox records every run. */
async function recordingContext(): Promise<{ context: ToolContext; runs: RecordedRun[] }> {
  const volume = await createWorkDir(workRoot, LIMITS.diskBytes, 'startup');
  volumes.push(volume);
  const real = createSandbox('bubblewrap');
  const runs: RecordedRun[] = [];
  const sandbox: Sandbox = {
    name: real.name,
    check: () => real.check(),
    run: async (options) => {
      const module = options.command.find((arg) => arg.endsWith('.wasm')) ?? '';
      const run: RecordedRun = { command: options.command, moduleExisted: existsSync(join(options.workDir, module.replace(/^\/build\//, ''))), output: '', ended: false };
      runs.push(run);
      const result = await real.run({ ...options, onOutput: (chunk) => ((run.output += chunk.toString('utf8')), options.onOutput?.(chunk)) });
      run.ended = true;
      return result;
    },
  };
  return { context: { sandbox, volume: volume.path, limits: LIMITS, onOutput: () => undefined }, runs };
}

describe('the prepared start-up measurement', { timeout: 120_000 }, () => {
  after(async () => {
    await Promise.all(volumes.map((volume) => volume.dispose()));
  });

  it('starts before its module exists and measures the module handed over later, in that one process', async () => {
    const { context, runs } = await recordingContext();
    const prepared = prepareMeasurement(context, 'wasi-command', { name: 'later.wasm' }, NEVER_MS);
    await until(() => runs.length === 1, 60_000);
    const startup = await prepared.measure(commandModule());
    assert.ok(isStartupTimes(startup), JSON.stringify(startup));
    assert.equal(startup.exitCode, 0);
    assert.equal(runs.length, 1, 'no second process');
    assert.equal(runs[0]?.moduleExisted, false, 'the process was started before the module was there');
    await prepared.release();
  });

  it('measures the same module the same way as a measurement started with its module', async () => {
    const { context } = await recordingContext();
    const trapping = commandModule({ init: [0x00] });
    const direct = await measureStartup(context, trapping, 'wasi-command', { name: 'direct.wasm' });
    const prepared = await prepareMeasurement(context, 'wasi-command', { name: 'prepared.wasm' }, NEVER_MS).measure(trapping);
    assert.ok(!isStartupTimes(direct) && !isStartupTimes(prepared));
    assert.match(direct.error, /unreachable/);
    assert.equal(prepared.error, direct.error);
  });

  it('measures with a given stdin and as a plain host, the way the benchmarks call it', async () => {
    const { context, runs } = await recordingContext();
    const startup = await measureStartup(context, commandModule({ init: [0x00] }), 'wasi-command', { name: 'stdin.wasm', input: Buffer.from('{}'), callInit: false });
    assert.ok(isStartupTimes(startup), `the trapping init is not called as a plain host: ${JSON.stringify(startup)}`);
    assert.ok(runs[0]?.command.includes('/build/stdin.wasm.stdin'));
  });

  it('measures a filter that, like the official Rust SDK, traps unless the clock, the log level and header maps answer Ok', async () => {
    const imports = `
      (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
      (import "env" "proxy_get_log_level" (func $level (param i32) (result i32)))
      (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))`;
    // The SDK's getters panic on any status but Ok; it then reads the clock and deserializes the map it was given.
    const strict = wat(
      filterWat(
        `(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
          (if (call $time (i32.const 0)) (then unreachable))
          (if (i64.eqz (i64.load (i32.const 0))) (then unreachable))
          (if (call $level (i32.const 8)) (then unreachable))
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (if (call $pairs (i32.const 0) (i32.const 16) (i32.const 20)) (then unreachable))
          (if (i32.ne (i32.load (i32.const 20)) (i32.const 4)) (then unreachable))
          (if (i32.load (i32.load (i32.const 16))) (then unreachable))
          (i32.const 0))`,
        imports,
      ),
    );
    const { context } = await recordingContext();
    const startup = await measureStartup(context, strict, 'proxy-wasm', { name: 'strict-sdk.wasm' });
    assert.ok(isStartupTimes(startup), `a getter answered something but Ok: ${JSON.stringify(startup)}`);
  });

  it('exits without measuring when released', async () => {
    const { context, runs } = await recordingContext();
    const prepared = prepareMeasurement(context, 'wasi-command', { name: 'never.wasm' }, NEVER_MS);
    await prepared.release();
    assert.equal(runs.length, 1);
    assert.equal(runs[0]?.ended, true);
    assert.match(runs[0]?.output ?? '', /"skipped":true,"error":"released"/);
  });

  it('measures in a fresh process when the prepared one stopped waiting before the module came', async () => {
    const { context, runs } = await recordingContext();
    const prepared = prepareMeasurement(context, 'wasi-command', { name: 'late.wasm' }, 1);
    await until(() => runs[0]?.ended === true, 60_000);
    assert.match(runs[0]?.output ?? '', /no module within 1 ms/);
    const startup = await prepared.measure(commandModule());
    assert.ok(isStartupTimes(startup), JSON.stringify(startup));
    assert.equal(runs.length, 2, 'a second, fresh process measured it');
    assert.equal(runs[1]?.moduleExisted, true);
  });
});
