import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import { PlatformError } from '../errors.ts';
import { RunCgroup, runCgroupName } from './cgroups.ts';
import type { CgroupReport } from './cgroups.ts';
import type { SandboxHost } from './host.ts';
import { handOver } from './ownership.ts';
import { killUid } from './procs.ts';
import { DEFAULT_LIMITS } from './sandbox.ts';
import type { LimitName, SandboxLimits, SandboxResult, SandboxRunOptions } from './sandbox.ts';
import { LIMIT_GRACE_MS, supervise, superviseWarm } from './supervise.ts';
import type { LaunchSpec, Supervised } from './supervise.ts';
import type { UidLease } from './uids.ts';
import { slotFits } from './warm-pool.ts';
import type { WarmPool, WarmSlot } from './warm-pool.ts';
import { createWorkDir, isCapped, looksFull, privateVolumePrefix, StagedVolume } from './volume.ts';

/**
 * The run life cycle shared by bubblewrap and gVisor: lease a uid, make the
 * work dir capped and owned by it, create the cgroups (or fall back to
 * rlimits), launch, watch, sweep, and name the limit that ended the run.
 * A backend only says how to launch its sandbox program.
 */
export interface RunContext {
  readonly id: string;
  readonly options: SandboxRunOptions;
  readonly limits: SandboxLimits;
  readonly lease: UidLease;
  /** Host directory bound at /build: the workDir itself or its staged copy. */
  readonly volume: string;
}

export interface LaunchPlan {
  argv: string[];
  /** Run the sandbox program as the run's uid (bwrap) rather than root (runsc). */
  asRunUid: boolean;
  extraFds: Array<number | 'collect'>;
  /** See LaunchSpec.outputRelay; fresh launches only (a backend using it has no warmPlan). */
  outputRelay?: boolean;
  /** The host-side pids.max for the run's `pids` limit (the sandbox program's own tasks included). */
  hostPids(limit: number): number;
  /**
   * An error message when the sandbox program itself failed (a platform
   * failure, not the user's). Not asked when a limit or a cancel explains the end.
   */
  verify(result: Supervised): Promise<string | undefined>;
  /** Exit status of the sandboxed command, when the program reports it. */
  exitCode?(result: Supervised): number | null;
  /** Releases what plan() opened; runs after every process of the run is dead. */
  cleanup(): Promise<void>;
}

export interface Backend {
  plan(context: RunContext): Promise<LaunchPlan>;
  /**
   * The plan for a prepared slot's waiting sandbox (warm-pool.ts): how to
   * judge the run as plan() does, and the request its waiter reads (cwd,
   * environment, command). Backends without it always start fresh.
   */
  warmPlan?(context: RunContext): Promise<WarmLaunchPlan>;
}

export type WarmLaunchPlan = LaunchPlan & { request: string };

type Launch = (context: RunContext, notes: string[]) => Promise<SandboxResult>;

export async function runJob(host: SandboxHost, backend: Backend, options: SandboxRunOptions, pool?: WarmPool): Promise<SandboxResult> {
  await validate(options);
  await host.prepare();
  // Prepared slots hold the build profile's seccomp program: a fetch step (egress) always starts fresh.
  const slot = backend.warmPlan && !options.egress ? pool?.take(options) : undefined;
  try {
    if (slot) return await runLeased(host, options, slot.lease, (context, notes) => launchInSlot(host, backend, pool as WarmPool, slot, context, notes));
    const lease = await host.uids.acquire();
    try {
      // A reclaimed uid's previous holder died; its processes must not meet ours.
      if (lease.reclaimed) await killUid(lease.uid);
      return await runLeased(host, options, lease, (context, notes) => launch(host, backend, context, notes));
    } finally {
      await lease.release();
    }
  } finally {
    // Also when the run ended before reaching the launcher (a work dir too large for the disk limit).
    // Nothing of the run is alive any more (swept): removing the emptied
    // groups and dirs and releasing the uid need not delay its result.
    if (slot) void pool?.retire(slot);
    // Prepared after the run (and after the retirement), so that preparing never competes with the run it would serve.
    void pool?.fill();
  }
}

