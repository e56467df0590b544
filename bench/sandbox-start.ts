/**
 * Sandbox start-up: median wall time of running `true`, against the 10 ms
 * target of the brief (§9), measured in one run:
 *   - bwrap bare: `bwrap <our namespace flags> true` spawned directly as a
 *     pool uid (no cgroups, no seccomp, no work dir): the reference;
 *   - bubblewrap warm: BubblewrapSandbox.run() with its warm pool, the way
 *     `createSandbox` makes it: uid, cgroups with this run's limits, seccomp,
 *     the work dir handed over, launch, watch, sweep and removal of the groups,
 *     all included; only what a prepared slot did earlier is not (between
 *     runs the bench waits until the pool is refilled, untimed, as a worker
 *     between builds would);
 *   - bubblewrap fresh: the same run without a pool (everything in the run);
 *   - bubblewrap rlimits, gVisor: the fallbacks, for comparison.
 *
 * Usage: node --import tsx bench/sandbox-start.ts [runs]   (default 30; gVisor runs a third of it)
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BubblewrapSandbox } from '../src/sandbox/bubblewrap.ts';
import { GvisorSandbox } from '../src/sandbox/gvisor.ts';
import { DEFAULT_LIMITS } from '../src/sandbox/sandbox.ts';
import type { Sandbox } from '../src/sandbox/sandbox.ts';
import { createWorkDir } from '../src/sandbox/volume.ts';

export const SANDBOX_START_TARGET_MS = 10;
const UID = 239_000;

async function median(count: number, once: () => Promise<void>, between?: () => Promise<void>): Promise<number> {
  await once(); // warm caches (compiled helpers, page cache)
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    await between?.();
    const started = performance.now();
    await once();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? NaN;
}

function bareBwrap(): Promise<void> {
  const args = ['--unshare-all', '--unshare-user', '--die-with-parent', '--new-session', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/bin', '/bin', '--proc', '/proc', '--dev', '/dev', '--clearenv', '/usr/bin/true'];
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/bwrap', args, { uid: UID, gid: UID, stdio: 'ignore', env: {} });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bwrap exited with ${code}`))));
  });
}

function sandboxed(sandbox: Sandbox, workDir: string): () => Promise<void> {
  return async () => {
    const result = await sandbox.run({ command: ['/usr/bin/true'], env: {}, cwd: '/build', workDir, limits: DEFAULT_LIMITS });
    if (result.exitCode !== 0) throw new Error(`${sandbox.name}: exit ${result.exitCode} ${result.notes.join('; ')}`);
  };
}

function line(label: string, ms: number): void {
  console.log(`${label.padEnd(20)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / SANDBOX_START_TARGET_MS).toFixed(2)}x the ${SANDBOX_START_TARGET_MS} ms target`);
}

export interface SandboxStartFigures {
  bareBwrapMsP50: number;
  /** With the warm pool: what a build step sees. */
  sandboxStartMsP50: number;
  /** Without a pool: everything inside the run. */
  sandboxFreshMsP50: number;
}

/** Bare bwrap and Kiln's bubblewrap (warm and fresh), interleaved per series in one run. */
export async function measureSandboxStart(runs: number, options: { fallbacks?: boolean } = {}): Promise<SandboxStartFigures> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-bench-sandbox-'));
  await chmod(root, 0o755);
  const base = { stateDir: join(root, 'state'), uidBase: UID + 1, uidPoolSize: 8 };
  const work = await createWorkDir(root, 64 * 1024 ** 2);
  const warm = new BubblewrapSandbox({ ...base, warmPool: 2 });
  try {
    const bareBwrapMsP50 = await median(runs, bareBwrap);
    line('bwrap bare', bareBwrapMsP50);
    const sandboxStartMsP50 = await median(runs, sandboxed(warm, work.path), () => warm.warmUp());
    const state = warm.warmState;
    if (state.lastError) console.log(`warm pool failed: ${String(state.lastError)}`);
    console.log(`  (runs in a waiting sandbox: ${state.inWaitingSandbox}, started fresh in a slot: ${state.freshInSlot})`);
    line('bubblewrap warm', sandboxStartMsP50);
    const sandboxFreshMsP50 = await median(runs, sandboxed(new BubblewrapSandbox(base), work.path));
    line('bubblewrap fresh', sandboxFreshMsP50);
    if (options.fallbacks) {
      line('bubblewrap rlimits', await median(runs, sandboxed(new BubblewrapSandbox({ ...base, cgroups: false }), work.path)));
      line('gVisor full', await median(Math.max(3, Math.floor(runs / 3)), sandboxed(new GvisorSandbox(base), work.path)));
    }
    return { bareBwrapMsP50, sandboxStartMsP50, sandboxFreshMsP50 };
  } finally {
    await warm.close();
    await work.dispose();
    await rm(root, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const runs = Math.max(3, Number(process.argv[2] ?? 30));
  console.log(`sandbox start: median of ${runs} runs of \`true\` (gVisor: ${Math.max(3, Math.floor(runs / 3))})`);
  await measureSandboxStart(runs, { fallbacks: true });
}
