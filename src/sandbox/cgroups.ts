import { readFileSync, writeFileSync } from 'node:fs';
import { chown, mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { isAlive, killIfStill } from './procs.ts';

/**
 * Per-run cgroup v1 groups (this machine kind mounts v1 hierarchies; its
 * cgroup2 mount only carries hugetlb, see SANDBOX.md).
 *
 * Each run gets `<hierarchy>/<our own cgroup>/kiln-<id>` in the memory, pids
 * and cpu hierarchies. Nesting under our own cgroup (from /proc/self/cgroup)
 * keeps the builds inside whatever limits the operator put on the service,
 * and makes them show up where the service's resources are accounted.
 *
 * The sandbox launcher moves itself in before it execs the sandbox (see
 * supervise.ts), so no process of the run is ever outside the groups.
 */
export type Controller = 'memory' | 'pids' | 'cpu';
export const CONTROLLERS: readonly Controller[] = ['memory', 'pids', 'cpu'];

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  cpus: number;
}

/** What happened inside the groups during the run. */
export interface CgroupReport {
  /** Processes the kernel OOM-killed because of memory.limit_in_bytes. */
  oomKills: number;
  /** Times usage hit the memory limit (includes reclaim that succeeded). */
  memoryFailcnt: number;
  /** fork/clone calls refused by pids.max. */
  pidsRefused: number;
  /** Peak memory usage in bytes. */
  memoryPeakBytes: number;
}

/**
 * Group names carry our pid: a worker killed with -9 leaves empty groups
 * behind, and the next process on the host removes those whose pid is dead.
 */
export function runCgroupName(id: string): string {
  return `kiln-${process.pid}-${id}`;
}

export type CgroupProbe = { ok: true; parents: Record<Controller, string> } | { ok: false; reason: string };

const CGROUP_ROOT_FALLBACK = '/sys/fs/cgroup';
const CPU_PERIOD_US = 100_000;

/**
 * Finds the directory of our own group in each hierarchy and checks that a
 * child group can be created there. Never throws: callers fall back to rlimits.
 */
export async function probeCgroups(): Promise<CgroupProbe> {
  try {
    const own = parseProcCgroup(await readFile('/proc/self/cgroup', 'utf8'));
    const mounts = parseCgroupMounts(await readFile('/proc/self/mountinfo', 'utf8'));
    const parents = {} as Record<Controller, string>;
    for (const controller of CONTROLLERS) {
      const path = own.get(controller);
      const mountPoint = mounts.get(controller) ?? join(CGROUP_ROOT_FALLBACK, controller);
      if (path === undefined) return { ok: false, reason: `no cgroup v1 "${controller}" hierarchy in /proc/self/cgroup` };
      parents[controller] = join(mountPoint, path);
    }
    await tryCreate(parents);
    await removeOrphans(parents);
    return { ok: true, parents };
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  }
}

async function tryCreate(parents: Record<Controller, string>): Promise<void> {
  for (const controller of CONTROLLERS) {
    const dir = join(parents[controller], `kiln-probe-${process.pid}`);
    await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw new Error(`cannot create a ${controller} cgroup under ${parents[controller]}: ${error.code}`);
    });
    await rmdir(dir);
  }
}

/** Empty groups left by dead workers; a group with members is never touched. */
async function removeOrphans(parents: Record<Controller, string>): Promise<void> {
  for (const controller of CONTROLLERS) {
    const names = await readdir(parents[controller]).catch(() => [] as string[]);
    for (const name of names) {
      const owner = /^kiln-(\d+)-/.exec(name)?.[1];
      if (!owner || isAlive(Number(owner))) continue;
      const dir = join(parents[controller], name);
      const members = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => 'unknown');
      if (members.trim() === '') await rmdir(dir).catch(() => undefined);
    }
  }
}

/** "4:memory:/process_api/x" lines → controller → path (v1 lines only). */
export function parseProcCgroup(text: string): Map<string, string> {
  const result = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (!controllers || path === undefined) continue;
    for (const controller of controllers.split(',')) result.set(controller, path);
  }
  return result;
}

/** Mount points of v1 hierarchies by controller, from /proc/self/mountinfo. */
export function parseCgroupMounts(text: string): Map<string, string> {
  const result = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const [fsType, , superOptions] = right.split(' ');
    if (fsType !== 'cgroup' || !superOptions) continue;
    const mountPoint = left.split(' ')[4];
    if (!mountPoint) continue;
    for (const option of superOptions.split(',')) {
      if (CONTROLLERS.includes(option as Controller)) result.set(option, mountPoint);
    }
  }
  return result;
}

export class RunCgroup {
  private constructor(readonly dirs: Record<Controller, string>) {}

  /** Creates the groups and sets the limits; on failure removes what it made. */
  static async create(parents: Record<Controller, string>, name: string, limits: CgroupLimits): Promise<RunCgroup> {
    const dirs = {} as Record<Controller, string>;
    for (const controller of CONTROLLERS) dirs[controller] = join(parents[controller], name);
    const group = new RunCgroup(dirs);
    try {
      for (const controller of CONTROLLERS) await mkdir(dirs[controller]);
      await group.setLimits(limits);
    } catch (cause) {
      await group.remove().catch(() => undefined);
      throw new PlatformError('sandbox_cgroup_failed', `setting up cgroup ${name}: ${(cause as Error).message}`, { cause });
    }
    return group;
  }