async function runLeased(host: SandboxHost, options: SandboxRunOptions, lease: UidLease, start: Launch): Promise<SandboxResult> {
  const notes: string[] = [];
  const limits = options.limits;
  let staged: StagedVolume | undefined;
  if (!isCapped(options.workDir, limits.diskBytes)) {
    try {
      staged = await StagedVolume.create(options.workDir, host.volumesDir, limits.diskBytes);
    } catch (error) {
      if (error instanceof PlatformError && error.code === 'sandbox_workdir_too_large') {
        return { exitCode: null, signal: null, limitHit: 'disk', cancelled: false, durationMs: 0, notes: [`the work dir does not fit the disk limit of ${bytes(limits.diskBytes)}`] };
      }
      throw error;
    }
    notes.push(`work dir is not on a capped volume: staged through a ${bytes(limits.diskBytes)} tmpfs (use createWorkDir to avoid the copies)`);
  }
  const volume = staged?.path ?? options.workDir;
  let succeeded = false;
  try {
    await handOver(volume, lease.uid, lease.gid);
    const context: RunContext = { id: randomBytes(6).toString('hex'), options, limits, lease, volume };
    const result = await start(context, notes);
    succeeded = true;
    return result;
  } finally {
    // Copy back only what a finished run produced; a platform failure leaves the origin as it was.
    if (staged) await (succeeded ? staged.finish() : staged.discard());
  }
}

/**
 * `slotGroups`: the groups of a prepared slot whose waiting sandbox did not
 * fit the run and was killed: they get this run's limits instead of new
 * groups being made (they were made for this slot and held nothing else).
 */
async function launch(host: SandboxHost, backend: Backend, context: RunContext, notes: string[], slotGroups?: RunCgroup): Promise<SandboxResult> {
  const { limits, lease } = context;
  const plan = await backend.plan(context);
  let cgroup: RunCgroup | undefined;
  try {
    const probe = await host.cgroups();
    const spec: LaunchSpec = {
      argv: plan.argv,
      uid: plan.asRunUid ? lease.uid : undefined,
      gid: plan.asRunUid ? lease.gid : undefined,
      cgroupProcs: [],
      ulimits: [['-c', 0]],
      extraFds: plan.extraFds,
      outputRelay: plan.outputRelay,
    };
    if (slotGroups) {
      cgroup = slotGroups;
      await cgroup.setLimits({ ...limits, pids: plan.hostPids(limits.pids) });
      spec.cgroupProcs = cgroup.procsFiles;
    } else if (probe.ok) {
      cgroup = await RunCgroup.create(probe.parents, runCgroupName(context.id), { ...limits, pids: plan.hostPids(limits.pids) });
      if (plan.asRunUid) await cgroup.allowEntry(lease.uid, lease.gid);
      spec.cgroupProcs = cgroup.procsFiles;
    } else {
      spec.ulimits.push(...fallbackRlimits(limits, plan, notes, probe.reason));
    }
    const active = cgroup;
    const supervised = await supervise(spec, {
      wallMs: limits.wallMs,
      logBytes: limits.logBytes,
      signal: context.options.signal,
      onOutput: context.options.onOutput,
      sweep: () => sweep(active, lease.uid),
      limitReached: active ? async () => refusedSomething(await active.report()) : undefined,
    });
    return await conclude(context, plan, supervised, cgroup, notes);
  } finally {
    await sweep(cgroup, lease.uid);
    await cgroup?.remove();
    await plan.cleanup();
  }
}

function refusedSomething(report: CgroupReport): boolean {
  return report.oomKills > 0 || report.pidsRefused > 0;
}

/**
 * A run in a prepared slot: in its waiting sandbox when the sandbox fits the
 * run (warm-pool.ts), otherwise fresh in the slot's groups as its uid.
 */
async function launchInSlot(host: SandboxHost, backend: Backend, pool: WarmPool, slot: WarmSlot, context: RunContext, notes: string[]): Promise<SandboxResult> {
  if (slot.launcher.exit === undefined && slotFits(slot, context.options)) {
    pool.runs.inWaitingSandbox++;
    return launchWarm(backend, slot, context, notes);
  }
  pool.runs.freshInSlot++;
  await slot.cgroup.killAll();
  return launch(host, backend, context, notes, slot.cgroup);
}

/**
 * The run in the slot's waiting sandbox: the groups get this run's limits,
 * the work dir is mounted where the sandbox's /build comes from, the waiter
 * gets the request, and from there everything is as in launch(): same
 * watch, same verdict, same sweep and removal of the groups.
 */
