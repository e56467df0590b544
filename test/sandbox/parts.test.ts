import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { PlatformError } from '../../src/errors.ts';
import { bwrapArgs, waiterRequest } from '../../src/sandbox/bubblewrap.ts';
import { killPollMs, parseCgroupMounts, parseProcCgroup } from '../../src/sandbox/cgroups.ts';
import { sandboxEnv } from '../../src/sandbox/host.ts';
import { compileNative } from '../../src/sandbox/native.ts';
import { handOver } from '../../src/sandbox/ownership.ts';
import { DEFAULT_LIMITS } from '../../src/sandbox/sandbox.ts';
import { seccompProgram } from '../../src/sandbox/seccomp.ts';
import { launcherScript, warmLauncherScript } from '../../src/sandbox/supervise.ts';
import { UidPool } from '../../src/sandbox/uids.ts';
import { createWorkDir, isCapped, looksFull } from '../../src/sandbox/volume.ts';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'kiln-sandbox-parts-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('uid pool', () => {
  test('concurrent leases are distinct, exhaustion is a PlatformError, release frees', async () => {
    const pool = new UidPool({ lockDir: join(root, 'locks-a'), base: 250_000, size: 3 });
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()]);
    assert.deepEqual(leases.map((lease) => lease.uid).sort(), [250_000, 250_001, 250_002]);
    await assert.rejects(pool.acquire(), (error: unknown) => error instanceof PlatformError && error.code === 'sandbox_busy');
    await leases.find((lease) => lease.uid === 250_001)?.release();
    const again = await pool.acquire();
    assert.equal(again.uid, 250_001);
    assert.equal(again.reclaimed, false);
    for (const lease of [...leases, again]) await lease.release();
  });

  test('another live process keeps its lock; a dead one loses it', async () => {
    const lockDir = join(root, 'locks-b');
    await mkdir(lockDir, { recursive: true });
    await writeFile(join(lockDir, 'uid-251000'), '1'); // pid 1 is alive
    await writeFile(join(lockDir, 'uid-251001'), '999999999'); // no such pid
    const pool = new UidPool({ lockDir, base: 251_000, size: 2 });
    const lease = await pool.acquire();
    assert.equal(lease.uid, 251_001);
    assert.equal(lease.reclaimed, true);
    assert.equal(await readFile(join(lockDir, 'uid-251001'), 'utf8'), String(process.pid));
    await lease.release();
  });
});

describe('cgroup parsing', () => {
  test('reads our own v1 groups and the hierarchy mount points', () => {
    const own = parseProcCgroup('9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/svc\n1:pids:/\n0::/\n');
    assert.equal(own.get('memory'), '/process_api/abc');
    assert.equal(own.get('cpu'), '/svc');
    assert.equal(own.get('pids'), '/');
    const mounts = parseCgroupMounts(
      '30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory\n' +
        '31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:10 - cgroup cgroup rw,cpu,cpuacct\n' +
        '32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n',
    );
    assert.equal(mounts.get('memory'), '/sys/fs/cgroup/memory');
    assert.equal(mounts.get('cpu'), '/sys/fs/cgroup/cpu,cpuacct');
    assert.equal(mounts.has('pids'), false);
  });

  test('the sweep looks again after 1 ms first, then backs off to every 5 ms', () => {
    assert.deepEqual(Array.from({ length: 7 }, (_, round) => killPollMs(round)), [1, 1, 2, 4, 5, 5, 5]);
  });
});

