/**
 * Local runner processes, started by the API (`kiln serve`): each is a
 * child `node` with a bounded heap (--max-old-space-size) that speaks the
 * wire protocol over an inherited pipe (fd 3). One that exits — crashed,
 * killed, out of memory — is started again; its calls were already answered
 * `runner_lost` by the hub when its pipe closed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
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
    // the child gets only what node itself needs (runnerEnvironment), not the API's credentials.
    const child = spawn(process.execPath, [...loaderArgs(), `--max-old-space-size=${this.options.heapMb}`, entryPath(), '--slots', String(this.options.slots), '--fd', String(RUNNER_FD)], {
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
      env: runnerEnvironment(process.env),
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

/**
 * Variables passed to a local runner when the API has them, and why each is
 * needed. Everything else of the API's environment stays behind: the
 * database URL, S3 keys, tokens, NODE_OPTIONS (the runner's flags are the
 * explicit arguments above). Tenant code runs in this process's worker
 * threads, so whatever it holds is what a module that escaped the Wasm
 * sandbox could read.
 *
 * Not passed, on purpose: PATH (node is started by its absolute path and a
 * runner starts no program), HOME (nothing reads it; os.homedir() falls back
 * to the passwd entry), LANG/LC_* and TZ (nothing in a runner formats for a
 * locale or zone; without them every runner behaves the same, whatever the
 * operator's shell), proxy variables (node's http ignores them).
 */
const PASSED_VARIABLES = [
  // Runners make the allowed upstreams' HTTPS calls: an operator's private CA must be trusted there too.
  // It is a path to public certificates, not a secret.
  'NODE_EXTRA_CA_CERTS',
  // tsx's own settings for loading Kiln's TypeScript (only present when the operator set them).
  'TSX_TSCONFIG_PATH',
  'TSX_DISABLE_CACHE',
] as const;

/**
 * The whole environment of a local runner: TMPDIR (tsx keeps its compile
 * cache under os.tmpdir(); the API's resolved one, however it was set) and
 * the variables above.
 */
export function runnerEnvironment(parent: NodeJS.ProcessEnv, tmpdir = os.tmpdir()): Record<string, string> {
  const env: Record<string, string> = { TMPDIR: tmpdir };
  for (const name of PASSED_VARIABLES) {
    const value = parent[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Under tsx (how Kiln runs), the child needs the TypeScript loader too. */
function loaderArgs(): string[] {
  return import.meta.url.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
}

function entryPath(): string {
  return new URL(import.meta.url.endsWith('.ts') ? './main.ts' : './main.js', import.meta.url).pathname;
}