async function launchWarm(backend: Backend, slot: WarmSlot, context: RunContext, notes: string[]): Promise<SandboxResult> {
  const { limits } = context;
  const plan = await (backend.warmPlan as NonNullable<Backend['warmPlan']>)(context);
  try {
    // The mount first: the helper makes it while the limits are written here.
    await Promise.all([slot.mounter.bind(context.volume, slot.stageDir, slot.buildDir), slot.cgroup.setLimits({ ...limits, pids: plan.hostPids(limits.pids) })]);
    const supervised = await superviseWarm(slot.launcher, plan.request, {
      wallMs: limits.wallMs,
      logBytes: limits.logBytes,
      signal: context.options.signal,
      onOutput: context.options.onOutput,
      sweep: () => sweep(slot.cgroup, slot.lease.uid),
      limitReached: async () => refusedSomething(await slot.cgroup.report()),
    });
    return await conclude(context, plan, supervised, slot.cgroup, notes);
  } finally {
    try {
      // The emptied groups are removed when the slot is retired (warm-pool.ts).
      await sweep(slot.cgroup, slot.lease.uid);
    } finally {
      // Before the caller finishes a staged volume: its tmpfs must not stay bound here.
      await slot.mounter.release(slot.buildDir);
      await plan.cleanup();
    }
  }
}

async function conclude(context: RunContext, plan: LaunchPlan, supervised: Supervised, cgroup: RunCgroup | undefined, notes: string[]): Promise<SandboxResult> {
  if (!supervised.launched && supervised.stopped === undefined) {
    throw new PlatformError('sandbox_start_failed', `the sandbox launcher failed: ${supervised.tail.trim().slice(-1500) || 'no output'}`);
  }
  if (supervised.consumerError !== undefined) {
    throw new PlatformError('sandbox_output_failed', `the output consumer failed: ${String(supervised.consumerError)}`, { cause: supervised.consumerError });
  }
  const report = await cgroup?.report();
  const explained = supervised.stopped !== undefined || (report !== undefined && refusedSomething(report));
  const failure = explained ? undefined : await plan.verify(supervised);
  if (failure) throw new PlatformError('sandbox_start_failed', `${failure}: ${supervised.tail.trim().slice(-1500)}`);
  return await classify(context, plan, supervised, report, notes);
}

/**
 * Kills what is left of the run. With cgroups the groups are complete: every
 * process of the run starts inside them and cannot leave (the sandbox never
 * sees /sys/fs/cgroup). Without them, the run's exclusive uid is the handle
 * (a /proc scan, ~10 ms on a busy host, so only where it is needed).
 */
async function sweep(cgroup: RunCgroup | undefined, uid: number): Promise<void> {
  if (cgroup) await cgroup.killAll();
  else await killUid(uid);
}

function fallbackRlimits(limits: SandboxLimits, plan: LaunchPlan, notes: string[], reason: string): Array<[string, number]> {
  if (!plan.asRunUid) {
    // runsc runs as root (RLIMIT_NPROC does not bind) and the sentry's memory is a shared mapping (RLIMIT_DATA does not count it).
    notes.push(`cgroups unavailable (${reason}): this sandbox runs without memory, process and CPU limits; wall, log and disk limits still apply`);
    return [];
  }
  const nproc = plan.hostPids(limits.pids);
  notes.push(
    `cgroups unavailable: falling back to rlimits (${reason}): RLIMIT_NPROC=${nproc} for the run's uid, ` +
      `RLIMIT_DATA=${bytes(limits.memoryBytes)} per process, no CPU share limit, and memory/pids limit hits cannot be told apart from other failures`,
  );
  // Only RLIMIT_DATA: RLIMIT_AS breaks V8 (SANDBOX.md).
  return [['-u', nproc], ['-d', Math.ceil(limits.memoryBytes / 1024)]];
}

async function classify(context: RunContext, plan: LaunchPlan, run: Supervised, report: CgroupReport | undefined, notes: string[]): Promise<SandboxResult> {
  const exitCode = run.signal ? null : plan.exitCode ? plan.exitCode(run) : run.exitCode;
  const cancelled = run.stopped === 'cancel';
  const failed = run.stopped !== undefined || run.signal !== null || exitCode !== 0;
  // A limit that refused work ends the run as that limit even when the program then exited 0: a fork bomb
  // whose processes die out on their own before the grace kill is the same attack as one that lingers.
  const refused = report !== undefined && refusedSomething(report);
  const limitHit = cancelled || !(failed || refused) ? undefined : await limitOf(context, run, report);
  if (limitHit) notes.push(describeLimit(limitHit, context.limits, report));
  if (run.stopped === 'limit') notes.push(`the run did not end by itself within ${LIMIT_GRACE_MS} ms of a limit refusing it work (something still held it open): it was killed`);
  return { exitCode, signal: run.signal, limitHit, cancelled, durationMs: run.durationMs, notes };
}

