import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BubblewrapSandbox } from '../../src/sandbox/bubblewrap.ts';
import { probeCgroups } from '../../src/sandbox/cgroups.ts';
import { createWorkDir } from '../../src/sandbox/volume.ts';
import { compilePrograms, sh, survivors, TEST_LIMITS } from './helpers.ts';
import type { Captured, Programs, ShOptions } from './helpers.ts';

/**
 * A sandbox from the warm pool must be exactly as isolated as a fresh one.
 * Each case runs in a pooled slot (checked: the pool shrinks by one) right
 * after another run that tried to leave something behind.
 */
const UID_BASE = 216_000;
const UID_POOL = 6;

let root: string;
let warm: BubblewrapSandbox;
let fresh: BubblewrapSandbox;
let programs: Programs;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-warm-test-'));
  await chmod(root, 0o755);
  const options = { stateDir: join(root, 'state'), uidBase: UID_BASE, uidPoolSize: UID_POOL };
  warm = new BubblewrapSandbox({ ...options, warmPool: 2 });
  fresh = new BubblewrapSandbox(options);
  await warm.check();
  programs = await compilePrograms();
});

after(async () => {
  await warm?.close();
  await programs?.dispose();
  await rm(root, { recursive: true, force: true });
});

/** Runs `script` in a fresh capped work dir through a slot of the warm pool (asserting that it was one). */
async function pooled(script: string, extra: ShOptions = {}): Promise<Captured> {
  await warm.warmUp();
  const before = warm.warmState.ready;
  assert.equal(before, 2, `the pool is not ready: ${String(warm.warmState.lastError)}`);
  const work = await createWorkDir(root, 64 * 1024 ** 2);
  try {
    const captured = await sh(warm, work.path, script, extra);
    assert.equal(warm.warmState.ready, before - 1, 'the run did not take a prepared slot');
    return captured;
  } finally {
    await work.dispose();
  }
}

/**
 * Like pooled(), and the run must have used the slot's waiting sandbox
 * (decision 0034), not a fresh one started in the slot's groups. A run of
 * the same shape beforehand (unless the previous run had it) makes the pool
 * prepare slots of that shape.
 */
async function inWaitingSandbox(script: string, extra: ShOptions = {}, prime = true): Promise<Captured> {
  if (prime) await pooled('true', extra);
  const before = warm.warmState.inWaitingSandbox;
  const captured = await pooled(script, extra);
  assert.equal(warm.warmState.inWaitingSandbox, before + 1, 'the run did not use the waiting sandbox');
  return captured;
}

/** Host mount points of this process's prepared slots (each idle slot has one: its shared /build source). */
async function slotMounts(): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  return mountinfo.split('\n').map((line) => line.split(' ')[4] ?? '').filter((point) => point.includes(`stage-${process.pid}-slot`));
}

/**
 * Processes of the pool uids that belong to no idle slot: what a run left
 * behind. (An idle slot is a running sandbox, decision 0034: its bwrap, init
 * and waiter run as the slot's uid inside the slot's groups, and a run's
 * groups are removed when it ends.)
 */
async function runSurvivors(): Promise<number[]> {
  // Listed first: a slot being prepared meanwhile has its processes in its groups by the time they are read.
  const found = await survivors(UID_BASE, UID_POOL);
  const probe = await probeCgroups();
  const idle = new Set<number>();
  if (probe.ok) {
    for (const name of await ourCgroups()) {
      const members = await readFile(join(probe.parents.pids, name, 'cgroup.procs'), 'utf8').catch(() => '');
      for (const pid of members.split('\n').filter(Boolean)) idle.add(Number(pid));
    }
  }
  return found.filter((pid) => !idle.has(pid));
}

async function ourCgroups(): Promise<string[]> {
  const probe = await probeCgroups();
  if (!probe.ok) return [];
  return (await readdir(probe.parents.pids)).filter((name) => name.startsWith(`kiln-${process.pid}-`));
}

