import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

/**
 * Starts a sandbox program (bwrap, runsc) under a tiny shell launcher and
 * watches it: wall clock, log cap, cancellation, and the final sweep.
 *
 * The launcher is what makes cgroup placement race-free: it writes its own
 * pid into the run's cgroup.procs files, lowers its rlimits, and only then
 * execs the sandbox program, so every process the run ever creates starts
 * inside the groups. It is spawned detached (its own process group and
 * session) so the whole host-side tree can be killed with one kill(-pgid).
 */
export interface LaunchSpec {
  /** The sandbox program and its arguments. */
  argv: string[];
  /** Host credentials of the launcher (and so of the sandbox program). */
  uid?: number;
  gid?: number;
  /** cgroup.procs files the launcher moves itself into. */
  cgroupProcs: string[];
  /** bash `ulimit` options, e.g. ['-c', 0]. */
  ulimits: Array<[string, number]>;
  /**
   * Extra descriptors given to the sandbox program from fd 4 on: a number is
   * one of our open fds, 'collect' a pipe whose contents are returned.
   */
  extraFds: Array<number | 'collect'>;
  /**
   * Give the sandbox program a pipe, relayed to us by `cat`, with its stdout
   * and stderr as two open file descriptions of that pipe (see
   * outputRelayLines). For runsc, which sets O_NONBLOCK on the descriptions it
   * is given; bwrap passes descriptors on untouched and needs no relay.
   */
  outputRelay?: boolean;
}

export interface WatchOptions {
  wallMs: number;
  logBytes: number;
  signal?: AbortSignal;
  onOutput?: (chunk: Buffer) => void;
  /** Kills whatever is left of the run (cgroup members, uid processes). */
  sweep: () => Promise<void>;
  /**
   * True once a kernel limit refused the run something (an OOM kill, a
   * refused fork). Polled while the run lives: a fork bomb or a memory hog
   * that leaves a daemon holding cargo's pipes would otherwise keep the run
   * alive, doing nothing, until the wall clock.
   */
  limitReached?: () => Promise<boolean>;
}

/** 'limit': a kernel limit (memory, pids) was hit and the run did not end by itself within LIMIT_GRACE_MS. */
export type StopReason = 'wall' | 'log' | 'cancel' | 'limit';

export interface Supervised {
  exitCode: number | null;
  signal: string | null;
  stopped?: StopReason;
  /** False when the launcher died before exec'ing the sandbox program. */
  launched: boolean;
  durationMs: number;
  /** Data read from each 'collect' fd, by its position in extraFds. */
  collected: Map<number, string>;
  /** The last bytes of output, for error messages. */
  tail: string;
  /** The output mentioned ENOSPC (the sandbox's own tmpfs may have filled). */
  sawNoSpace: boolean;
  /** onOutput threw: the run was stopped, and the caller must fail with this. */
  consumerError?: unknown;
}

const LAUNCH_STATUS_FD = 3;
const FIRST_EXTRA_FD = 4;
const TAIL_BYTES = 4096;
const NO_SPACE = /No space left on device|ENOSPC/;
/** After the program exits, how long stray holders of its pipes may take to die. */
const DRAIN_MS = 2000;
/** How often a live run's cgroup counters are read (two small files). */
const LIMIT_POLL_MS = 250;
/**
 * After a limit refused something, how long the run may take to fail on its
 * own (so the tool's own error, e.g. cargo's, reaches the log) before it is killed.
 */
export const LIMIT_GRACE_MS = 2000;

/**
 * The launcher script (for bash); arguments are: procs files..., then the argv.
 * bash rather than dash because it must close descriptors above 9: the
 * service may have inherited fds from its own parent without close-on-exec,
 * and they would otherwise reach the sandbox (bwrap passes every open fd on).
 */
