/**
 * Running `./bin/kiln` as a child process, the way a person or a script
 * does, against a real API from startTestKiln, plus a scripted worker that
 * finishes builds over the internal protocol with a log of the test's choice.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { call, type TestKiln } from '../support/kiln.ts';

export const KILN_BIN = new URL('../../bin/kiln', import.meta.url).pathname;
export const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  timeoutMs?: number;
  /** Another program to run instead of ./bin/kiln (e.g. script(1) for a terminal). */
  bin?: string;
}

/** The environment of the test process without anything that would point the CLI elsewhere. */
function cleanEnv(extra: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('KILN_') && key !== 'XDG_CONFIG_HOME' && key !== 'FORCE_COLOR') env[key] = value;
  }
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) env[key] = value;
  return env;
}

export function runKiln(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.bin ?? KILN_BIN, args, { cwd: options.cwd, env: cleanEnv({ NO_COLOR: '1', ...options.env }), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A home and working directory of its own, so no real config or .kiln/ is found. */
export interface CliPlace {
  home: string;
  cwd: string;
  env: Record<string, string>;
  run(args: string[], options?: RunOptions): Promise<CliResult>;
  /** Runs and parses stdout as JSON, asserting exit code 0. */
  json<T = Json>(args: string[], options?: RunOptions): Promise<T>;
  cleanup(): Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test-side JSON access
export type Json = Record<string, any>;

export async function cliPlace(t: TestKiln | undefined, extraEnv: Record<string, string> = {}): Promise<CliPlace> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'kiln-cli-home-'));
  const env: Record<string, string> = { HOME: home, ...(t ? { KILN_URL: t.url, KILN_TOKEN: t.ownerToken } : {}), ...extraEnv };
  const run = (args: string[], options: RunOptions = {}) => runKiln(args, { cwd: home, ...options, env: { ...env, ...options.env } });
  return {
    home,
    cwd: home,
    env,
    run,
    async json<T>(args: string[], options?: RunOptions): Promise<T> {
      const result = await run([...args, '--json'], options);
      assert.equal(result.code, 0, `kiln ${args.join(' ')} --json failed:\n${result.stderr}\n${result.stdout}`);
      try {
        return JSON.parse(result.stdout) as T;
      } catch {
        assert.fail(`kiln ${args.join(' ')} --json printed something that is not JSON:\n${result.stdout}`);
      }
    },
    cleanup: () => rm(home, { recursive: true, force: true }),
  };
}

export interface ScriptedBuild {
  outcome: 'succeeded' | 'failed' | 'crashed';
  /** Log pieces, sent one by one with `pauseMs` between them (to see them stream). */
  log?: string[];
  pauseMs?: number;
  reason?: string;
  module?: Buffer;
  /** Called after the first log piece, while the build is running. */
  whileRunning?: () => Promise<void>;
}

/** Plays one worker job to the end through the internal API; returns the build id. */
export async function playWorker(t: TestKiln, script: ScriptedBuild): Promise<string> {
  const asWorker = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.workerToken, ...options });
  const claimed = await asWorker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'cli-test-worker', waitMs: 20_000 } });
  assert.equal(claimed.status, 200, `no job to claim: ${JSON.stringify(claimed.body)}`);
  const job = claimed.body.job as Json;
  const leased = (method: string, route: string, options: Parameters<typeof call>[3] = {}) =>
    asWorker(method, `/internal/v1/jobs/${job.id}${route}`, { ...options, headers: { 'x-kiln-lease': job.leaseToken, ...options.headers } });
  for (const [index, piece] of (script.log ?? []).entries()) {
    const sent = await leased('POST', '/logs', { body: piece, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(sent.status, 204);
    if (index === 0) await script.whileRunning?.();
    await new Promise((resolve) => setTimeout(resolve, script.pauseMs ?? 0));
  }
  if (script.module) {
    const put = await leased('PUT', '/artifacts/original', { body: new Uint8Array(script.module), headers: { 'content-type': 'application/wasm' } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  }
  const stages = [{ name: 'compile', startedAt: new Date().toISOString(), durationMs: 42 }];
  const result = await leased('POST', '/result', { json: { outcome: script.outcome, reason: script.reason, stages } });
  assert.equal(result.status, 200, JSON.stringify(result.body));
  return job.buildId as string;
}

/** Ends every queued job so a test starts from an empty queue. */
export async function drainJobs(t: TestKiln): Promise<void> {
  while (true) {
    const claimed = await call<Json>(t.url, 'POST', '/internal/v1/jobs/claim', { token: t.workerToken, json: { workerId: 'drain', waitMs: 0 } });
    if (claimed.status !== 200) return;
    const job = claimed.body.job as Json;
    await call(t.url, 'POST', `/internal/v1/jobs/${job.id}/result`, {
      token: t.workerToken,
      json: { outcome: 'failed', reason: 'drained by the test', stages: [] },
      headers: { 'x-kiln-lease': job.leaseToken },
    });
  }
}

/**
 * The smallest WASI command the test bed runs: `_start` returns at once
 * (exit 0). Hand-assembled, with proc_exit declared as (i32) -> () as WASI
 * defines it, so the test bed can link it.
 */
export function runnableWasiCommand(): Buffer {
  const bytes = (...values: number[]) => Buffer.from(values);
  const name = (text: string) => Buffer.concat([bytes(text.length), Buffer.from(text)]);
  const section = (id: number, content: Buffer) => Buffer.concat([bytes(id, content.length), content]);
  return Buffer.concat([
    bytes(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
    section(1, bytes(2, 0x60, 1, 0x7f, 0, 0x60, 0, 0)), // types: (i32) -> (), () -> ()
    section(2, Buffer.concat([bytes(1), name('wasi_snapshot_preview1'), name('proc_exit'), bytes(0x00, 0)])),
    section(3, bytes(1, 1)), // one function of type 1
    section(5, bytes(1, 0x00, 1)), // one memory, one page
    section(7, Buffer.concat([bytes(2), name('_start'), bytes(0x00, 1), name('memory'), bytes(0x02, 0)])),
    section(10, bytes(1, 2, 0, 0x0b)), // an empty body
  ]);
}
