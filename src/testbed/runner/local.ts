/**
 * Local runner processes, started by the API (`kiln serve`): each is a
 * child `node` with a bounded heap (--max-old-space-size) that speaks the
 * wire protocol over an inherited pipe (fd 3). One that exits — crashed,
 * killed, out of memory — is started again; its calls were already answered
 * `runner_lost` by the hub when its pipe closed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';

export interface LocalRunnerOptions {
  count: number;
  slots: number;
  heapMb: number;
  /** Hands the pipe of a started runner to the hub. */
  attach(stream: Duplex, pid: number): void;
  onExit?(pid: number, code: number | null, signal: NodeJS.Signals | null): void;
}

/** The inherited pipe's descriptor in the child: the fourth entry of `stdio` below. */
const RUNNER_FD = 3;

/** A runner that dies within this long of starting waits this long before the next start (no spawn loop). */
const RESTART_BACKOFF_MS = 1_000;

export class LocalRunners {
  private readonly children = new Set<ChildProcess>();
  private stopped = false;

  constructor(private readonly options: LocalRunnerOptions) {}

  start(): void {
    for (let i = 0; i < this.options.count; i++) this.spawnOne();
  }

  pids(): number[] {
    return [...this.children].map((child) => child.pid ?? -1).filter((pid) => pid > 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const exits = [...this.children].map((child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()))));
    for (const child of this.children) child.kill('SIGTERM');
    const forced = setTimeout(() => {
      for (const child of this.children) child.kill('SIGKILL');
    }, 2_000);
    await Promise.all(exits);
    clearTimeout(forced);
  }

  private spawnOne(): void {
    const startedAt = Date.now();
    // The runner's settings arrive over the pipe (OPS.configure), never from its environment:
    // what the child inherits is only what node itself needs.
    const child = spawn(process.execPath, [...loaderArgs(), `--max-old-space-size=${this.options.heapMb}`, entryPath(), '--slots', String(this.options.slots), '--fd', String(RUNNER_FD)], {
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    });
    this.children.add(child);
    const pipe = child.stdio[3] as Duplex | null;
    if (pipe && child.pid) this.options.attach(pipe, child.pid);
    child.once('exit', (code, signal) => {
      this.children.delete(child);
      this.options.onExit?.(child.pid ?? -1, code, signal);
      if (this.stopped) return;
      const delay = Date.now() - startedAt < RESTART_BACKOFF_MS ? RESTART_BACKOFF_MS : 0;
      setTimeout(() => {
        if (!this.stopped) this.spawnOne();
      }, delay).unref();
    });
    child.once('error', () => undefined);
  }
}

/** Under tsx (how Kiln runs), the child needs the TypeScript loader too. */
function loaderArgs(): string[] {
  return import.meta.url.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
}

function entryPath(): string {
  return new URL(import.meta.url.endsWith('.ts') ? './main.ts' : './main.js', import.meta.url).pathname;
}