export function launcherScript(spec: Pick<LaunchSpec, 'cgroupProcs' | 'ulimits' | 'extraFds' | 'outputRelay'>): string {
  const lastFd = FIRST_EXTRA_FD + spec.extraFds.length - 1;
  const lines = [
    'set -e',
    `for fd in /proc/$$/fd/*; do fd=\${fd##*/}; if [ "$fd" -gt ${lastFd} ]; then eval "exec $fd>&-"; fi; done`,
  ];
  spec.cgroupProcs.forEach((_, index) => lines.push(`echo $$ > "$${index + 1}"`));
  if (spec.cgroupProcs.length > 0) lines.push(`shift ${spec.cgroupProcs.length}`);
  for (const [flag, value] of spec.ulimits) lines.push(`ulimit ${flag} ${Math.floor(value)}`);
  // Tell the supervisor we got this far, and keep the status pipe out of the sandbox.
  lines.push(`printf L >&${LAUNCH_STATUS_FD}`, `exec ${LAUNCH_STATUS_FD}>&-`);
  // One stream, in order: the sandbox's stderr goes where its stdout goes.
  lines.push(...(spec.outputRelay ? outputRelayLines(spec.extraFds) : ['exec "$@" 2>&1']));
  return lines.join('\n');
}

/**
 * runsc imports the program's stdout and stderr as host descriptors and sets
 * O_NONBLOCK on each, reading the flags of the one it imports second after
 * setting them on the first (in Go map order, so either may come second).
 * With `2>&1` both are ONE open file description, so the second import
 * inherits O_NONBLOCK and the sandboxed program gets EAGAIN instead of
 * blocking as soon as we read more slowly than it writes (a loaded host):
 * `tr: write error: Resource temporarily unavailable`, before any log cap.
 *
 * Node's stdio is a socket pair, which cannot be reopened; a pipe can: bash
 * puts a pipe between the program and our socket (`cat` relays it, inside
 * the run's cgroups and process group, so the sweep kills it too), and opens
 * the pipe's write end a second time through /proc for stderr. Both streams
 * still go, in order, into one pipe, but each has its own flags.
 */
function outputRelayLines(extraFds: LaunchSpec['extraFds']): string[] {
  // The relay must not hold the run's extra descriptors open (a 'collect' pipe would never end).
  const closeExtra = extraFds.map((_, index) => ` ${FIRST_EXTRA_FD + index}>&-`).join('');
  return [`exec > >(exec cat${closeExtra})`, 'exec "$@" 2>/proc/self/fd/1'];
}

export function supervise(spec: LaunchSpec, watch: WatchOptions): Promise<Supervised> {
  return new Promise((resolve) => new Watcher(watch, resolve).start(() => spawnLauncher(launcherScript(spec), spec, 'ignore', spec.uid, spec.gid), spec.extraFds));
}

/**
 * A sandbox started ahead of its run (warm-pool.ts, decision 0034): the
 * launcher is the one `supervise` uses (the run's uid, inside its cgroups,
 * rlimits lowered, foreign descriptors closed), except that it keeps the
 * status pipe open for the program it execs: the sandbox program, whose
 * command is a waiter that reports W on that pipe, reads its request on
 * stdin, and reports L and closes the pipe just before it execs the run's
 * command. So the launch status means the same as in `supervise`.
 */
export type WarmLaunchSpec = LaunchSpec & { uid: number; gid: number };

export function warmLauncherScript(spec: Pick<LaunchSpec, 'cgroupProcs' | 'ulimits' | 'extraFds'>, options: { gate?: boolean } = {}): string {
  const lines = launcherScript(spec).split('\n');
  // Started by the launch helper (launcher-host.ts): nothing happens before
  // the service writes one byte on stdin, once the helper has let go of every pipe.
  if (options.gate) lines.splice(1, 0, 'IFS= read -r -N 1 _ || exit 1');
  // The waiter inside the sandbox reports W and L itself.
  return lines.filter((line) => line !== `printf L >&${LAUNCH_STATUS_FD}` && line !== `exec ${LAUNCH_STATUS_FD}>&-`).join('\n');
}

/**
 * What the supervisor uses of a launcher process: a ChildProcess, or one
 * started by the launch helper (launcher-host.ts). `pid` is its process
 * group's id (launchers are detached); 'close' follows 'exit' once its pipes
 * are closed.
 */