describe('launcher and bwrap arguments', () => {
  test('the launcher enters every cgroup before exec and closes stray fds', () => {
    const script = launcherScript({ cgroupProcs: ['/a', '/b'], ulimits: [['-c', 0]], extraFds: [7, 'collect'] });
    assert.match(script, /echo \$\$ > "\$1"\necho \$\$ > "\$2"\nshift 2/);
    assert.match(script, /-gt 5 \]/);
    assert.ok(script.indexOf('shift 2') < script.indexOf('exec "$@"'));
  });

  test('with an output relay, stderr is a second open of the relay pipe and the relay holds no extra fd', () => {
    const shared = launcherScript({ cgroupProcs: [], ulimits: [], extraFds: [7, 'collect'] });
    assert.match(shared, /exec "\$@" 2>&1$/);
    const relayed = launcherScript({ cgroupProcs: [], ulimits: [], extraFds: [7, 'collect'], outputRelay: true });
    assert.match(relayed, /exec > >\(exec cat 4>&- 5>&-\)\nexec "\$@" 2>\/proc\/self\/fd\/1$/);
    assert.doesNotMatch(relayed, /2>&1/);
  });

  test('bwrap arguments: isolation flags, read-only root last, no host environment', () => {
    const args = bwrapArgs({
      layout: [{ name: 'bin', symlink: 'usr/bin' }],
      etcDir: '/state/etc/1',
      options: { env: { CARGO_HOME: '/build/.cargo' }, cwd: '/build', mounts: [{ host: '/opt/tool', sandbox: '/opt/tool' }] },
      limits: { diskBytes: 1024 },
    });
    for (const flag of ['--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session', '--clearenv']) assert.ok(args.includes(flag), flag);
    const rootReadOnly = args.findIndex((arg, index) => arg === '--remount-ro' && args[index + 1] === '/');
    assert.ok(rootReadOnly > args.lastIndexOf('--ro-bind') && rootReadOnly > args.lastIndexOf('--tmpfs'));
    assert.ok(args.join(' ').includes('--tmpfs /dev/shm --remount-ro /dev'));
    assert.ok(args.indexOf('--clearenv') < args.indexOf('--setenv'));
    assert.deepEqual(args.slice(args.indexOf('--bind-fd'), args.indexOf('--bind-fd') + 3), ['--bind-fd', '6', '/build']);
    assert.ok(!args.some((arg) => arg.includes('shadow')));
    assert.equal(sandboxEnv({ HOME: '/build' })['HOME'], '/build');
    assert.equal(sandboxEnv({})['PATH'], '/usr/local/bin:/usr/bin:/bin');
  });
});

describe('prepared sandboxes (decision 0034)', () => {
  test('a prepared sandbox binds the slot\'s dir at /build instead of a work dir fd, with the same flags otherwise', () => {
    const input = { layout: [], etcDir: '/state/etc/1', options: { env: {}, cwd: '/', mounts: [{ host: '/opt/tool', sandbox: '/opt/tool' }] }, limits: { diskBytes: 1024 } };
    const fresh = bwrapArgs(input);
    const prepared = bwrapArgs({ ...input, buildDir: '/state/volumes/slot' });
    assert.ok(!prepared.includes('--bind-fd'));
    assert.deepEqual(prepared.slice(prepared.indexOf('/state/volumes/slot') - 1, prepared.indexOf('/state/volumes/slot') + 2), ['--bind', '/state/volumes/slot', '/build']);
    const withoutBuild = (args: string[]): string[] => args.filter((arg) => !['--bind', '--bind-fd', '6', '/state/volumes/slot', '/build'].includes(arg));
    assert.deepEqual(withoutBuild(prepared), withoutBuild(fresh));
  });

  test('the waiter\'s request: cwd, the variable count, the whole environment with defaults, then the command', () => {
    const fields = waiterRequest({ cwd: '/build/x', env: { HOME: '/build', A: 'b=c' }, command: ['/bin/sh', '-c', 'echo "$A"'] }).split('\0');
    assert.equal(fields.pop(), '', 'every field ends with a NUL');
    const count = Number(fields[1]);
    const env = fields.slice(2, 2 + count);
    assert.equal(fields[0], '/build/x');
    assert.ok(env.includes('HOME=/build') && env.includes('A=b=c') && env.includes('PATH=/usr/local/bin:/usr/bin:/bin'));
    assert.deepEqual(fields.slice(2 + count), ['/bin/sh', '-c', 'echo "$A"']);
  });

  test('a prepared launcher enters its groups like a fresh one but leaves the status pipe to the waiter', () => {
    const spec = { cgroupProcs: ['/a'], ulimits: [['-c', 0]] as Array<[string, number]>, extraFds: [7, 'collect'] as Array<number | 'collect'> };
    const script = warmLauncherScript(spec);
    assert.match(script, /echo \$\$ > "\$1"\nshift 1/);
    assert.doesNotMatch(script, /printf L/);
    assert.doesNotMatch(script, /exec 3>&-/);
    assert.match(launcherScript(spec), /exec 3>&-/);
  });
});

