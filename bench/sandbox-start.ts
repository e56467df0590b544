/**
 * Sandbox start-up: median wall time of running `true`, against the 10 ms
 * target of the brief (§9), measured in one run:
 *   - bwrap bare: `bwrap <our namespace flags> true` spawned directly as a
 *     pool uid (no cgroups, no seccomp, no work dir);
 *   - bubblewrap full: BubblewrapSandbox.run() with everything (uid lease,
 *     chown, cgroups, seccomp, launcher, sweep);
 *   - gVisor: GvisorSandbox.run() with everything.
 *
 * Usage: node --import tsx bench/sandbox-start.ts [runs]   (default 30; gVisor runs a third of it)
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BubblewrapSandbox } from '../src/sandbox/bubblewrap.ts';
import { GvisorSandbox } from '../src/sandbox/gvisor.ts';
import { DEFAULT_LIMITS } from '../src/sandbox/sandbox.ts';
import type { Sandbox } from '../src/sandbox/sandbox.ts';
import { createWorkDir } from '../src/sandbox/volume.ts';

const TARGET_MS = 10;
const UID = 239_000;
const runs = Math.max(3, Number(process.argv[2] ?? 30));

async function median(count: number, once: () => Promise<void>): Promise<number> {
  await once(); // warm caches (compiled helpers, page cache)
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
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
  console.log(`${label.padEnd(20)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / TARGET_MS).toFixed(2)}x the ${TARGET_MS} ms target`);
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-bench-sandbox-'));
  await chmod(root, 0o755);
  const options = { stateDir: join(root, 'state'), uidBase: UID + 1, uidPoolSize: 2 };
  const work = await createWorkDir(root, 64 * 1024 ** 2);
  try {
    console.log(`sandbox start: median of ${runs} runs of \`true\` (gVisor: ${Math.max(3, Math.floor(runs / 3))})`);
    line('bwrap bare', await median(runs, bareBwrap));
    line('bubblewrap full', await median(runs, sandboxed(new BubblewrapSandbox(options), work.path)));
    const noCgroups = new BubblewrapSandbox({ ...options, cgroups: false });
    line('bubblewrap rlimits', await median(runs, sandboxed(noCgroups, work.path)));
    line('gVisor full', await median(Math.max(3, Math.floor(runs / 3)), sandboxed(new GvisorSandbox(options), work.path)));
  } finally {
    await work.dispose();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