export interface LaunchedProcess {
  readonly pid?: number;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  readonly stdio: ReadonlyArray<Readable | Writable | null | undefined>;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'close' | 'error', listener: () => void): this;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  off(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  ref(): void;
  unref(): void;
}

/** A started warm launcher; `exit` is set if it died while waiting. */
export interface WarmLauncher {
  readonly child: LaunchedProcess;
  readonly extraFds: Array<number | 'collect'>;
  readonly exit?: { code: number | null; signal: string | null };
}

/** Starts a warm launcher that does not keep the event loop alive while it waits. */
export function startWarmLauncher(spec: WarmLaunchSpec): WarmLauncher {
  const child = spawnLauncher(warmLauncherScript(spec), spec, 'pipe', spec.uid, spec.gid);
  const launcher: { child: ChildProcess; extraFds: Array<number | 'collect'>; exit?: { code: number | null; signal: string | null } } = { child, extraFds: spec.extraFds };
  child.on('exit', (code, signal) => (launcher.exit = { code, signal }));
  child.on('error', () => (launcher.exit ??= { code: null, signal: null }));
  setHeld(child, false);
  return launcher;
}

/**
 * Hands the waiting sandbox its request and watches the run exactly like
 * `supervise` (same wall clock, log cap, cancel and sweep).
 */
export function superviseWarm(launcher: Pick<WarmLauncher, 'child' | 'extraFds'>, request: string, watch: WatchOptions): Promise<Supervised> {
  return new Promise((resolve) =>
    new Watcher(watch, resolve).start(() => {
      setHeld(launcher.child, true);
      launcher.child.stdin?.on('error', () => undefined);
      launcher.child.stdin?.end(request);
      return launcher.child;
    }, launcher.extraFds),
  );
}

function spawnLauncher(script: string, spec: Pick<LaunchSpec, 'cgroupProcs' | 'argv' | 'extraFds'>, stdin: 'ignore' | 'pipe', uid: number | undefined, gid: number | undefined): ChildProcess {
  return spawn('/bin/bash', ['--norc', '--noprofile', '-c', script, 'kiln-launch', ...spec.cgroupProcs, ...spec.argv], {
    detached: true,
    uid,
    gid,
    // Nothing of the service's environment (tokens, secrets) reaches the
    // launcher, not even the service's working directory (bash would
    // export it as PWD, visible to the sandbox in /proc/1/environ).
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    cwd: '/',
    stdio: [stdin, 'pipe', 'pipe', 'pipe', ...spec.extraFds.map((fd) => (fd === 'collect' ? 'pipe' : fd))],
  });
}

/** An idle warm launcher must not keep the service (or a test) from exiting. */
function setHeld(child: LaunchedProcess, held: boolean): void {
  if (held) child.ref();
  else child.unref();
  for (const stream of child.stdio) {
    const socket = stream as Partial<Socket> | null;
    if (held) socket?.ref?.();
    else socket?.unref?.();
  }
}

class Watcher {
  private readonly startedAt = Date.now();
  private child?: LaunchedProcess;
  private stopped?: StopReason;
  private outputBytes = 0;
  private tail = '';
  private sawNoSpace = false;
  private launched = false;
  private exit?: { code: number | null; signal: string | null };
  private readonly collected = new Map<number, string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private sweeping: Promise<void> = Promise.resolve();
  private consumerError?: unknown;

  constructor(
    private readonly watch: WatchOptions,
    private readonly done: (result: Supervised) => void,
  ) {}

