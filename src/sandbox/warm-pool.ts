import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { mkdir, open, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { RunCgroup, runCgroupName } from './cgroups.ts';
import type { Controller } from './cgroups.ts';
import type { SandboxHost } from './host.ts';
import type { LauncherHost } from './launcher-host.ts';
import { killUid } from './procs.ts';
import type { Mount, SandboxRunOptions } from './sandbox.ts';
import type { SlotMounter } from './slot-mounter.ts';
import { startWarmLauncher } from './supervise.ts';
import type { WarmLauncher, WarmLaunchSpec } from './supervise.ts';
import type { UidLease } from './uids.ts';
import { privateVolumePrefix } from './volume.ts';

/**
 * Prepared sandboxes (decisions 0018, 0034). A slot is a sandbox that is
 * already running, waiting for its command: a leased uid, fresh groups, and
 * bwrap itself started inside them with the seccomp program applied, its
 * namespaces, tmpfs and mounts made, and a waiter as its command, blocked
 * reading its stdin. A run writes its limits into the groups, has its work
 * dir mounted on the slot's /build (propagated from the host: see
 * slot-mounter.c), and hands the waiter its cwd, environment and command.
 *
 * What bwrap mounts depends on the run (the disk limit sizes the tmpfs, the
 * extra mounts), so a slot is made for a shape: one of the shapes of the
 * latest runs that took a slot (one per slot). A run of another shape still takes a slot, but kills
 * the waiting sandbox in it and starts its own fresh in the slot's groups
 * as the slot's uid (what a fresh run does, minus the uid lease and the
 * group creation).
 *
 * A slot serves exactly one run and is then destroyed like any run's
 * resources (groups swept and removed, mounts released, uid released); the
 * next slot is made from scratch. Nothing of a run can meet a later run: the
 * later run gets groups created after the earlier one's were removed, its own
 * sandbox, a uid chosen while the earlier one was still leased (so a
 * different one), and a work dir handed over to that uid.
 */
export interface WarmSlot {
  readonly id: string;
  readonly lease: UidLease;
  readonly cgroup: RunCgroup;
  readonly launcher: WarmLauncher;
  readonly shape: SlotShape;
  /** Identity (device:inode) of each mount's host path when the sandbox bound it. */
  readonly sources: readonly string[];
  /** Host dir bound at /build, empty and shared until the run's work dir is mounted on it. */
  readonly buildDir: string;
  /** Private, empty host dir the work dir passes through to be made nosuid,nodev. */
  readonly stageDir: string;
  readonly mounter: SlotMounter;
}

/** What a waiting sandbox was made with, beyond the uid: a run must match it to use the sandbox. */
export interface SlotShape {
  readonly diskBytes: number;
  readonly mounts: readonly Mount[];
}

/** Slots kept ready by default by `createSandbox` (one per usual concurrent build). */
export const DEFAULT_WARM_POOL = 2;

/** Limits of a slot's groups while it waits: enough for bwrap, its init and a bash, nothing more. */
const IDLE_LIMITS = { memoryBytes: 64 * 1024 ** 2, pids: 8, cpus: 0.5 };
/** How long a new sandbox may take to reach its waiter's read before the slot is given up. */
const LAUNCHER_READY_MS = 10_000;
/** After a failed preparation, runs go the fresh way for this long before the pool tries again. */
const RETRY_AFTER_MS = 30_000;

export interface ArmedSandbox {
  lease: UidLease;
  shape: SlotShape;
  buildDir: string;
}

export interface WarmPoolOptions {
  host: SandboxHost;
  /** Slots kept ready. */
  size: number;
  /** Path of the compiled seccomp program each sandbox is started with. */
  seccompProgram: () => Promise<string>;
  /** Path of the waiter binary, handed to the sandbox program as the descriptor after the status pipe. */
  waiterProgram: () => Promise<string>;
  /** The waiting sandbox's argv (the backend's program, its waiter as the command). */
  armedArgv: (sandbox: ArmedSandbox) => Promise<string[]>;
  mounter: SlotMounter;
  /**
   * Starts the launchers in a small helper process (launcher-host.ts,
   * decision 0047) rather than forking this one; without it they are spawned here.
   */
  launchers?: LauncherHost;
  /** Shape of the slots made before any run took one. */
  initialShape: SlotShape;
}

export class WarmPool {
  private readonly idle: WarmSlot[] = [];
  /** Slots being destroyed after their run. */
  private readonly retiring = new Set<Promise<void>>();
  private filling?: Promise<void>;
  private closed = false;
  private failedAt = 0;
  /** The shapes of the latest runs, most recent first, at most one per slot: what new slots are made for. */
  private recent: SlotShape[];
  /** The last preparation failure, for diagnostics (the run itself goes the fresh way). */
  lastError?: unknown;
  /** Runs that took a slot: in its waiting sandbox, or fresh in its groups (another shape). */
  readonly runs = { inWaitingSandbox: 0, freshInSlot: 0 };

  constructor(private readonly options: WarmPoolOptions) {
    this.recent = [options.initialShape];
  }

  /**
   * A ready slot (one made for this run's shape if there is one), or
   * undefined (the caller starts a fresh sandbox). The run's shape becomes
   * the most recent one.
   */
  take(options: Pick<SandboxRunOptions, 'limits' | 'mounts'>): WarmSlot | undefined {
    const shape = shapeOf(options);
    // A build alternates a few shapes (its steps, the optimizer's tools): keep slots for the latest ones.
    this.recent = [shape, ...this.recent.filter((other) => !sameShape(other, shape))].slice(0, Math.max(1, this.options.size));
    for (const slot of this.idle.filter((candidate) => candidate.launcher.exit !== undefined)) {
      this.idle.splice(this.idle.indexOf(slot), 1);
      void this.retire(slot);
    }
    const index = this.idle.findIndex((slot) => sameShape(slot.shape, shape));
    return this.idle.splice(Math.max(0, index), 1)[0];
  }

  /** A recent shape no idle slot has yet, else the most recent one. */
  private nextShape(): SlotShape {
    const missing = this.recent.find((shape) => !this.idle.some((slot) => sameShape(slot.shape, shape)));
    return missing ?? (this.recent[0] as SlotShape);
  }

  /** Prepares slots, one at a time, until `size` are ready; resolves when it is done. */
  fill(): Promise<void> {
    if (this.closed || this.options.size <= 0 || Date.now() - this.failedAt < RETRY_AFTER_MS) return Promise.resolve();
    this.filling ??= this.fillSerially().finally(() => (this.filling = undefined));
    return this.filling;
  }

  /** Destroys a slot after its run; the next fill and close() wait for it. */
  retire(slot: WarmSlot): Promise<void> {
    const done: Promise<void> = discardSlot(slot)
      .catch((error: unknown) => void (this.lastError = error))
      .finally(() => this.retiring.delete(done));
    this.retiring.add(done);
    return done;
  }

  private async fillSerially(): Promise<void> {
    // A retired slot's uid and groups are given back before new ones are taken.
    await Promise.all(this.retiring);
    while (!this.closed && this.idle.length < this.options.size) {
      let slot: WarmSlot | undefined;
      try {
        slot = await prepareSlot(this.options, this.nextShape());
      } catch (error) {
        this.lastError = error;
        this.failedAt = Date.now();
        return;
      }
      if (this.closed) await discardSlot(slot);
      else this.idle.push(slot);
    }
  }

  get ready(): number {
    return this.idle.length;
  }

  /** Destroys every idle slot; a run holding a slot cleans up after itself. */
  async close(): Promise<void> {
    this.closed = true;
    await this.filling;
    await Promise.all(this.retiring);
    await Promise.all(this.idle.splice(0).map(discardSlot));
  }
}

export function shapeOf(options: Pick<SandboxRunOptions, 'limits' | 'mounts'>): SlotShape {
  return { diskBytes: options.limits.diskBytes, mounts: (options.mounts ?? []).map((mount) => ({ ...mount, writable: mount.writable === true })) };
}

function sameShape(a: SlotShape, b: SlotShape): boolean {
  return a.diskBytes === b.diskBytes && JSON.stringify(a.mounts) === JSON.stringify(b.mounts);
}

/**
 * The waiting sandbox serves this run only if it was made for the run's
 * shape and every mounted host path is still the directory it bound (a path
 * replaced since would show the sandbox the old one).
 */
export function slotFits(slot: WarmSlot, options: SandboxRunOptions): boolean {
  if (!sameShape(slot.shape, shapeOf(options))) return false;
  return JSON.stringify(identities(slot.shape)) === JSON.stringify(slot.sources);
}

/** Synchronous: a stat per mount (a handful) on every run that takes a slot, cheaper than a thread-pool round trip each. */
function identities(shape: SlotShape): string[] {
  return shape.mounts.map((mount) => {
    try {
      const stats = statSync(mount.host);
      return `${stats.dev}:${stats.ino}`;
    } catch {
      return 'missing';
    }
  });
}

async function prepareSlot(options: WarmPoolOptions, shape: SlotShape): Promise<WarmSlot> {
  const { host, mounter } = options;
  const probe = await host.cgroups();
  if (!probe.ok) throw new PlatformError('sandbox_warm_unavailable', `no cgroups: ${probe.reason}`);
  const id = randomBytes(6).toString('hex');
  // Named like the other private volumes: a worker killed with -9 leaves them to the next start's orphan sweep.
  const buildDir = join(host.volumesDir, `${privateVolumePrefix()}-slot-${id}`);
  const stageDir = join(host.volumesDir, `${privateVolumePrefix()}-slotstage-${id}`);
  const lease = await host.uids.acquire();
  let cgroup: RunCgroup | undefined;
  let launcher: WarmLauncher | undefined;
  try {
    if (lease.reclaimed) await killUid(lease.uid);
    cgroup = await RunCgroup.create(probe.parents as Record<Controller, string>, runCgroupName(id), IDLE_LIMITS);
    await cgroup.allowEntry(lease.uid, lease.gid);
    await mkdir(buildDir, { mode: 0o755 });
    await mkdir(stageDir, { mode: 0o700 });
    await mounter.share(buildDir);
    const sources = identities(shape);
    const argv = await options.armedArgv({ lease, shape, buildDir });
    const [seccompPath, waiterPath] = await Promise.all([options.seccompProgram(), options.waiterProgram()]);
    const spec = { argv, uid: lease.uid, gid: lease.gid, cgroupProcs: cgroup.procsFiles, ulimits: [['-c', 0]] as Array<[string, number]> };
    launcher = options.launchers ? await options.launchers.launch(spec, [seccompPath, 'collect', waiterPath]) : await launchHere(spec, seccompPath, waiterPath);
    await waitUntilWaiting(launcher);
    return { id, lease, cgroup, launcher, shape, sources, buildDir, stageDir, mounter };
  } catch (error) {
    if (launcher) killGroup(launcher);
    await cgroup?.killAll().catch(() => undefined);
    await cgroup?.remove().catch(() => undefined);
    await releaseDirs(mounter, buildDir, stageDir);
    await lease.release();
    throw error;
  }
}

/** The launcher spawned by this process (no launch helper). */
async function launchHere(spec: Omit<WarmLaunchSpec, 'extraFds'>, seccompPath: string, waiterPath: string): Promise<WarmLauncher> {
  const seccomp = await open(seccompPath, 'r');
  const waiter = await open(waiterPath, 'r').catch(async (error: unknown) => {
    await seccomp.close();
    throw error;
  });
  try {
    return startWarmLauncher({ ...spec, extraFds: [seccomp.fd, 'collect', waiter.fd] });
  } finally {
    // The launcher holds its own copies of the descriptors.
    await Promise.all([seccomp.close(), waiter.close()]);
  }
}

/** The waiter prints W on the status pipe once the sandbox is up and it is reading. */
function waitUntilWaiting(launcher: WarmLauncher): Promise<void> {
  return new Promise((resolve, reject) => {
    const status = launcher.child.stdio[3];
    let seen = '';
    const timer = setTimeout(() => done(new PlatformError('sandbox_warm_failed', 'a prepared sandbox did not start in time')), LAUNCHER_READY_MS);
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('utf8');
      if (seen.includes('W')) done();
    };
    const onExit = (): void => done(new PlatformError('sandbox_warm_failed', 'a prepared sandbox died while starting'));
    function done(error?: Error): void {
      clearTimeout(timer);
      status?.off('data', onData);
      launcher.child.off('exit', onExit);
      if (error) reject(error);
      else resolve();
    }
    if (launcher.exit) return onExit();
    status?.on('data', onData);
    launcher.child.once('exit', onExit);
  });
}

function killGroup(launcher: WarmLauncher): void {
  const pid = launcher.child.pid;
  if (pid === undefined || launcher.exit) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * Unmounts what is on the slot's dirs and removes them — rmdir only, never
 * a recursive removal: a dir that is still a mount point stays (and the
 * orphan sweep retries) rather than risk deleting a run's work dir.
 */
async function releaseDirs(mounter: SlotMounter, buildDir: string, stageDir: string): Promise<void> {
  await mounter.release(buildDir).catch(() => undefined);
  await rmdir(buildDir).catch(() => undefined);
  await rmdir(stageDir).catch(() => undefined);
}

/** Destroys a slot (after its run, or one that never ran anything). */
export async function discardSlot(slot: WarmSlot): Promise<void> {
  killGroup(slot.launcher);
  await slot.cgroup.killAll().catch(() => undefined);
  await slot.cgroup.remove().catch(() => undefined);
  await releaseDirs(slot.mounter, slot.buildDir, slot.stageDir);
  await slot.lease.release();
}