  /**
   * Sets every limit; also used to raise or lower the limits of a group made ahead of its run (warm-pool.ts).
   *
   * Synchronous on purpose, like report() and members(): a cgroupfs file is
   * kernel state, written or read in microseconds, where each call through
   * fs/promises is a round trip to libuv's pool — two thread wakes, ~0.1–0.3 ms
   * on this machine kind, and a run makes a dozen of them (issue 16's sandbox start).
   */
  async setLimits(limits: CgroupLimits): Promise<void> {
    const memory = String(Math.floor(limits.memoryBytes));
    const memsw = join(this.dirs.memory, 'memory.memsw.limit_in_bytes');
    // memsw ≥ limit must hold at every moment: raising needs memsw first,
    // lowering needs it after limit_in_bytes. It is absent without swap accounting.
    writeIfPresent(memsw, memory);
    writeFileSync(join(this.dirs.memory, 'memory.limit_in_bytes'), memory);
    writeIfPresent(memsw, memory);
    writeFileSync(join(this.dirs.pids, 'pids.max'), String(Math.max(1, Math.floor(limits.pids))));
    writeFileSync(join(this.dirs.cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
    writeFileSync(join(this.dirs.cpu, 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(limits.cpus * CPU_PERIOD_US))));
  }

  /** The files the launcher writes its own pid into, one per hierarchy. */
  get procsFiles(): string[] {
    return CONTROLLERS.map((controller) => join(this.dirs[controller], 'cgroup.procs'));
  }

  /**
   * Lets an unprivileged launcher move itself in: v1 allows writing one's own
   * pid to cgroup.procs given write permission on that file. Only the procs
   * files change owner, never a limit; the sandbox cannot see /sys/fs/cgroup.
   */
  async allowEntry(uid: number, gid: number): Promise<void> {
    for (const file of this.procsFiles) await chown(file, uid, gid);
  }

  report(): Promise<CgroupReport> {
    const read = (controller: Controller, file: string): string => readOrEmpty(join(this.dirs[controller], file));
    const [oomControl, failcnt, peak, pidsEvents] = [read('memory', 'memory.oom_control'), read('memory', 'memory.failcnt'), read('memory', 'memory.max_usage_in_bytes'), read('pids', 'pids.events')];
    return Promise.resolve({
      oomKills: keyedNumber(oomControl, 'oom_kill'),
      memoryFailcnt: Number.parseInt(failcnt, 10) || 0,
      pidsRefused: keyedNumber(pidsEvents, 'max'),
      memoryPeakBytes: Number.parseInt(peak, 10) || 0,
    });
  }

  /** Pids currently in any of the groups. */
  members(): Promise<number[]> {
    const pids = new Set<number>();
    for (const file of this.procsFiles) for (const line of readOrEmpty(file).split('\n')) if (line) pids.add(Number(line));
    return Promise.resolve([...pids]);
  }

  /**
   * SIGKILLs every member until the groups are empty. A fork bomb may add
   * members between reading and killing; pids.max bounds it, so rounds
   * converge quickly. Returns how many processes it killed.
   */
  async killAll(timeoutMs = 3000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let killed = 0;
    for (let round = 0; Date.now() < deadline; round++) {
      const members = await this.members();
      if (members.length === 0) return killed;
      const ours = `/${basename(this.dirs.pids)}`;
      for (const pid of members) if (killIfStill(pid, (proc) => proc.cgroup.split('\n').some((line) => line.endsWith(ours)))) killed++;
      await sleep(killPollMs(round));
    }
    throw new PlatformError('sandbox_unkillable', `processes survive in ${this.dirs.pids} after ${timeoutMs} ms`);
  }

  /** rmdir each group; retried while just-killed tasks are still exiting. */
  async remove(): Promise<void> {
    for (const controller of CONTROLLERS) {
      const dir = this.dirs[controller];
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir);
          break;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || attempt >= 100) throw new PlatformError('sandbox_cgroup_failed', `cannot remove ${dir}: ${code}`);
          await sleep(10);
        }
      }
    }
  }
}

/**
 * The wait before the next kill round. When a sandbox ends, the sweep
 * usually still finds bwrap's init in its groups for a millisecond or two:
 * bwrap exits once init has passed it the exit status, while init is still
 * ending (the sandbox's namespaces go with it). A flat 5 ms wait cost up to a
 * third of a warm sandbox start (issue 16). Later rounds back off to
 * KILL_POLL_MAX_MS, so a run that is slow to die is not read in a busy loop.
 */
const KILL_POLL_FIRST_MS = 1;
const KILL_POLL_MAX_MS = 5;

export function killPollMs(round: number): number {
  return Math.min(KILL_POLL_MAX_MS, KILL_POLL_FIRST_MS * 2 ** Math.max(0, round - 1));
}

/** A cgroupfs file's text; '' when it cannot be read (the group is gone, or the kernel lacks the file). */
function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** memory.memsw.* exists only with swap accounting. */
function writeIfPresent(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch {
    // Absent without swap accounting; a real failure shows in the memory limit's own write.
  }
}

function keyedNumber(text: string, key: string): number {
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return match?.[1] ? Number(match[1]) : 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
