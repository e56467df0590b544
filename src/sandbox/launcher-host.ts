import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { PlatformError } from '../errors.ts';
import { warmLauncherScript } from './supervise.ts';
import type { LaunchedProcess, WarmLauncher, WarmLaunchSpec } from './supervise.ts';


/**
 * Starts the warm pool's launchers in a small long-lived helper process
 * (launch-helper.mjs, decision 0047) instead of in this one.
 *
 * Starting a program forks the process that starts it, and Node waits for
 * the fork and the exec on its event loop: for the ~560 MB process of
 * `kiln serve` (API, embedded database, worker) that held every request for
 * 30–280 ms under load, and the pool's refill after a build's last sandboxed
 * run landed in the build's artifact upload and report (decision 0044).
 * The helper is forked once, when the pool first fills; each launcher it
 * starts is a fork of a ~40 MB process, off this event loop.
 *
 * The launcher is the one supervise.ts starts (same script, uid, gid,
 * environment, cwd, detached), with the same descriptors: the helper opens
 * the seccomp program and the waiter from their paths and passes the
 * launcher's pipes back over the IPC channel, so the run is supervised
 * exactly as before. Only the launcher's parent differs (the helper), and its
 * script first waits for a byte on stdin, written here once the helper has
 * let go of every pipe.
 */
/** How long the helper may take to start a launcher and hand over its pipes (as long as a slot may take to start). */
const LAUNCH_ANSWER_MS = 10_000;

export class LauncherHost {
  private helper?: ChildProcess;
  private nextId = 1;
  private readonly launching = new Map<number, PendingLaunch>();
  private readonly live = new Map<number, RemoteProcess>();

  /** Starts a warm launcher; `files` are its descriptors from fd 4 on: a path to open read-only, or 'collect'. */
  async launch(spec: Omit<WarmLaunchSpec, 'extraFds'>, files: Array<string | 'collect'>): Promise<WarmLauncher> {
    const id = this.nextId++;
    const extraFds: Array<number | 'collect'> = files.map((file) => (file === 'collect' ? 'collect' : -1));
    const pending = new PendingLaunch(id, extraFds.length, this.holder);
    this.launching.set(id, pending);
    this.holder.hold();
    try {
      const script = warmLauncherScript({ ...spec, extraFds }, { gate: true });
      this.start().send({ type: 'launch', id, script, argv: [...spec.cgroupProcs, ...spec.argv], uid: spec.uid, gid: spec.gid, files });
      // A helper that does not answer must not hold the pool's fill (and its close) forever.
      const timer = setTimeout(() => pending.fail(new PlatformError('sandbox_warm_failed', 'the launch helper did not start a launcher in time')), LAUNCH_ANSWER_MS);
      const launched = await pending.done.finally(() => clearTimeout(timer));
      // A launcher that died at once may have had its exit delivered (same channel, right after `handed`) before this line runs.
      const launcher: { child: LaunchedProcess; extraFds: Array<number | 'collect'>; exit?: { code: number | null; signal: string | null } } = { child: launched, extraFds, exit: launched.exitStatus };
      if (!launcher.exit) {
        this.live.set(id, launched);
        launched.once('exit', (code, signal) => {
          launcher.exit = { code, signal };
          this.live.delete(id);
        });
      }
      // An idle launcher must not keep the service alive (supervise.ts refs its pipes for the run).
      for (const socket of launched.stdio) socket?.unref();
      // Every pipe is ours alone now: the launcher may go on.
      launched.stdin?.write('g');
      return launcher;
    } finally {
      this.launching.delete(id);
      this.holder.release();
    }
  }

  /** Ends the helper; launchers it started die with it (their sandboxes: --die-with-parent). */
  close(): void {
    if (this.helper?.connected) this.helper.disconnect();
    this.helper = undefined;
  }

