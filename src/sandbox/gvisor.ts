import { chown, copyFile, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';
import { PlatformError } from '../errors.ts';
import { runHost } from './exec.ts';
import { ETC_FROM_HOST, ROOT_ENTRIES, SANDBOX_HOME, SandboxHost, sandboxEnv } from './host.ts';
import type { SandboxHostOptions } from './host.ts';
import { runJob, selfTest } from './job.ts';
import type { Backend, LaunchPlan, RunContext } from './job.ts';
import { compileNative } from './native.ts';
import { EGRESS_SOCKET } from './sandbox.ts';
import type { Mount, Sandbox, SandboxLimits, SandboxResult, SandboxRunOptions } from './sandbox.ts';

/**
 * The stronger sandbox: gVisor's runsc (ptrace platform; KVM hangs on this
 * machine kind), no network at all (`--network=none`), the untrusted code
 * talking to gVisor's user-space kernel instead of the host's.
 *
 * Each run gets an OCI bundle whose config.json mounts a shared, read-only
 * skeleton root (symlinks and empty mount points) with /usr and a few /etc
 * files bound read-only, the job's capped work dir writable at /build, and
 * tmpfs for /tmp and HOME. runsc is started by the same launcher as
 * bubblewrap, inside our per-run cgroups, with `--ignore-cgroups`: the
 * limits then cover the sentry, the gofer and every ptrace stub, and the
 * sweep kills them all. The OCI `resources` section is still filled in so
 * that the sentry reports the limits to programs (sysinfo, CPU count).
 *
 * Known gaps of the Debian 12 runsc (2022): statx with AT_NO_AUTOMOUNT fails
 * with EINVAL (worked around by a preloaded shim, see gvisor-statx-shim.c;
 * statically linked programs still see it); the pids limit is enforced on
 * host tasks and so only approximately (see RUNSC_TASKS_PER_PROCESS); the
 * sentry's memory (the sandbox's page cache and tmpfs included) is what the
 * memory limit sees.
 */
export interface GvisorOptions extends SandboxHostOptions {
  /** Default /usr/bin/runsc. */
  runscPath?: string;
}

const SHIM_IN_SANDBOX = '/.kiln/libkiln-statx.so';
/**
 * gVisor does not enforce the OCI pids limit itself, so the host pids cgroup
 * does, counting host tasks: `runsc run`, the sentry and the gofer take ~85
 * for `true`, and with the ptrace platform each further sandboxed process
 * costs ~16 host tasks (measured: 40 sleeping children → 726 tasks). The
 * limit is therefore approximate under gVisor.
 */
const RUNSC_BASE_TASKS = 96;
const RUNSC_TASKS_PER_PROCESS = 16;

export class GvisorSandbox implements Sandbox {
  readonly name = 'gvisor' as const;
  private readonly host: SandboxHost;
  private readonly runsc: string;
  private skeleton?: Promise<Skeleton>;

  constructor(options: GvisorOptions = {}) {
    this.host = new SandboxHost(options);
    this.runsc = options.runscPath ?? '/usr/bin/runsc';
  }

  private get dir(): string {
    return join(this.host.stateDir, 'gvisor');
  }

  async check(): Promise<void> {
    const version = await runHost(this.runsc, ['--version']).catch(() => undefined);
    if (!version || version.code !== 0) throw new PlatformError('sandbox_unavailable', `${this.runsc} not found: install the Debian package runsc`);
    await selfTest(this.host, (options) => this.run(options), 'gVisor', 30_000);
  }

  run(options: SandboxRunOptions): Promise<SandboxResult> {
    return runJob(this.host, this.backend, options);
  }

  private readonly backend: Backend = { plan: (context) => this.plan(context) };

  private async plan(context: RunContext): Promise<LaunchPlan> {
    const { lease, options } = context;
    const [{ rootfs, etcFromHost }, etcDir] = await Promise.all([this.rootfs(), this.host.etcDir(lease.uid, lease.gid)]);
    await createMountPoints(rootfs, context);
    const name = `kiln-${context.id}`;
    const bundle = join(this.dir, 'bundles', name);
    const stateRoot = join(this.dir, 'state');
    const panicLog = join(bundle, 'runsc.err');
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    await mkdir(stateRoot, { recursive: true, mode: 0o700 });
    const config = ociConfig({ rootfs, etcDir, etcFromHost, volume: context.volume, uid: lease.uid, gid: lease.gid, options, limits: context.limits });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
    return {
      argv: [
        this.runsc, '--root', stateRoot, '--platform=ptrace', '--network=none', '--ignore-cgroups',
        // The fetch step's only way out: connecting to the bound egress proxy socket.
        ...(options.egress ? ['--host-uds=open'] : []),
        // runsc's own errors go to files, so the user's output cannot imitate them.
        `--log=${join(bundle, 'runsc.log')}`, `--panic-log=${panicLog}`,
        'run', '--bundle', bundle, name,
      ],
      asRunUid: false,
      extraFds: [],
      // runsc would otherwise leave the program a non-blocking stdout or stderr (issue 15).
      outputRelay: true,
      hostPids: (limit) => RUNSC_BASE_TASKS + RUNSC_TASKS_PER_PROCESS * limit,
      verify: async () => {
        const error = (await readFile(panicLog, 'utf8').catch(() => '')).trim();
        return error ? `runsc failed: ${error}` : undefined;
      },
      cleanup: async () => {
        await this.deleteLeftover(stateRoot, name);
        await rm(bundle, { recursive: true, force: true });
      },
    };
  }

  /** A container killed by the wall clock leaves its state behind; a clean exit does not. */
  private async deleteLeftover(stateRoot: string, name: string): Promise<void> {
    const entries = await readdir(stateRoot).catch(() => [] as string[]);
    if (entries.some((entry) => entry.includes(name))) {
      await runHost(this.runsc, ['--root', stateRoot, 'delete', '--force', name], { timeoutMs: 10_000 }).catch(() => undefined);
    }
  }

  private rootfs(): Promise<Skeleton> {
    this.skeleton ??= this.buildSkeleton().catch((error: unknown) => {
      this.skeleton = undefined;
      throw error;
    });
    return this.skeleton;
  }

  /**
   * The shared read-only root: only symlinks, empty mount points, the statx
   * shim and the ld.so.preload naming it. Idempotent, so concurrent workers
   * may build it at the same time.
   */
  private async buildSkeleton(): Promise<Skeleton> {
    const root = join(this.dir, 'rootfs');
    for (const dir of ['usr', 'etc', 'tmp', 'build', 'proc', 'dev', 'var', 'home/kiln', '.kiln']) await mkdir(join(root, dir), { recursive: true, mode: 0o755 });
    await ensureSymlink('../tmp', join(root, 'var/tmp'));
    for (const name of ROOT_ENTRIES) {
      const stats = await lstat(join('/', name)).catch(() => undefined);
      if (stats?.isSymbolicLink()) await ensureSymlink(await readlink(join('/', name)), join(root, name));
      else if (stats?.isDirectory()) await mkdir(join(root, name), { recursive: true });
    }
    const etcFromHost: string[] = [];
    for (const name of ETC_FROM_HOST) if (await lstat(join('/etc', name)).then(() => true, () => false)) etcFromHost.push(name);
    for (const name of [...etcFromHost, 'passwd', 'group', 'hosts']) await ensureMountPoint(join('/etc', name), join(root, 'etc', name));
    const shim = await compileNative({
      source: new URL('./gvisor-statx-shim.c', import.meta.url),
      name: 'libkiln-statx.so',
      flags: ['-shared', '-fPIC'],
      needs: 'gcc (or clang)',
      cacheDir: this.host.cacheDir,
    });
    await copyFile(shim, join(root, SHIM_IN_SANDBOX));
    await writeFile(join(root, 'etc/ld.so.preload'), `${SHIM_IN_SANDBOX}\n`, { mode: 0o644 });
    return { rootfs: root, etcFromHost };
  }
}

async function ensureSymlink(target: string, path: string): Promise<void> {
  await symlink(target, path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
}

/** An empty file or directory at `path`, matching what `source` is on the host. */
async function ensureMountPoint(source: string, path: string): Promise<void> {
  const stats = await lstat(source).catch(() => undefined);
  const isDir = stats?.isDirectory() ?? false;
  if (await lstat(path).then(() => true, () => false)) return;
  await mkdir(dirname(path), { recursive: true });
  if (isDir) await mkdir(path, { recursive: true });
  else await writeFile(path, '', { flag: 'a' });
}

/**
 * The read-only root cannot grow mount points at run time: extra mounts get
 * theirs in the skeleton, or in the work dir (owned by the run's uid) when
 * they land under /build.
 */
async function createMountPoints(rootfs: string, context: RunContext): Promise<void> {
  for (const mount of withEgress(context.options)) {
    const target = normalize(mount.sandbox);
    const underBuild = relative('/build', target);
    const inVolume = !underBuild.startsWith('..') && underBuild !== '';
    const path = inVolume ? join(context.volume, underBuild) : join(rootfs, target);
    await ensureMountPoint(mount.host, path);
    if (inVolume) await chown(path, context.lease.uid, context.lease.gid);
  }
}

interface Skeleton {
  rootfs: string;
  /** The ETC_FROM_HOST entries this host has. */
  etcFromHost: string[];
}

export interface OciConfigInput {
  rootfs: string;
  etcDir: string;
  etcFromHost: string[];
  volume: string;
  uid: number;
  gid: number;
  options: Pick<SandboxRunOptions, 'command' | 'env' | 'cwd' | 'mounts' | 'egress'>;
  limits: SandboxLimits;
}

/** The run's mounts, plus the egress proxy's socket for a fetch step. */
function withEgress(options: Pick<SandboxRunOptions, 'mounts' | 'egress'>): Mount[] {
  const mounts = options.mounts ?? [];
  return options.egress ? [...mounts, { host: options.egress.socket, sandbox: EGRESS_SOCKET, writable: true }] : mounts;
}

type OciMount = { destination: string; type: string; source: string; options?: string[] };

export function ociConfig(input: OciConfigInput): Record<string, unknown> {
  const { options, limits } = input;
  const bind = (source: string, destination: string, writable = false): OciMount => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', writable ? 'rw' : 'ro', 'nosuid', 'nodev'],
  });
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs' },
    bind('/usr', '/usr'),
    ...input.etcFromHost.map((name) => bind(`/etc/${name}`, `/etc/${name}`)),
    ...['passwd', 'group', 'hosts'].map((name) => bind(join(input.etcDir, name), `/etc/${name}`)),
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', `size=${limits.diskBytes}`] },
    { destination: SANDBOX_HOME, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=0755', `uid=${input.uid}`, `gid=${input.gid}`] },
    bind(input.volume, '/build', true),
    ...withEgress(options).map((mount: Mount) => bind(mount.host, mount.sandbox, mount.writable)),
  ];
  return {
    ociVersion: '1.0.0',
    process: {
      terminal: false,
      user: { uid: input.uid, gid: input.gid, additionalGids: [] },
      args: options.command,
      env: Object.entries(sandboxEnv(options.env)).map(([key, value]) => `${key}=${value}`),
      cwd: options.cwd,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
      rlimits: [
        { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
        { type: 'RLIMIT_NOFILE', hard: 65536, soft: 65536 },
      ],
    },
    root: { path: input.rootfs, readonly: true },
    hostname: 'kiln',
    mounts,
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount'].map((type) => ({ type })),
      resources: {
        memory: { limit: Math.floor(limits.memoryBytes) },
        pids: { limit: Math.floor(limits.pids) },
        cpu: { quota: Math.round(limits.cpus * 100_000), period: 100_000 },
      },
    },
  };
}
