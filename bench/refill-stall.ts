/**
 * How long the warm pool's refill holds the event loop of a large process
 * (decisions 0044, 0047). `kiln serve` is one process of ~560 MB (API,
 * embedded database, workers); a refill after each sandboxed run starts a
 * launcher, and a program started from this process forks it. With ~500 MB
 * of ballast, each run of `/bin/true` takes a slot, and the longest gap of a
 * 1 ms interval timer is recorded until the pool is full again.
 *
 * Usage: node --import tsx bench/refill-stall.ts [refills]   (default 12)
 * Compare trees by running it in each (same load: alternate them).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BubblewrapSandbox } from '../src/sandbox/bubblewrap.ts';
import { createWorkDir, DEFAULT_LIMITS } from '../src/sandbox/index.ts';
import { median } from './stats.ts';

const BALLAST_MB = 500;

const refills = Math.max(1, Number(process.argv[2] ?? 12));
// Touched, so it is resident (and so its page tables are what a fork copies).
const ballast = Array.from({ length: BALLAST_MB / 10 }, (_, index) => Buffer.alloc(10 * 1024 ** 2, index));
const root = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-refill-'));
await chmod(root, 0o755);
const sandbox = new BubblewrapSandbox({ stateDir: path.join(root, 'state'), uidBase: 236_000, uidPoolSize: 6, warmPool: 2 });
try {
  await sandbox.warmUp();
  const gaps: number[] = [];
  for (let refill = 0; refill < refills; refill++) {
    const work = await createWorkDir(root, 64 * 1024 ** 2);
    try {
      const result = await sandbox.run({ command: ['/bin/true'], env: {}, cwd: '/build', workDir: work.path, limits: DEFAULT_LIMITS });
      if (result.exitCode !== 0) throw new Error(`the run failed: ${JSON.stringify(result)}`);
      // run() has returned: the slot's retirement and the refill start now.
      let last = performance.now();
      let longest = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
      }, 1);
      await sandbox.warmUp();
      await new Promise((resolve) => setTimeout(resolve, 5));
      clearInterval(timer);
      gaps.push(longest);
    } finally {
      await work.dispose();
    }
  }
  const sorted = [...gaps].sort((a, b) => a - b);
  console.log(`warm pool refill in a process of ${(process.memoryUsage().rss / 1024 ** 2).toFixed(0)} MB RSS (${ballast.length * 10} MB ballast), load average ${os.loadavg()[0]?.toFixed(2)} on ${os.cpus().length} cores`);
  console.log(`longest event-loop gap per refill: median ${median(gaps).toFixed(1)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms (${sorted.map((gap) => gap.toFixed(0)).join(' ')})`);
  console.log(`runs in a waiting sandbox: ${sandbox.warmState.inWaitingSandbox} of ${refills}`);
} finally {
  await sandbox.close();
  await rm(root, { recursive: true, force: true });
}
