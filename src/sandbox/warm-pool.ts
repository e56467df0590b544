import { randomBytes } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { RunCgroup, runCgroupName } from './cgroups.ts';
import type { Controller } from './cgroups.ts';
import type { SandboxHost } from './host.ts';
import { killUid } from './procs.ts';
import { startWarmLauncher } from './supervise.ts';
import type { WarmLauncher } from './supervise.ts';
import type { UidLease } from './uids.ts';

/**
 * Prepared sandboxes (decision 0018). Starting a sandbox costs a uid lease,
 * three cgroups with their limits, and a launcher process that enters them —
 * the process start is most of it. A slot does all of that ahead of time:
 * a leased uid, fresh groups, and a launcher (root, bash) already inside
 * them with the seccomp program open, blocked reading its stdin.
 *
 * A slot serves exactly one run and is then destroyed like any run's
 * resources (groups swept and removed, uid released); the next slot is made
 * from scratch. Nothing of a run can meet a later run: the later run gets
 * groups created after the earlier one's were removed, its own launcher, a
 * uid chosen while the earlier one was still leased (so a different one),
 * and a work dir handed over to that uid.
 */
export interface WarmSlot {
  readonly id: string;
  readonly lease: UidLease;
  readonly cgroup: RunCgroup;
  readonly launcher: WarmLauncher;
  /** Root-only file the run's request goes to (see supervise.ts). */
  readonly requestFile: string;
}

/** Slots kept ready by default by `createSandbox` (one per usual concurrent build). */
export const DEFAULT_WARM_POOL = 2;

/** Limits of a slot's groups while it waits: enough for an idle bash, nothing more. */
const IDLE_LIMITS = { memoryBytes: 64 * 1024 ** 2, pids: 4, cpus: 0.5 };
/** How long a new launcher may take to reach its read before the slot is given up. */
const LAUNCHER_READY_MS = 10_000;
/** After a failed preparation, runs go the fresh way for this long before the pool tries again. */
const RETRY_AFTER_MS = 30_000;

export interface WarmPoolOptions {
  host: SandboxHost;
  /** Slots kept ready. */
  size: number;
  /** Path of the compiled seccomp program each launcher holds open. */
  seccompProgram: () => Promise<string>;
}

export class WarmPool {
  private readonly idle: WarmSlot[] = [];
  private filling?: Promise<void>;
  private closed = false;
  private failedAt = 0;
  /** The last preparation failure, for diagnostics (the run itself goes the fresh way). */
  lastError?: unknown;

  constructor(private readonly options: WarmPoolOptions) {}

  /** A ready slot, or undefined (the caller starts a fresh sandbox). */
  take(): WarmSlot | undefined {
    while (this.idle.length > 0) {
      const slot = this.idle.shift() as WarmSlot;
      if (slot.launcher.exit === undefined) return slot;
      void discardSlot(slot);
    }
    return undefined;
  }

  /** Prepares slots, one at a time, until `size` are ready; resolves when it is done. */
  fill(): Promise<void> {
    if (this.closed || this.options.size <= 0 || Date.now() - this.failedAt < RETRY_AFTER_MS) return Promise.resolve();
    this.filling ??= this.fillSerially().finally(() => (this.filling = undefined));
    return this.filling;
  }

  private async fillSerially(): Promise<void> {
    while (!this.closed && this.idle.length < this.options.size) {
      let slot: WarmSlot | undefined;
      try {
        slot = await prepareSlot(this.options.host, await this.options.seccompProgram());
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
    await Promise.all(this.idle.splice(0).map(discardSlot));
  }
}

async function prepareSlot(host: SandboxHost, seccompProgram: string): Promise<WarmSlot> {
  const probe = await host.cgroups();
  if (!probe.ok) throw new PlatformError('sandbox_warm_unavailable', `no cgroups: ${probe.reason}`);
  const id = randomBytes(6).toString('hex');
  const lease = await host.uids.acquire();
  let cgroup: RunCgroup | undefined;
  let launcher: WarmLauncher | undefined;
  const requestFile = join(host.stateDir, 'launch', runCgroupName(id));
  try {
    if (lease.reclaimed) await killUid(lease.uid);
    cgroup = await RunCgroup.create(probe.parents as Record<Controller, string>, runCgroupName(id), IDLE_LIMITS);
    await mkdir(join(host.stateDir, 'launch'), { recursive: true, mode: 0o700 });
    const seccomp = await open(seccompProgram, 'r');
    try {
      launcher = startWarmLauncher({ uid: lease.uid, gid: lease.gid, cgroupProcs: cgroup.procsFiles, ulimits: [['-c', 0]], extraFds: [seccomp.fd, 'collect'], requestFile });
    } finally {
      // The launcher holds its own copy of the descriptor.
      await seccomp.close();
    }
    await waitUntilWaiting(launcher);
    return { id, lease, cgroup, launcher, requestFile };
  } catch (error) {
    if (launcher) killGroup(launcher);
    await cgroup?.killAll().catch(() => undefined);
    await cgroup?.remove().catch(() => undefined);
    await lease.release();
    throw error;
  }
}

/** The launcher prints W on its status pipe once it is in its groups and reading. */
function waitUntilWaiting(launcher: WarmLauncher): Promise<void> {
  return new Promise((resolve, reject) => {
    const status = launcher.child.stdio[3];
    const timer = setTimeout(() => done(new PlatformError('sandbox_warm_failed', 'a warm launcher did not start in time')), LAUNCHER_READY_MS);
    const onData = (chunk: Buffer): void => {
      if (chunk.includes('W')) done();
    };
    const onExit = (): void => done(new PlatformError('sandbox_warm_failed', 'a warm launcher died while starting'));
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

/** Destroys a slot that never ran anything. */
export async function discardSlot(slot: WarmSlot): Promise<void> {
  killGroup(slot.launcher);
  await slot.cgroup.killAll().catch(() => undefined);
  await slot.cgroup.remove().catch(() => undefined);
  await rm(slot.requestFile, { force: true });
  await slot.lease.release();
}