/**
 * Which limit ended a failed run. Kernel-enforced limits come first: a fork
 * bomb or an OOM is the root cause even when the wall clock or the log cap
 * fired afterwards.
 */
async function limitOf(context: RunContext, run: Supervised, report: CgroupReport | undefined): Promise<LimitName | undefined> {
  if (report && report.oomKills > 0) return 'memory';
  if (report && report.pidsRefused > 0) return 'pids';
  if (run.sawNoSpace || (await looksFull(context.volume))) return 'disk';
  // 'limit' always comes with a kernel count above; the counters were read after the sweep.
  return run.stopped === 'cancel' || run.stopped === 'limit' ? undefined : run.stopped;
}

function describeLimit(limit: LimitName, limits: SandboxLimits, report: CgroupReport | undefined): string {
  switch (limit) {
    case 'memory':
      return `memory limit of ${bytes(limits.memoryBytes)} reached: the kernel killed ${report?.oomKills ?? 0} process(es)`;
    case 'pids':
      return `process limit of ${limits.pids} reached: ${report?.pidsRefused ?? 0} fork(s) refused`;
    case 'disk':
      return `disk limit of ${bytes(limits.diskBytes)} reached (no space left in the work dir or /tmp)`;
    case 'log':
      return `log limit of ${bytes(limits.logBytes)} reached: the run was killed`;
    case 'wall':
      return `wall-clock limit of ${limits.wallMs} ms reached: the run was killed`;
  }
}

export function bytes(n: number): string {
  if (n >= 1024 ** 3 && n % 1024 ** 3 === 0) return `${n / 1024 ** 3} GiB`;
  if (n >= 1024 ** 2) return `${Math.round(n / 1024 ** 2)} MiB`;
  return `${n} bytes`;
}

async function validate(options: SandboxRunOptions): Promise<void> {
  const problems: string[] = [];
  if (options.command.length === 0 || options.command.some((arg) => arg.includes('\0'))) problems.push('command must be non-empty, without NUL bytes');
  if (!isAbsolute(options.cwd)) problems.push('cwd must be an absolute path inside the sandbox');
  for (const [key, value] of Object.entries(options.env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || value.includes('\0')) problems.push(`bad environment variable ${JSON.stringify(key)}`);
  }
  for (const [name, value] of Object.entries(options.limits)) {
    if (!Number.isFinite(value) || value <= 0) problems.push(`limit ${name} must be a positive number`);
  }
  if (options.egress !== undefined && !isAbsolute(options.egress.socket)) problems.push('egress.socket must be an absolute host path');
  for (const mount of options.mounts ?? []) {
    const target = normalize(mount.sandbox);
    if (!isAbsolute(mount.host) || !isAbsolute(target) || target === '/' || /^\/(proc|dev)(\/|$)/.test(target)) {
      problems.push(`bad mount ${mount.host} -> ${mount.sandbox}`);
    }
  }
  if (!isAbsolute(options.workDir) || !isRealDirectory(options.workDir)) problems.push(`workDir ${options.workDir} must be an existing directory (not a symlink)`);
  if (problems.length > 0) throw new PlatformError('sandbox_bad_options', `invalid sandbox run: ${problems.join('; ')}`);
}

/** Synchronous: one metadata call on every run, cheaper than a thread-pool round trip (two thread wakes). */
function isRealDirectory(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * One real run of `/bin/true` proves what a sandbox needs from the host
 * (user namespaces for the pool uids, mounts, cgroups) before it takes jobs.
 */
export async function selfTest(host: SandboxHost, run: (options: SandboxRunOptions) => Promise<SandboxResult>, label: string, wallMs: number): Promise<void> {
  await host.prepare();
  const workDir = await createWorkDir(host.volumesDir, 1024 ** 2, privateVolumePrefix());
  try {
    let output = '';
    const limits: SandboxLimits = { ...DEFAULT_LIMITS, wallMs };
    const result = await run({ command: ['/bin/true'], env: {}, cwd: '/build', workDir: workDir.path, limits, onOutput: (chunk) => (output += chunk.toString()) });
    if (result.exitCode !== 0) throw new PlatformError('sandbox_unavailable', `${label} self-test failed (exit ${result.exitCode}): ${output.slice(0, 1000)}`);
  } finally {
    await workDir.dispose();
  }
}
