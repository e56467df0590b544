/** Limits applied to one sandboxed run. */
export interface SandboxLimits {
  /** Wall-clock limit; the whole process tree is killed when it passes. */
  wallMs: number;
  /** Memory limit (cgroup memory.limit_in_bytes; tmpfs pages count too). */
  memoryBytes: number;
  /** Maximum number of processes/threads (cgroup pids.max). */
  pids: number;
  /** Size of the writable space (tmpfs size / disk quota). */
  diskBytes: number;
  /** Bytes of stdout+stderr accepted; past it the run is killed. */
  logBytes: number;
  /** CPU share in cores (cgroup cpu.cfs_quota_us / period). */
  cpus: number;
}

export const DEFAULT_LIMITS: SandboxLimits = {
  wallMs: 10 * 60_000,
  memoryBytes: 2 * 1024 ** 3,
  pids: 256,
  diskBytes: 1024 ** 3,
  logBytes: 4 * 1024 ** 2,
  cpus: 2,
};

export type LimitName = 'wall' | 'memory' | 'pids' | 'disk' | 'log';

export interface Mount {
  host: string;
  sandbox: string;
  writable?: boolean;
}

export interface SandboxRunOptions {
  /** argv[0] is resolved inside the sandbox (e.g. /usr/bin/cargo). */
  command: string[];
  /** Environment inside the sandbox; nothing is inherited from the host. */
  env: Record<string, string>;
  /** Working directory inside the sandbox. */
  cwd: string;
  /**
   * The job's own host directory, mounted writable at `/build` inside the
   * sandbox. Everything the build writes outside it is thrown away.
   */
  workDir: string;
  /** Extra mounts (read-only unless `writable`). Toolchains are read-only. */
  mounts?: Mount[];
  limits: SandboxLimits;
  /** Receives stdout and stderr interleaved, already capped to limits.logBytes. */
  onOutput?: (chunk: Buffer) => void;
  /** Aborting kills the whole process tree (used for cancel). */
  signal?: AbortSignal;
  /**
   * Only for the dependency fetch step (src/fetch): the host path of a unix
   * socket (Kiln's filtering egress proxy), bound at EGRESS_SOCKET inside.
   * The run then may also open AF_INET/AF_INET6 sockets, which still reach
   * nothing but its own empty network namespace's loopback. Build steps
   * never set it.
   */
  egress?: { socket: string };
}

/** Where the egress proxy's socket appears inside a fetch sandbox. */
export const EGRESS_SOCKET = '/run/kiln/egress.sock';

export interface SandboxResult {
  exitCode: number | null;
  /** Signal that ended the main process, if any. */
  signal: string | null;
  /** Set when a limit ended the run (the build reason names it). */
  limitHit?: LimitName;
  cancelled: boolean;
  durationMs: number;
  /** Facts for the build log, e.g. "cgroups unavailable: using rlimits". */
  notes: string[];
}

/** A way to run an untrusted command with no network and bounded resources. */
export interface Sandbox {
  readonly name: 'bubblewrap' | 'gvisor';
  /** Throws a PlatformError when the sandbox cannot work on this host. */
  check(): Promise<void>;
  run(options: SandboxRunOptions): Promise<SandboxResult>;
  /** Releases what the sandbox keeps between runs (prepared sandboxes); runs in progress are not affected. */
  close?(): Promise<void>;
}
