import { lstat, open, readlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { runHost } from './exec.ts';
import { firstClosedDirectory } from './reach.ts';
import { ETC_FROM_HOST, ROOT_ENTRIES, SANDBOX_HOME, SandboxHost, sandboxEnv } from './host.ts';
import type { SandboxHostOptions } from './host.ts';
import { runJob, selfTest } from './job.ts';
import type { Backend, LaunchPlan, RunContext, WarmLaunchPlan } from './job.ts';
import { DEFAULT_LIMITS, EGRESS_SOCKET } from './sandbox.ts';
import type { Sandbox, SandboxLimits, SandboxResult, SandboxRunOptions } from './sandbox.ts';
import { compileNative } from './native.ts';
import { SECCOMP_PACKAGES, seccompProgram } from './seccomp.ts';
import { LauncherHost } from './launcher-host.ts';
import { SlotMounter } from './slot-mounter.ts';
import type { Supervised } from './supervise.ts';
import { WarmPool } from './warm-pool.ts';
import type { ArmedSandbox } from './warm-pool.ts';

/**
 * The default sandbox: bubblewrap, launched as a per-run unprivileged host
 * uid (uids.ts), with every namespace unshared (no network: only a private
 * loopback), a read-only view of /usr, a seccomp deny-list (seccomp.ts),
 * cgroup v1 limits (cgroups.ts) and a size-capped work dir (volume.ts).
 *
 * Ownership: before each run the work dir is chowned (recursively, never
 * following symlinks) to the run's uid, and it stays owned by that uid
 * afterwards. The worker runs as root and reads it regardless; the next run
 * chowns it to its own uid again. The work dir tmpfs is nosuid,nodev, so
 * nothing a build leaves behind can raise privileges on the host.
 */
export interface BubblewrapOptions extends SandboxHostOptions {
  /** Default /usr/bin/bwrap. */
  bwrapPath?: string;
  /**
   * Prepared sandboxes kept ready (warm-pool.ts; needs cgroups). 0, the
   * default here, starts every run fresh; the services use KILN_SANDBOX_WARM_POOL.
   */
  warmPool?: number;
}

const HOME_TMPFS_MAX = 256 * 1024 ** 2;
const SHM_TMPFS_MAX = 64 * 1024 ** 2;

/** Child fds, in the order of LaunchPlan.extraFds (supervise.ts starts them at 4). */
const SECCOMP_FD = 4;
const STATUS_FD = 5;
const WORK_FD = 6;
/** A prepared sandbox has no work dir fd: the waiter's binary is passed there instead (warm-pool.ts). */
const WAITER_FD = 6;
/** A fresh run's waiter binary, and the pipe it marks once bwrap's set-up is over (sandbox-waiter.c). */
const FRESH_WAITER_FD = 7;
const STARTED_FD = 8;
/** Position of STARTED_FD's pipe in a fresh plan's extraFds (its collected output). */
const STARTED_INDEX = STARTED_FD - SECCOMP_FD;

export type RootEntry = { name: string; symlink: string } | { name: string; dir: true };

export class BubblewrapSandbox implements Sandbox {
  readonly name = 'bubblewrap' as const;
  private readonly host: SandboxHost;
  private readonly bwrap: string;
  private layout?: Promise<RootEntry[]>;
  private readonly pool?: WarmPool;
  private readonly mounter?: SlotMounter;
  private readonly launchers?: LauncherHost;

  constructor(options: BubblewrapOptions = {}) {
    this.host = new SandboxHost(options);
    this.bwrap = options.bwrapPath ?? '/usr/bin/bwrap';
    const size = options.warmPool ?? 0;
    if (size > 0) {
      this.mounter = new SlotMounter(this.host.cacheDir);
      this.launchers = new LauncherHost();
      this.pool = new WarmPool({
        host: this.host,
        size,
        seccompProgram: () => this.seccomp(),
        waiterProgram: () => waiterProgram(this.host.cacheDir),
        armedArgv: (sandbox) => this.armedArgv(sandbox),
        mounter: this.mounter,
        launchers: this.launchers,
        initialShape: { diskBytes: DEFAULT_LIMITS.diskBytes, mounts: [] },
      });
    }
  }

  async check(): Promise<void> {
    const version = await runHost(this.bwrap, ['--version']).catch(() => undefined);
    if (!version || version.code !== 0) throw new PlatformError('sandbox_unavailable', `${this.bwrap} not found: install the Debian package bubblewrap`);
    await seccompProgram(this.host.cacheDir);
    await selfTest(this.host, (options) => this.run(options), 'bubblewrap', 10_000);
  }

  run(options: SandboxRunOptions): Promise<SandboxResult> {
    return runJob(this.host, this.backend, options, this.pool);
  }

  /** Resolves once the warm pool holds its prepared sandboxes (at once without a pool). */
  async warmUp(): Promise<void> {
    await this.host.prepare();
    await this.pool?.fill();
  }

  /**
   * How many prepared sandboxes are ready, why the last preparation failed
   * (if it did), and how the runs that took a slot ran (warm-pool.ts).
   */
  get warmState(): { ready: number; lastError?: unknown; inWaitingSandbox: number; freshInSlot: number } {
    return { ready: this.pool?.ready ?? 0, lastError: this.pool?.lastError, inWaitingSandbox: this.pool?.runs.inWaitingSandbox ?? 0, freshInSlot: this.pool?.runs.freshInSlot ?? 0 };
  }

  /** Destroys the prepared sandboxes; runs in progress finish normally. */
  async close(): Promise<void> {
    await this.pool?.close();
    this.mounter?.close();
    this.launchers?.close();
  }

  private readonly backend: Backend = { plan: (context) => this.plan(context), warmPlan: (context) => this.warmPlan(context) };

  private seccomp(profile: 'build' | 'fetch' = 'build'): Promise<string> {
    return seccompProgram(this.host.cacheDir, profile).catch((cause: unknown) => {
      throw new PlatformError('sandbox_unavailable', `no seccomp filter (install ${SECCOMP_PACKAGES}): ${(cause as Error).message}`, { cause });
    });
  }

  /**
   * A prepared slot's sandbox (warm-pool.ts): bwrap with the run's flags for
   * the slot's shape, /build bound from the slot's shared dir, and the
   * waiter as its command (cwd /; the waiter sets cwd and environment).
   */
  private async armedArgv(sandbox: ArmedSandbox): Promise<string[]> {
    const { lease, shape, buildDir } = sandbox;
    const [layout, etcDir] = await Promise.all([this.rootLayout(), this.host.etcDir(lease.uid, lease.gid)]);
    const args = bwrapArgs({ layout, etcDir, options: { env: {}, cwd: '/', mounts: [...shape.mounts] }, limits: { diskBytes: shape.diskBytes }, buildDir });
    // The waiter (sandbox-waiter.c) is not inside the sandbox: bwrap execs it from its descriptor.
    return [this.bwrap, ...args, '--', `/proc/self/fd/${WAITER_FD}`, String(WAITER_FD)];
  }

  /** The run in a slot's waiting sandbox: judged like a fresh one; the waiter gets cwd, environment and command. */
  private async warmPlan(context: RunContext): Promise<WarmLaunchPlan> {
    const [layout, etcDir] = await Promise.all([this.rootLayout(), this.host.etcDir(context.lease.uid, context.lease.gid)]);
    return { ...this.launchPlan(context, layout, etcDir, [], async () => undefined), request: waiterRequest(context.options) };
  }

  private async plan(context: RunContext): Promise<LaunchPlan> {
    const { lease } = context;
    const [program, waiter, layout, etcDir] = await Promise.all([
      this.seccomp(context.options.egress ? 'fetch' : 'build'),
      waiterProgram(this.host.cacheDir),
      this.rootLayout(),
      this.host.etcDir(lease.uid, lease.gid),
    ]);
    const blocked = await firstClosedDirectory(dirname(context.volume));
    if (blocked) {
      throw new PlatformError('sandbox_start_failed', `the sandbox's user cannot reach the work dir ${context.volume}: ${blocked} lets no other user search it (give it o+x, or choose a work root outside it)`);
    }
    const handles: FileHandle[] = [];
    const cleanup = async (): Promise<void> => {
      for (const handle of handles) await handle.close().catch(() => undefined);
    };
    try {
      handles.push(await open(program, 'r'));
      // Passed as an fd (--bind-fd), but bwrap resolves the descriptor's path again before binding it: hence the check above.
      handles.push(await open(context.volume, 'r'));
      handles.push(await open(waiter, 'r'));
    } catch (error) {
      await cleanup();
      throw error;
    }
    const [seccomp, work, marker] = handles as [FileHandle, FileHandle, FileHandle];
    // bwrap execs the waiter (from its descriptor: it is not in the sandbox), which marks STARTED_FD, changes to the cwd and execs the command.
    const command = [`/proc/self/fd/${FRESH_WAITER_FD}`, String(FRESH_WAITER_FD), '--started', String(STARTED_FD), context.options.cwd, '--', ...context.options.command];
    const plan = this.launchPlan({ ...context, options: { ...context.options, cwd: '/' } }, layout, etcDir, [seccomp.fd, 'collect', work.fd, marker.fd, 'collect'], cleanup, command);
    return { ...plan, verify: async (result) => (setUpCompleted(result) ? undefined : 'bubblewrap could not set up the sandbox') };
  }

  private launchPlan(context: RunContext, layout: RootEntry[], etcDir: string, extraFds: LaunchPlan['extraFds'], cleanup: () => Promise<void>, command = context.options.command): LaunchPlan {
    return {
      argv: [this.bwrap, ...bwrapArgs({ layout, etcDir, options: context.options, limits: context.limits }), '--', ...command],
      asRunUid: true,
      extraFds,
      // The launcher becomes bwrap, which forks the namespace's init, which forks the command.
      hostPids: (limit) => limit + 2,
      verify: async (result) => (startedCommand(result) ? undefined : 'bubblewrap could not set up the sandbox'),
      exitCode: (result) => reportedExitCode(result) ?? result.exitCode,
      cleanup,
    };
  }

  private rootLayout(): Promise<RootEntry[]> {
    this.layout ??= probeRootLayout();
    return this.layout;
  }
}

async function probeRootLayout(): Promise<RootEntry[]> {
  const entries: RootEntry[] = [];
  for (const name of ROOT_ENTRIES) {
    const stats = await lstat(join('/', name)).catch(() => undefined);
    if (stats?.isSymbolicLink()) entries.push({ name, symlink: await readlink(join('/', name)) });
    else if (stats?.isDirectory()) entries.push({ name, dir: true });
  }
  return entries;
}

export interface BwrapArgsInput {
  layout: RootEntry[];
  etcDir: string;
  options: Pick<SandboxRunOptions, 'env' | 'cwd' | 'mounts' | 'egress'>;
  limits: Pick<SandboxLimits, 'diskBytes'>;
  /** A prepared slot's shared dir to bind at /build (default: the work dir passed as WORK_FD). */
  buildDir?: string;
}

/** The bwrap options for one run, up to (not including) `--` and the command. */
export function bwrapArgs(input: BwrapArgsInput): string[] {
  const { options, limits } = input;
  const args = [
    '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session',
    '--cap-drop', 'ALL', '--hostname', 'kiln',
    '--seccomp', String(SECCOMP_FD), '--json-status-fd', String(STATUS_FD),
    '--ro-bind', '/usr', '/usr',
  ];
  for (const entry of input.layout) {
    if ('symlink' in entry) args.push('--symlink', entry.symlink, `/${entry.name}`);
    else args.push('--ro-bind', `/${entry.name}`, `/${entry.name}`);
  }
  for (const name of ETC_FROM_HOST) args.push('--ro-bind-try', `/etc/${name}`, `/etc/${name}`);
  for (const name of ['passwd', 'group', 'hosts']) args.push('--ro-bind', join(input.etcDir, name), `/etc/${name}`);
  // bwrap's /dev is an unlimited writable tmpfs: give /dev/shm (POSIX shared
  // memory) a capped tmpfs of its own and make the rest of /dev read-only.
  args.push('--proc', '/proc', '--dev', '/dev', '--size', String(Math.min(limits.diskBytes, SHM_TMPFS_MAX)), '--tmpfs', '/dev/shm', '--remount-ro', '/dev');
  // Scratch space dies with the namespace; its pages count against the memory cgroup.
  args.push('--size', String(limits.diskBytes), '--tmpfs', '/tmp', '--symlink', '../tmp', '/var/tmp');
  args.push('--size', String(Math.min(limits.diskBytes, HOME_TMPFS_MAX)), '--tmpfs', SANDBOX_HOME);
  if (input.buildDir) args.push('--bind', input.buildDir, '/build');
  else args.push('--bind-fd', String(WORK_FD), '/build');
  for (const mount of options.mounts ?? []) args.push(mount.writable ? '--bind' : '--ro-bind', mount.host, mount.sandbox);
  if (options.egress) args.push('--bind', options.egress.socket, EGRESS_SOCKET);
  args.push('--remount-ro', '/', '--chdir', options.cwd, '--clearenv');
  for (const [key, value] of Object.entries(sandboxEnv(options.env))) args.push('--setenv', key, value);
  return args;
}

/** The command of a prepared sandbox (sandbox-waiter.c), compiled once like the seccomp generator. */
function waiterProgram(cacheDir: string): Promise<string> {
  return compileNative({ source: new URL('./sandbox-waiter.c', import.meta.url), name: 'kiln-sandbox-waiter', flags: [], needs: 'gcc (or clang)', cacheDir });
}

/** The waiter's request: cwd, the number of variables, NAME=VALUE each, the command; NUL-separated. */
export function waiterRequest(options: Pick<SandboxRunOptions, 'cwd' | 'env' | 'command'>): string {
  const env = Object.entries(sandboxEnv(options.env)).map(([key, value]) => `${key}=${value}`);
  return [options.cwd, String(env.length), ...env, ...options.command].map((field) => `${field}\0`).join('');
}

/**
 * bwrap writes `{ "child-pid": N, ... }` to the status fd once it has cloned the sandbox's first process: a
 * failure before that (namespaces, uid map) is caught here; one in the mount set-up after it is not. A
 * prepared sandbox's waiter (warm-pool.ts) is running, so its set-up is over; a fresh run has the mark.
 */
function startedCommand(result: Supervised): boolean {
  return /"child-pid"\s*:\s*\d+/.test(result.collected.get(1) ?? '');
}

/** A fresh run: the waiter marked STARTED_FD, which it can only do once bwrap's mounts are all in place. */
function setUpCompleted(result: Supervised): boolean {
  return startedCommand(result) && result.collected.get(STARTED_INDEX) === 'L';
}

function reportedExitCode(result: Supervised): number | undefined {
  const match = /"exit-code"\s*:\s*(\d+)/.exec(result.collected.get(1) ?? '');
  return match?.[1] ? Number(match[1]) : undefined;
}