  private start(): ChildProcess {
    if (this.helper?.connected) return this.helper;
    const program = fileURLToPath(new URL('./launch-helper.mjs', import.meta.url));
    // Nothing of this process's environment reaches the helper (nor, through it, a launcher).
    const helper = spawn(process.execPath, [program], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: {}, cwd: '/', serialization: 'json' });
    helper.on('message', (message: HelperMessage, handle?: Socket) => this.received(message, handle));
    helper.on('error', () => undefined);
    helper.on('exit', () => {
      if (this.helper === helper) this.helper = undefined;
      const error = new PlatformError('sandbox_warm_failed', 'the launch helper exited');
      for (const pending of this.launching.values()) pending.fail(error);
      // Its launchers are gone too (or going): their runs see them exit.
      for (const remote of this.live.values()) remote.exited(null, null);
    });
    this.helper = helper;
    this.holder.apply();
    return helper;
  }

  private received(message: HelperMessage, handle: Socket | undefined): void {
    const pending = this.launching.get(message.id);
    if (message.type === 'exit') {
      (this.live.get(message.id) ?? pending?.process)?.exited(message.code, message.signal);
      return;
    }
    if (!pending) {
      handle?.destroy();
      return;
    }
    if (message.type === 'failed') pending.fail(new PlatformError('sandbox_warm_failed', `the launch helper could not start a launcher: ${message.message}`));
    else if (message.type === 'started') pending.started(message.pid);
    else if (message.type === 'stdio' && handle) pending.stdio(message.fd, handle);
    else if (message.type === 'handed') pending.handed();
  }

  /** The helper's channel keeps this process alive only while a launch is in flight or a launcher's run is watched. */
  private readonly holder: Holder = {
    count: 0,
    hold: () => {
      this.holder.count++;
      this.holder.apply();
    },
    release: () => {
      this.holder.count = Math.max(0, this.holder.count - 1);
      this.holder.apply();
    },
    apply: () => {
      const channel = this.helper?.channel as { ref?: () => void; unref?: () => void } | null | undefined;
      if (this.holder.count > 0) {
        this.helper?.ref();
        channel?.ref?.();
      } else {
        this.helper?.unref();
        channel?.unref?.();
      }
    },
  };
}

interface Holder {
  count: number;
  hold(): void;
  release(): void;
  apply(): void;
}

type HelperMessage =
  | { type: 'started'; id: number; pid: number }
  | { type: 'failed'; id: number; message: string }
  | { type: 'stdio'; id: number; fd: number }
  | { type: 'handed'; id: number }
  | { type: 'exit'; id: number; code: number | null; signal: string | null };

class PendingLaunch {
  process?: RemoteProcess;
  readonly done: Promise<RemoteProcess>;
  private resolve!: (process: RemoteProcess) => void;
  private reject!: (error: Error) => void;
  private readonly sockets: Array<Socket | null>;

  constructor(
    readonly id: number,
    extraCount: number,
    private readonly holder: Holder,
  ) {
    this.sockets = Array.from({ length: 4 + extraCount }, () => null);
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  started(pid: number): void {
    this.process = new RemoteProcess(pid, this.sockets, this.holder);
  }

  stdio(fd: number, socket: Socket): void {
    if (fd >= 0 && fd < this.sockets.length) this.sockets[fd] = socket;
    else socket.destroy();
  }

  private settled = false;

  handed(): void {
    if (this.settled) return;
    if (!this.process) return this.fail(new PlatformError('sandbox_warm_failed', 'the launch helper handed pipes of no launcher'));
    this.settled = true;
    this.process.watchStreams();
    this.resolve(this.process);
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    for (const socket of this.sockets) socket?.destroy();
    if (this.process?.pid !== undefined) {
      try {
        process.kill(-this.process.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    this.reject(error);
  }
}

/**
 * A launcher started by the helper, seen as the ChildProcess parts the
 * supervisor uses: its pid (its process group's id: it is detached), its
 * pipes, and the 'exit' and 'close' events ('close' once it exited and its
 * pipes are closed, as for a ChildProcess).
 */
class RemoteProcess extends EventEmitter implements LaunchedProcess {
  private exit?: { code: number | null; signal: NodeJS.Signals | null };
  private openStreams = 0;
  private closed = false;
  private held = false;

  constructor(
    readonly pid: number,
    readonly stdio: Array<Socket | null>,
    private readonly holder: Holder,
  ) {
    super();
  }

  get exitStatus(): { code: number | null; signal: string | null } | undefined {
    return this.exit;
  }

  get stdin(): Socket | null {
    return this.stdio[0] ?? null;
  }

  get stdout(): Socket | null {
    return this.stdio[1] ?? null;
  }

  get stderr(): Socket | null {
    return this.stdio[2] ?? null;
  }

  /** Counts the pipes still open, for 'close'. */
  watchStreams(): void {
    for (const socket of this.stdio) {
      if (!socket) continue;
      this.openStreams++;
      socket.on('error', () => undefined);
      socket.once('close', () => {
        this.openStreams--;
        this.maybeClose();
      });
    }
  }

  exited(code: number | null, signal: string | null): void {
    if (this.exit) return;
    this.exit = { code, signal: signal as NodeJS.Signals | null };
    this.unref();
    this.emit('exit', code, signal);
    // The write side is ours alone: nothing more will be read from it.
    this.stdin?.destroy();
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.closed || !this.exit || this.openStreams > 0) return;
    this.closed = true;
    this.emit('close', this.exit.code, this.exit.signal);
  }

  /** Held while its run is watched: its exit arrives over the helper's channel. */
  ref(): void {
    if (this.held || this.exit) return;
    this.held = true;
    this.holder.hold();
  }

  unref(): void {
    if (!this.held) return;
    this.held = false;
    this.holder.release();
  }
}
