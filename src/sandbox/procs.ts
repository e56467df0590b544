import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { PlatformError } from '../errors.ts';

/**
 * Processes by host uid. Each concurrent run owns its uid exclusively (see
 * uids.ts), so after a run every process of that uid is a leftover: this is
 * the sweep that still works where cgroups are unavailable.
 */
export async function pidsOfUid(uid: number): Promise<number[]> {
  const entries = await readdir('/proc');
  const owned = await Promise.all(
    entries.filter((name) => /^\d+$/.test(name)).map(async (name) => ((await realUid(name)) === uid ? Number(name) : -1)),
  );
  return owned.filter((pid) => pid > 0);
}

/**
 * The real uid from /proc/<pid>/status (the directory's owner lies for
 * non-dumpable processes). Zombies count as gone: they run nothing and only
 * wait for their parent to reap them.
 */
async function realUid(pid: string): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  if (/^State:\s+[ZX]/m.test(status)) return undefined;
  const match = /^Uid:\s+(\d+)/m.exec(status);
  return match?.[1] ? Number(match[1]) : undefined;
}

/** SIGKILLs every process of `uid` until none is left; returns how many were killed. */
export async function killUid(uid: number, timeoutMs = 3000): Promise<number> {
  if (uid === 0) throw new PlatformError('sandbox_internal', 'refusing to sweep the processes of root');
  const deadline = Date.now() + timeoutMs;
  let killed = 0;
  while (Date.now() < deadline) {
    const pids = await pidsOfUid(uid);
    if (pids.length === 0) return killed;
    for (const pid of pids) if (killIfStill(pid, (proc) => proc.status.match(/^Uid:\s+(\d+)/m)?.[1] === String(uid))) killed++;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new PlatformError('sandbox_unkillable', `processes of uid ${uid} survive after ${timeoutMs} ms`);
}

/** Whether a pid exists (EPERM still means it does). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * SIGKILLs `pid` only if it still matches, checked synchronously right
 * before the signal. Pids are reused (pid_max is 32768 here, and a fork bomb
 * cycles through them fast): a pid read a moment ago may by now belong to
 * another process — the worker itself. With no await between the check and
 * the kill the window is microseconds, far too short for the counter to wrap.
 */
export function killIfStill(pid: number, matches: (proc: { status: string; cgroup: string }) => boolean): boolean {
  let status: string;
  let cgroup: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
    cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return false;
  }
  if (/^State:\s+[ZX]/m.test(status) || !matches({ status, cgroup })) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}
