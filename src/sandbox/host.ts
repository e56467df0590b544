import { lstat, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PlatformError } from '../errors.ts';
import { probeCgroups } from './cgroups.ts';
import type { CgroupProbe } from './cgroups.ts';
import { defaultCacheDir } from './native.ts';
import { UidPool } from './uids.ts';
import { removeOrphanVolumes } from './volume.ts';

/** Host-side settings shared by both sandbox implementations. */
export interface SandboxHostOptions {
  /**
   * Private state: uid locks, generated /etc files, staging volumes.
   * Must be reachable (o+x on every parent) by the sandbox uids.
   * Default: `<os tmpdir>/kiln-sandbox`.
   */
  stateDir?: string;
  /** Compiled helpers (seccomp filter, gVisor shim). Default: `~/.cache/kiln`; the services pass KILN_SANDBOX_CACHE_DIR. */
  cacheDir?: string;
  /** First host uid of the pool (default 200000) and pool size (default 64). */
  uidBase?: number;
  uidPoolSize?: number;
  /** false forces the rlimit fallback even where cgroup v1 works. */
  cgroups?: boolean;
}

export const SANDBOX_USER = 'kiln';
export const SANDBOX_HOME = '/home/kiln';

/** Host /etc entries the toolchains need; the rest of /etc (shadow, ssh keys...) stays out. */
export const ETC_FROM_HOST = ['alternatives', 'ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'localtime', 'nsswitch.conf', 'os-release'];
/** Top-level entries that are symlinks into /usr on merged-/usr systems, plain dirs elsewhere. */
export const ROOT_ENTRIES = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/** Defaults a toolchain expects; the caller's values win. Nothing comes from the host. */
export function sandboxEnv(env: Record<string, string>): Record<string, string> {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: SANDBOX_HOME,
    USER: SANDBOX_USER,
    LOGNAME: SANDBOX_USER,
    TMPDIR: '/tmp',
    LANG: 'C.UTF-8',
    ...env,
  };
}

export class SandboxHost {
  readonly stateDir: string;
  readonly cacheDir: string;
  readonly uids: UidPool;
  private readonly useCgroups: boolean;
  private cgroupProbe?: Promise<CgroupProbe>;
  private ready?: Promise<void>;
  private readonly etcDone = new Set<number>();

  constructor(options: SandboxHostOptions = {}) {
    this.stateDir = options.stateDir ?? join(tmpdir(), 'kiln-sandbox');
    this.cacheDir = options.cacheDir ?? defaultCacheDir();
    this.useCgroups = options.cgroups ?? true;
    this.uids = new UidPool({ lockDir: join(this.stateDir, 'uids'), base: options.uidBase, size: options.uidPoolSize });
  }

  /** Creates the state dir once and checks nobody else could have planted files in it. */
  prepare(): Promise<void> {
    this.ready ??= this.createStateDir().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async createStateDir(): Promise<void> {
    if (process.getuid?.() !== 0) {
      throw new PlatformError('sandbox_not_root', 'the sandbox needs root on the host: it switches to per-run uids, mounts tmpfs and manages cgroups');
    }
    await mkdir(this.stateDir, { recursive: true, mode: 0o755 });
    const stats = await lstat(this.stateDir);
    // A world-writable default location (/tmp) could have been pre-created by someone else.
    if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
      throw new PlatformError('sandbox_state_dir_unsafe', `${this.stateDir} must be a directory owned by root and writable only by it`);
    }
    await mkdir(this.volumesDir, { recursive: true, mode: 0o755 });
    await removeOrphanVolumes(this.volumesDir);
    await this.checkUidRange();
  }

  /** The pool's uids must belong to nobody: a real account could signal or read our sandboxes. */
  private async checkUidRange(): Promise<void> {
    const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
    const { base, size } = this.uids;
    for (const line of passwd.split('\n')) {
      const [name, , uid, gid] = line.split(':');
      const clash = [uid, gid].map(Number).find((id) => id >= base && id < base + size);
      if (clash !== undefined) {
        throw new PlatformError('sandbox_uid_conflict', `the sandbox uid range ${base}..${base + size - 1} contains ${clash}, used by the account "${name}"; configure another uidBase`);
      }
    }
  }

  get volumesDir(): string {
    return join(this.stateDir, 'volumes');
  }

  cgroups(): Promise<CgroupProbe> {
    if (!this.useCgroups) return Promise.resolve({ ok: false, reason: 'disabled by configuration' });
    this.cgroupProbe ??= probeCgroups();
    return this.cgroupProbe;
  }

  /**
   * A directory with passwd, group and hosts for one sandbox uid: tools such
   * as `whoami`, ssh-less git and some build scripts look the user up, and
   * the host's files (with every account, no shadow) must not be shown.
   */
  async etcDir(uid: number, gid: number): Promise<string> {
    const dir = join(this.stateDir, 'etc', String(uid));
    if (this.etcDone.has(uid)) return dir;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await writeOnce(join(dir, 'passwd'), passwd(uid, gid));
    await writeOnce(join(dir, 'group'), group(gid));
    await writeOnce(join(dir, 'hosts'), '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
    this.etcDone.add(uid);
    return dir;
  }
}

function passwd(uid: number, gid: number): string {
  return [
    'root:x:0:0:root:/root:/usr/sbin/nologin',
    `${SANDBOX_USER}:x:${uid}:${gid}:Kiln build:${SANDBOX_HOME}:/bin/sh`,
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
    '',
  ].join('\n');
}

function group(gid: number): string {
  return ['root:x:0:', `${SANDBOX_USER}:x:${gid}:`, 'nogroup:x:65534:', ''].join('\n');
}

/** Writes `content` unless the file already holds exactly it; atomic for concurrent runs. */
async function writeOnce(path: string, content: string): Promise<void> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === content) return;
  const partial = `${path}.${process.pid}.tmp`;
  await writeFile(partial, content, { mode: 0o644 });
  await rename(partial, path);
}
