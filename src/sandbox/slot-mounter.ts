import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { PlatformError } from '../errors.ts';
import { compileNative } from './native.ts';

/**
 * The root helper (slot-mounter.c) that makes a prepared sandbox's /build
 * point at the run's work dir (decision 0034): one process per worker, asked
 * through a pipe, because spawning mount(8) per run would cost more than the
 * sandbox start it serves. Requests are answered in order.
 */
export class SlotMounter {
  private child?: ChildProcess;
  private readonly waiting: Array<(line: string) => void> = [];
  private buffered = '';

  constructor(private readonly cacheDir: string) {}

  /** DIR becomes a shared mount point: what is mounted on it later reaches a sandbox that bound it. */
  share(dir: string): Promise<void> {
    return this.request(['share', dir]);
  }

  /** Binds `source` onto the shared `dir` (nosuid, nodev), through the private, empty `stage` dir. */
  bind(source: string, stage: string, dir: string): Promise<void> {
    return this.request(['bind', source, stage, dir]);
  }

  /** Detaches everything mounted on `dir`. */
  release(dir: string): Promise<void> {
    return this.request(['release', dir]);
  }

  /** Mounts a tmpfs on `dir` (nosuid, nodev) with the given tmpfs options: a job's work dir (volume.ts). */
  mountTmpfs(dir: string, options: string): Promise<void> {
    return this.request(['tmpfs', dir, options], 'sandbox_volume_failed');
  }

  /** Unmounts `dir`, detaching it when busy; a dir that is not a mount point is left as it is. */
  unmount(dir: string): Promise<void> {
    return this.request(['unmount', dir], 'sandbox_volume_failed');
  }

  /** Starts the helper now (compiling it on first use); rejects when it cannot be built or started. */
  async ready(): Promise<void> {
    await this.start();
  }

  /** Ends the helper (it exits on EOF). */
  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }

  private async request(fields: string[], failureCode = 'sandbox_warm_failed'): Promise<void> {
    if (fields.some((field) => field.length === 0 || field.includes('\0') || Buffer.byteLength(field) >= 4096)) {
      throw new PlatformError(failureCode, `a slot mount path is empty, too long or contains a NUL byte: ${fields.join(' ')}`);
    }
    // Written at once when the helper runs, so the caller's next synchronous work overlaps the mount.
    const child = this.running() ?? (await this.start());
    const answer = new Promise<string>((resolve) => this.waiting.push(resolve));
    hold(child, true);
    child.stdin?.write(`${fields.map((field) => `${field}\0`).join('')}\0`);
    const line = await answer;
    if (this.waiting.length === 0) hold(child, false);
    if (line !== 'ok') throw new PlatformError(failureCode, `slot mount ${fields[0]} ${fields[1] ?? ''} failed: ${line}`);
  }

  private starting?: Promise<ChildProcess>;

  private running(): ChildProcess | undefined {
    return this.child && this.child.exitCode === null && this.child.signalCode === null ? this.child : undefined;
  }

  private start(): Promise<ChildProcess> {
    const running = this.running();
    if (running) return Promise.resolve(running);
    this.starting ??= this.spawnHelper().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async spawnHelper(): Promise<ChildProcess> {
    const program = await compileNative({ source: new URL('./slot-mounter.c', import.meta.url), name: 'kiln-slot-mounter', flags: [], needs: 'gcc (or clang)', cacheDir: this.cacheDir });
    const child = spawn(program, [], { stdio: ['pipe', 'pipe', 'inherit'], env: {}, cwd: '/' });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => this.received(chunk));
    child.stdin?.on('error', () => undefined);
    // Requests in flight when the helper dies fail instead of hanging.
    child.on('exit', () => {
      for (const resolve of this.waiting.splice(0)) resolve('error the slot mounter exited');
    });
    child.on('error', () => undefined);
    hold(child, false);
    this.child = child;
    return child;
  }

  private received(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline);
      this.buffered = this.buffered.slice(newline + 1);
      this.waiting.shift()?.(line);
    }
  }
}

/** An idle helper must not keep the worker (or a test) alive; one with a request in flight must. */
function hold(child: ChildProcess, held: boolean): void {
  if (held) child.ref();
  else child.unref();
  for (const stream of [child.stdin, child.stdout] as Array<Partial<Socket> | null>) {
    if (held) stream?.ref?.();
    else stream?.unref?.();
  }
}