  start(launch: () => LaunchedProcess, extraFds: Array<number | 'collect'>): void {
    if (this.watch.signal?.aborted) {
      this.stopped = 'cancel';
      this.finish();
      return;
    }
    const child = launch();
    this.child = child;
    child.stdout?.on('data', (chunk: Buffer) => this.output(chunk));
    child.stderr?.on('data', (chunk: Buffer) => this.output(chunk));
    this.readAll(child.stdio[LAUNCH_STATUS_FD], (text) => (this.launched = text.includes('L')));
    extraFds.forEach((fd, index) => {
      if (fd === 'collect') this.readAll(child.stdio[FIRST_EXTRA_FD + index], (text) => this.collected.set(index, text));
    });
    child.on('error', () => this.finish());
    child.on('exit', (code, signal) => this.exited(code, signal));
    child.on('close', () => this.finish());
    this.timers.push(setTimeout(() => this.stop('wall'), this.watch.wallMs));
    this.watch.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.watch.limitReached) this.pollLimits(this.watch.limitReached);
  }

  /** Reads the limit counters until they show a hit, then gives the run its grace period. */
  private pollLimits(limitReached: () => Promise<boolean>): void {
    const poll = async (): Promise<void> => {
      if (this.exit || this.finished) return;
      const reached = await limitReached().catch(() => false);
      if (this.exit || this.finished) return;
      if (reached) this.timers.push(setTimeout(() => this.stop('limit'), LIMIT_GRACE_MS));
      else this.timers.push(setTimeout(() => void poll(), LIMIT_POLL_MS));
    };
    this.timers.push(setTimeout(() => void poll(), LIMIT_POLL_MS));
  }

  private readonly onAbort = (): void => this.stop('cancel');

  /** Accumulates a side pipe as it arrives (its 'close' may come after the child's). */
  private readAll(stream: unknown, onData: (text: string) => void): void {
    const readable = stream as Readable | null | undefined;
    if (!readable) return;
    let text = '';
    readable.on('data', (chunk: Buffer) => onData((text += chunk.toString('utf8'))));
    readable.on('error', () => undefined);
  }

  private output(chunk: Buffer): void {
    if (this.stopped === 'log') return;
    const room = this.watch.logBytes - this.outputBytes;
    const accepted = chunk.length > room ? chunk.subarray(0, Math.max(0, room)) : chunk;
    this.outputBytes += accepted.length;
    if (accepted.length > 0) {
      const text = accepted.toString('utf8');
      // Keep a little of the previous tail so a message split across chunks still matches.
      if (!this.sawNoSpace && NO_SPACE.test(this.tail.slice(-64) + text)) this.sawNoSpace = true;
      this.tail = (this.tail + text).slice(-TAIL_BYTES);
      this.deliver(accepted);
    }
    if (chunk.length > room) this.stop('log');
  }

  /** A throwing consumer must not crash the service from inside a stream event. */
  private deliver(chunk: Buffer): void {
    if (this.consumerError !== undefined) return;
    try {
      this.watch.onOutput?.(chunk);
    } catch (error) {
      this.consumerError = error;
      this.stop('cancel');
    }
  }

  /**
   * Kills the whole run for `reason`; the first reason wins. Once the program
   * has exited only the log cap still counts: output still draining past the
   * cap was cut, while a late timer or abort changed nothing.
   */
  private stop(reason: StopReason): void {
    if (this.stopped || (this.exit && reason !== 'log')) return;
    this.stopped = reason;
    if (!this.exit) this.kill();
  }

  private kill(): void {
    const pid = this.child?.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // The group is already gone.
      }
    }
    this.sweep();
  }

  private sweep(): void {
    this.sweeping = this.sweeping.then(() => this.watch.sweep()).catch(() => undefined);
  }

  private exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.exit = { code, signal };
    // The sandbox program is gone: anything still alive in the run is a leftover.
    this.sweep();
    this.timers.push(
      setTimeout(() => {
        // Something outside our reach still holds the pipes: stop waiting for it.
        for (const stream of this.child?.stdio ?? []) (stream as Readable | null)?.destroy();
        this.finish();
      }, DRAIN_MS),
    );
  }

  private finished = false;

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.watch.signal?.removeEventListener('abort', this.onAbort);
    if (this.child && !this.exit) this.kill();
    void this.sweeping.then(() =>
      this.done({
        exitCode: this.exit?.code ?? null,
        signal: this.exit?.signal ?? null,
        stopped: this.stopped,
        launched: this.launched,
        durationMs: Date.now() - this.startedAt,
        collected: this.collected,
        tail: this.tail,
        sawNoSpace: this.sawNoSpace,
        consumerError: this.consumerError,
      }),
    );
  }
}