describe('volumes and ownership', () => {
  test('a work dir from createWorkDir is capped; a plain dir is not', async () => {
    const work = await createWorkDir(root, 8 * 1024 ** 2);
    try {
      assert.equal(isCapped(work.path, 8 * 1024 ** 2), true);
      assert.equal(isCapped(root, DEFAULT_LIMITS.diskBytes), false);
      assert.equal(await looksFull(work.path), false);
      await writeFile(join(work.path, 'fill'), Buffer.alloc(8 * 1024 ** 2 - 4096)).catch(() => undefined);
      assert.equal(await looksFull(work.path), true);
    } finally {
      await work.dispose();
    }
    await assert.rejects(lstat(work.path));
  });

  test('a work dir is a nosuid, nodev tmpfs; dispose unmounts it, even while a file in it is open', async () => {
    const mountOf = async (path: string) => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((line) => line.split(' ')[4] === path);
    const work = await createWorkDir(root, 8 * 1024 ** 2);
    const line = await mountOf(work.path);
    assert.ok(line, 'the work dir is a mount point');
    assert.match(line, / - tmpfs kiln-work /);
    const flags = (line.split(' ')[5] ?? '').split(',');
    assert.ok(flags.includes('nosuid') && flags.includes('nodev'), `mount flags: ${flags.join(',')}`);
    // A file held open makes the mount busy: it is detached rather than left mounted.
    await writeFile(join(work.path, 'held'), 'x');
    const held = await open(join(work.path, 'held'), 'r');
    try {
      await work.dispose();
    } finally {
      await held.close();
    }
    assert.equal(await mountOf(work.path), undefined, 'unmounted');
    await assert.rejects(lstat(work.path));
  });

  test('disposing a work dir twice, or one already unmounted, is not an error', async () => {
    const work = await createWorkDir(root, 8 * 1024 ** 2);
    await work.dispose();
    await work.dispose();
    await assert.rejects(lstat(work.path));
  });

  test('handOver changes every entry, symlinks themselves, never their targets', async () => {
    const dir = await mkdtemp(join(root, 'own-'));
    const outside = join(root, 'outside.txt');
    await writeFile(outside, 'host file');
    // A link to a host directory must not be walked into.
    const outsideDir = await mkdtemp(join(root, 'outside-dir-'));
    await writeFile(join(outsideDir, 'host-file'), 'host file');
    await mkdir(join(dir, 'a/b'), { recursive: true });
    await writeFile(join(dir, 'a/b/file'), 'x');
    await symlink(outside, join(dir, 'a/link'));
    await symlink(outsideDir, join(dir, 'a/dir-link'));
    await handOver(dir, 252_000, 252_000);
    assert.equal((await stat(join(dir, 'a/b/file'))).uid, 252_000);
    assert.equal((await lstat(join(dir, 'a/link'))).uid, 252_000);
    assert.equal((await lstat(join(dir, 'a/dir-link'))).uid, 252_000);
    assert.equal((await stat(outside)).uid, 0);
    assert.equal((await stat(outsideDir)).uid, 0);
    assert.equal((await stat(join(outsideDir, 'host-file'))).uid, 0);
    // A large tree takes the `chown -R -h` path, with the same guarantees.
    for (let i = 0; i < 300; i++) await writeFile(join(dir, `f${i}`), '');
    await handOver(dir, 252_001, 252_001);
    assert.equal((await stat(join(dir, 'f299'))).uid, 252_001);
    assert.equal((await lstat(join(dir, 'a/link'))).uid, 252_001);
    assert.equal((await stat(outside)).uid, 0);
    assert.equal((await stat(join(outsideDir, 'host-file'))).uid, 0);
  });
});

describe('native helpers', () => {
  test('the seccomp program is a non-empty BPF program', async () => {
    const program = await readFile(await seccompProgram(join(root, 'cache')));
    assert.ok(program.length > 64 && program.length % 8 === 0);
  });

  test('a missing header becomes a PlatformError naming the package to install', async () => {
    const source = join(root, 'broken.c');
    await writeFile(source, '#include <kiln-no-such-header.h>\nint main(void){return 0;}\n');
    await assert.rejects(
      compileNative({ source: pathToFileURL(source), name: 'broken', flags: [], needs: 'libkiln-dev', cacheDir: join(root, 'cache') }),
      (error: unknown) => error instanceof PlatformError && error.code === 'sandbox_native_build_failed' && /install libkiln-dev/.test(error.message),
    );
  });
});