describe('warm pool: a prepared sandbox is as isolated as a fresh one', () => {
  test('runs as an unprivileged pool uid with no supplementary groups, a different uid than the run before', async () => {
    const first = await pooled('id -u; id -G');
    const second = await pooled('id -u; id -G');
    for (const run of [first, second]) {
      assert.equal(run.result.exitCode, 0, run.output);
      const [uid, groups] = run.output.trim().split('\n');
      assert.ok(Number(uid) >= UID_BASE && Number(uid) < UID_BASE + UID_POOL, `uid ${uid} is not a pool uid`);
      assert.equal(groups, uid, 'only the primary group');
    }
    assert.notEqual(first.output.split('\n')[0], second.output.split('\n')[0]);
  });

  test('nothing of the previous run is left: files in /build, /tmp, $HOME, /dev/shm, or processes', async () => {
    const planted = await inWaitingSandbox('echo x > /build/left; echo x > /tmp/left; echo x > "$HOME/left"; echo x > /dev/shm/left; setsid nohup sleep 1000 >/dev/null 2>&1 & sleep 0.2; echo planted');
    assert.equal(planted.result.exitCode, 0, planted.output);
    const next = await inWaitingSandbox('ls -A /build /tmp "$HOME" /dev/shm; ps -e -o comm= 2>/dev/null || ls /proc | grep -c "^[0-9]"', {}, false);
    assert.equal(next.result.exitCode, 0, next.output);
    assert.doesNotMatch(next.output, /left/);
    assert.doesNotMatch(next.output, /sleep/);
    assert.deepEqual(await runSurvivors(), []);
  });

  test('limits are this run\'s own: a tight pids limit binds, and the next run with a loose one is not refused', async () => {
    const bomb = await inWaitingSandbox('while :; do sleep 100 & done', { limits: { pids: 16 } });
    assert.equal(bomb.result.limitHit, 'pids', JSON.stringify(bomb.result));
    const next = await inWaitingSandbox('for i in $(seq 40); do sleep 1 & done; wait; echo done', { limits: { pids: 64 } }, false);
    assert.equal(next.result.exitCode, 0, next.output);
    assert.equal(next.result.limitHit, undefined);
    assert.deepEqual(next.result.notes, [], 'counters of the previous run leaked into this one');
  });

  test('a memory limit binds, and the next run can use more than that limit', async () => {
    const eat = await inWaitingSandbox('/opt/attack/eatmem', { mounts: [{ host: programs.dir, sandbox: '/opt/attack' }], limits: { memoryBytes: 96 * 1024 ** 2 } });
    assert.equal(eat.result.limitHit, 'memory', `${JSON.stringify(eat.result)} ${eat.output}`);
    // 160 MiB in /tmp is charged to the memory cgroup: above the previous run's limit, below this one's.
    const next = await inWaitingSandbox('head -c 167772160 /dev/zero > /tmp/fill && echo filled', { limits: { memoryBytes: 512 * 1024 ** 2, diskBytes: 256 * 1024 ** 2 } });
    assert.equal(next.result.exitCode, 0, `${JSON.stringify(next.result)} ${next.output}`);
    assert.match(next.output, /filled/);
    assert.deepEqual(next.result.notes, []);
  });

  test('the seccomp filter refuses exactly what it refuses in a fresh sandbox', async () => {
    const mounts = [{ host: programs.dir, sandbox: '/opt/attack' }];
    const pooledRun = await inWaitingSandbox('/opt/attack/probe', { mounts });
    const work = await createWorkDir(root, 64 * 1024 ** 2);
    try {
      const freshRun = await sh(fresh, work.path, '/opt/attack/probe', { mounts });
      assert.equal(pooledRun.result.exitCode, 0, pooledRun.output);
      assert.equal(freshRun.result.exitCode, 0, freshRun.output);
      assert.match(pooledRun.output, /ptrace=EPERM/);
      assert.equal(pooledRun.output, freshRun.output);
    } finally {
      await work.dispose();
    }
  });

  test('a launcher that died while waiting is not used: the run starts fresh and succeeds', async () => {
    await warm.warmUp();
    const groups = await ourCgroups();
    assert.ok(groups.length >= 2, 'the prepared slots have their groups');
    // Kill every idle launcher: each is the only member of its slot's groups.
    const probe = await probeCgroups();
    assert.ok(probe.ok);
    const killed: number[] = [];
    for (const name of groups) {
      for (const pid of (await readFile(join(probe.parents.pids, name, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
          killed.push(Number(pid));
        } catch (error) {
          // Listed a moment ago, gone now (a launcher's short-lived helper): nothing left to kill.
          if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
        }
      }
    }
    assert.ok(killed.length > 0, 'a waiting launcher was killed');
    // Until Node has reaped them (and so told the pool), however long that takes on a loaded host.
    await runsOnceGone(killed);
  });

  test('waiting sandboxes are started by the launch helper, not by this process (decision 0047)', async () => {
    await warm.warmUp();
    const sandboxes = await waitingSandboxes();
    assert.equal(sandboxes.length, 2, 'one launcher (now bwrap) per prepared slot');
    for (const pid of sandboxes) {
      const parent = await parentOf(pid);
      assert.notEqual(parent, process.pid, 'this process forked a launcher');
      assert.equal(await parentOf(parent), process.pid, 'the launcher\'s parent is this process\'s helper');
      // Its environment is the launcher's (PATH, and what bash adds), nothing of the helper's or this process's.
      assert.deepEqual((await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter(Boolean).sort(), ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'PWD=/', 'SHLVL=0']);
    }
  });

  test('when the launch helper dies its waiting sandboxes die too, and runs and the pool carry on', async () => {
    await warm.warmUp();
    const sandboxes = await waitingSandboxes();
    assert.ok(sandboxes.length > 0);
    const helper = await parentOf(sandboxes[0] as number);
    assert.notEqual(helper, process.pid);
    process.kill(helper, 'SIGKILL');
    // bwrap --die-with-parent: the waiting sandboxes (their init and waiter too) go with the helper.
    await runsOnceGone(sandboxes);
    assert.deepEqual(await runSurvivors(), []);
    // A new helper prepares the next slots, and a run uses one of them.
    const pooledRun = await inWaitingSandbox('echo again');
    assert.match(pooledRun.output, /again/);
    assert.notEqual(await parentOf((await waitingSandboxes())[0] as number), helper);
  });

  test('a run that ends before its launcher starts (work dir over the disk limit) leaves no slot behind', async () => {
    await warm.warmUp();
    const uncapped = await mkdtemp(join(root, 'uncapped-'));
    await writeFile(join(uncapped, 'big'), Buffer.alloc(2 * 1024 ** 2));
    const { result } = await sh(warm, uncapped, 'true', { limits: { diskBytes: 1024 ** 2 } });
    assert.equal(result.limitHit, 'disk');
    await warm.warmUp();
    assert.equal((await ourCgroups()).length, warm.warmState.ready, 'only the ready slots have groups');
    assert.deepEqual(await runSurvivors(), []);
  });

  test('a run of the slots\' shape runs in the waiting sandbox and sees exactly what a fresh sandbox shows', async () => {
    const mounts = [{ host: programs.dir, sandbox: '/opt/attack' }];
    // cwd, environment, capabilities, seccomp, the visible mounts with their options, /build's entries, pid, rlimit.
    const script = [
      'pwd', 'env | sort', "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status",
      "awk '{ options[$5] = $6 } END { for (point in options) print point, options[point] }' /proc/self/mountinfo | sort",
      "ls -la /build | awk 'NR > 1 { print $1, $NF }'", 'echo pid $$', 'ulimit -c', 'ls /opt/attack >/dev/null && echo mounted',
      // Open descriptors (numbers only): nothing of the launch helper's (its IPC channel) or the service's reaches the command.
      "echo fds $(ls /proc/self/fd | sort -n | tr '\\n' ' ')",
      'echo written > /build/sub/out', 'exit 7',
    ].join('; ');
    const extra: ShOptions = { mounts, cwd: '/build/sub', env: { KILN_TEST: 'a b=c' } };
    const run = async (sandbox: BubblewrapSandbox | 'pooled'): Promise<{ captured: Captured; written: string }> => {
      const work = await createWorkDir(root, 64 * 1024 ** 2);
      try {
        await mkdir(join(work.path, 'sub'));
        const captured = sandbox === 'pooled' ? await inWaitingSandbox(script, { ...extra, workDir: work.path }) : await sh(sandbox, work.path, script, extra);
        return { captured, written: await readFile(join(work.path, 'sub', 'out'), 'utf8') };
      } finally {
        await work.dispose();
      }
    };
    const [pooledRun, freshRun] = [await run('pooled'), await run(fresh)];
    assert.equal(pooledRun.captured.result.exitCode, 7, pooledRun.captured.output);
    assert.equal(freshRun.captured.result.exitCode, 7, freshRun.captured.output);
    assert.match(pooledRun.captured.output, /^\/build\/sub\n/);
    assert.match(pooledRun.captured.output, /KILN_TEST=a b=c/);
    assert.match(pooledRun.captured.output, /\/build rw,nosuid,nodev/);
    assert.match(pooledRun.captured.output, /mounted/);
    assert.equal(pooledRun.captured.output, freshRun.captured.output);
    assert.equal(pooledRun.written, 'written\n');
    assert.deepEqual(pooledRun.captured.result.notes, []);
  });

  test('a missing command or cwd fails in a waiting sandbox as it does in a fresh one', async () => {
    const runBoth = async (options: ShOptions & { command: string[] }) => {
      const outcomes: Array<{ exitCode: number | null; output: string }> = [];
      for (const sandbox of ['pooled', fresh] as const) {
        const work = await createWorkDir(root, 64 * 1024 ** 2);
        try {
          const chunks: Buffer[] = [];
          const run = { ...options, env: {}, cwd: options.cwd ?? '/build', workDir: work.path, limits: TEST_LIMITS, onOutput: (chunk: Buffer) => chunks.push(chunk) };
          if (sandbox === 'pooled') {
            await inWaitingSandbox('true');
            await warm.warmUp();
            const before = warm.warmState.inWaitingSandbox;
            const result = await warm.run(run);
            assert.equal(warm.warmState.inWaitingSandbox, before + 1, 'the run did not use the waiting sandbox');
            outcomes.push({ exitCode: result.exitCode, output: Buffer.concat(chunks).toString('utf8') });
          } else {
            const result = await sandbox.run(run);
            outcomes.push({ exitCode: result.exitCode, output: Buffer.concat(chunks).toString('utf8') });
          }
        } finally {
          await work.dispose();
        }
      }
      return outcomes;
    };
    const [pooledMissing, freshMissing] = await runBoth({ command: ['no-such-command-kiln'] });
    assert.deepEqual(pooledMissing, freshMissing);
    assert.match(pooledMissing?.output ?? '', /execvp no-such-command-kiln/);
    const [pooledCwd, freshCwd] = await runBoth({ command: ['/usr/bin/true'], cwd: '/build/nowhere' });
    assert.deepEqual(pooledCwd, freshCwd);
    assert.match(pooledCwd?.output ?? '', /Can't chdir to \/build\/nowhere/);
  });

  test('a run of another shape takes a slot and starts its own sandbox in the slot\'s groups', async () => {
    await pooled('true');
    const before = warm.warmState.freshInSlot;
    const run = await pooled('df -k /tmp | tail -n 1', { limits: { diskBytes: 48 * 1024 ** 2 } });
    assert.equal(run.result.exitCode, 0, run.output);
    assert.equal(warm.warmState.freshInSlot, before + 1);
    assert.match(run.output, /\b49152\b/, 'the run\'s own disk limit sizes /tmp');
  });

  test('after a run only the idle slots keep a mount, and a cancelled run in a waiting sandbox is released too', async () => {
    await inWaitingSandbox('true');
    await warm.warmUp();
    assert.equal((await slotMounts()).length, warm.warmState.ready);
    const controller = new AbortController();
    const work = await createWorkDir(root, 64 * 1024 ** 2);
    try {
      const before = warm.warmState.inWaitingSandbox;
      setTimeout(() => controller.abort(), 300);
      const { result } = await sh(warm, work.path, 'sleep 30', { signal: controller.signal });
      assert.equal(result.cancelled, true);
      assert.equal(warm.warmState.inWaitingSandbox, before + 1, 'the run did not use the waiting sandbox');
    } finally {
      await work.dispose();
    }
    await warm.warmUp();
    assert.equal((await slotMounts()).length, warm.warmState.ready);
    assert.deepEqual(await runSurvivors(), []);
  });

  test('close() leaves no launcher, group or lease behind', async () => {
    await warm.warmUp();
    await warm.close();
    assert.equal(warm.warmState.ready, 0);
    assert.deepEqual(await ourCgroups(), []);
    assert.deepEqual(await readdir(join(root, 'state', 'uids')).then((names) => names.filter((name) => name.startsWith('uid-'))), []);
  });

  test('close() leaves no slot mount, slot directory or waiting sandbox behind', async () => {
    assert.deepEqual(await slotMounts(), []);
    assert.deepEqual(await survivors(UID_BASE, UID_POOL), []);
    assert.deepEqual((await readdir(join(root, 'state', 'volumes'))).filter((name) => name.includes('-slot')), []);
  });
});

/** The processes of the idle slots' groups that are their launchers (now bwrap): those whose parent is in no slot group. */
async function waitingSandboxes(): Promise<number[]> {
  const probe = await probeCgroups();
  assert.ok(probe.ok);
  const members: number[] = [];
  for (const name of await ourCgroups()) {
    members.push(...(await readFile(join(probe.parents.pids, name, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number));
  }
  const launchers: number[] = [];
  for (const pid of members) if (!members.includes(await parentOf(pid))) launchers.push(pid);
  return launchers;
}

async function parentOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
}

/** Waits until `pids` are gone (however long reaping takes on a loaded host), then checks a run still works. */
async function runsOnceGone(pids: number[]): Promise<void> {
  while (await anyAlive(pids)) await new Promise((resolve) => setTimeout(resolve, 20));
  const work = await createWorkDir(root, 64 * 1024 ** 2);
  try {
    const run = await sh(warm, work.path, 'echo alive');
    assert.equal(run.result.exitCode, 0, run.output);
    assert.match(run.output, /alive/);
  } finally {
    await work.dispose();
  }
}

/** True while one of `pids` still has a /proc entry (a zombie not yet reaped counts). */
async function anyAlive(pids: number[]): Promise<boolean> {
  const entries = new Set(await readdir('/proc'));
  return pids.some((pid) => entries.has(String(pid)));
}
