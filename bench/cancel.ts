/**
 * How fast a build sandbox ends when it must, in one run (tests assert only
 * the mechanism; the latencies live here):
 *   - cancel: from abort() to run() returning, for `sleep 100`; target 2 s
 *     (the cancel contract);
 *   - pids limit: a fork bomb that never ends by itself (its shell keeps
 *     looping once forks are refused), from start to run() returning;
 *     target 5 s ("within seconds of hitting its limit", LIMIT_GRACE_MS included).
 *
 * Usage: node --import tsx bench/cancel.ts [runs]   (default 3)
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSandbox } from '../src/sandbox/index.ts';
import { DEFAULT_LIMITS, type SandboxRunOptions } from '../src/sandbox/sandbox.ts';
import { createWorkDir } from '../src/sandbox/volume.ts';

const CANCEL_TARGET_MS = 2_000;
const LIMIT_TARGET_MS = 5_000;
const runs = Math.max(1, Number(process.argv[2] ?? 3));

const sandbox = createSandbox('bubblewrap');
await sandbox.check();
const root = await mkdtemp(join(tmpdir(), 'kiln-bench-cancel-'));
await chmod(root, 0o755);

async function timed(script: string, options: Partial<SandboxRunOptions>, from: () => number): Promise<number> {
  const workDir = await createWorkDir(root, 64 * 1024 ** 2, 'bench-cancel');
  try {
    await sandbox.run({ command: ['/bin/sh', '-c', script], env: {}, cwd: '/build', workDir: workDir.path, limits: { ...DEFAULT_LIMITS, pids: 64, wallMs: 120_000 }, ...options });
    return performance.now() - from();
  } finally {
    await workDir.dispose();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

const cancels: number[] = [];
const limits: number[] = [];
for (let i = 0; i < runs; i++) {
  const controller = new AbortController();
  let abortedAt = 0;
  setTimeout(() => {
    abortedAt = performance.now();
    controller.abort();
  }, 300);
  cancels.push(await timed('sleep 100', { signal: controller.signal }, () => abortedAt));
  const started = performance.now();
  limits.push(await timed('while :; do sleep 100 & done', {}, () => started));
}
await rm(root, { recursive: true, force: true });

const cancel = median(cancels);
const limit = median(limits);
console.log(`cancel:     median ${cancel.toFixed(0)} ms over ${runs} runs (target ${CANCEL_TARGET_MS} ms): ${(cancel / CANCEL_TARGET_MS).toFixed(2)}× target`);
console.log(`pids limit: median ${limit.toFixed(0)} ms over ${runs} runs (target ${LIMIT_TARGET_MS} ms): ${(limit / LIMIT_TARGET_MS).toFixed(2)}× target`);
