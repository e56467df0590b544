import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PlatformError } from '../../src/errors.ts';
import { BubblewrapSandbox } from '../../src/sandbox/bubblewrap.ts';
import { createSandbox } from '../../src/sandbox/index.ts';
import { createWorkDir } from '../../src/sandbox/volume.ts';
import { compilePrograms, listen, sh, survivors, TEST_LIMITS } from './helpers.ts';
import type { Programs } from './helpers.ts';

// A uid range and state dir of our own, so parallel test files never meet.
const UID_BASE = 210_000;
const UID_POOL = 4;
const SECRET = `kiln-test-secret-${process.pid}-${Date.now()}`;

let root: string;
let sandbox: BubblewrapSandbox;
let programs: Programs;

before(async () => {
  process.env['KILN_TEST_SECRET'] = SECRET;
  root = await mkdtemp(join(tmpdir(), 'kiln-bwrap-test-'));
  await chmod(root, 0o755);
  sandbox = new BubblewrapSandbox({ stateDir: join(root, 'state'), uidBase: UID_BASE, uidPoolSize: UID_POOL });
  await sandbox.check();
  programs = await compilePrograms();
});

after(async () => {
  await programs?.dispose();
  await rm(root, { recursive: true, force: true });
});

/** Every case gets a fresh capped work dir, like a build would. */
async function withWork<T>(fn: (dir: string) => Promise<T>, diskBytes = 64 * 1024 ** 2): Promise<T> {
  const work = await createWorkDir(root, diskBytes);
  try {
    return await fn(work.path);
  } finally {
    await work.dispose();
  }
}

const attackMount = (): { host: string; sandbox: string }[] => [{ host: programs.dir, sandbox: '/opt/attack' }];

describe('bubblewrap sandbox: normal work', () => {
  test('compiles a C file into /build and runs it; the worker reads the result', () =>
    withWork(async (dir) => {
      await writeFile(join(dir, 'hello.c'), '#include <stdio.h>\nint main(void){puts("hello from the sandbox");return 0;}\n');
      const { result, output } = await sh(sandbox, dir, 'cc -o hello hello.c && ./hello && whoami && echo "$HOME"');
      assert.equal(result.exitCode, 0, output);
      assert.equal(result.limitHit, undefined);
      assert.match(output, /hello from the sandbox\nkiln\n\/home\/kiln\n/);
      assert.ok((await stat(join(dir, 'hello'))).isFile());
    }));

  test('reports the exit code of the command', () =>
    withWork(async (dir) => {
      const { result } = await sh(sandbox, dir, 'exit 7');
      assert.equal(result.exitCode, 7);
      assert.equal(result.limitHit, undefined);
      assert.equal(result.cancelled, false);
    }));

  test('createSandbox("bubblewrap") runs clang', () =>
    withWork(async (dir) => {
      const made = createSandbox('bubblewrap', { stateDir: join(root, 'state'), uidBase: UID_BASE, uidPoolSize: UID_POOL });
      try {
        const { result, output } = await sh(made, dir, '/usr/bin/clang --version');
        assert.equal(result.exitCode, 0, output);
        assert.match(output, /clang version/);
      } finally {
        // Its warm pool holds uids of the shared range until closed.
        await made.close?.();
      }
    }));

  test('a work dir whose parent shuts other users out is a platform failure naming that parent, not an exit code', async () => {
    const closed = await mkdtemp(join(root, 'closed-'));
    await chmod(closed, 0o700);
    const work = await createWorkDir(closed, 64 * 1024 ** 2);
    try {
      await assert.rejects(
        sh(sandbox, work.path, 'true'),
        (error: unknown) => error instanceof PlatformError && error.code === 'sandbox_start_failed' && error.message.includes(`${closed} lets no other user search it`),
      );
    } finally {
      await work.dispose();
    }
  });

  test("a mount bwrap cannot set up is a platform failure, not the command's exit code", async () => {
    // The run's uid cannot reach a source under a 0700 directory: bwrap fails while mounting, after it reported its child.
    const closed = await mkdtemp(join(root, 'closed-mount-'));
    await mkdir(join(closed, 'tool'));
    await chmod(closed, 0o700);
    await withWork((dir) =>
      assert.rejects(
        sh(sandbox, dir, 'true', { mounts: [{ host: join(closed, 'tool'), sandbox: '/opt/tool' }] }),
        (error: unknown) => error instanceof PlatformError && error.code === 'sandbox_start_failed' && /could not set up the sandbox/.test(error.message),
      ),
    );
  });

  test("a command that prints bwrap's messages and exits 1 is still the command's failure", () =>
    withWork(async (dir) => {
      const { result, output } = await sh(sandbox, dir, 'echo "bwrap: Can\'t find source path /nowhere: No such file or directory" >&2; exit 1');
      assert.equal(result.exitCode, 1);
      assert.match(output, /bwrap: Can't find source path/);
    }));

  test("a command cannot write the set-up mark: its descriptor is closed before the command runs", () =>
    withWork(async (dir) => {
      // Were fd 8 still open, the extra bytes would spoil the mark and make the user's exit a platform failure.
      const { result, output } = await sh(sandbox, dir, 'printf L >&8 2>/dev/null && echo wrote; printf X >&8 2>/dev/null; exit 3');
      assert.equal(result.exitCode, 3);
      assert.doesNotMatch(output, /wrote/);
    }));

  test("a missing command is the run's exit code 1 with bwrap's message, as before", () =>
    withWork(async (dir) => {
      const chunks: Buffer[] = [];
      const result = await sandbox.run({ command: ['kiln-no-such-command'], env: {}, cwd: '/build', workDir: dir, limits: TEST_LIMITS, onOutput: (chunk) => chunks.push(chunk) });
      assert.equal(result.exitCode, 1);
      assert.match(Buffer.concat(chunks).toString(), /execvp kiln-no-such-command: No such file or directory/);
    }));

  test('two concurrent runs both succeed under different uids', async () => {
    const [a, b] = await Promise.all([withWork((dir) => sh(sandbox, dir, 'id -u; sleep 0.3')), withWork((dir) => sh(sandbox, dir, 'id -u; sleep 0.3'))]);
    assert.equal(a.result.exitCode, 0);
    assert.equal(b.result.exitCode, 0);
    assert.notEqual(a.output.trim(), b.output.trim());
  });
});

describe('bubblewrap sandbox: attack corpus', () => {
  test('host secrets are absent: /etc/shadow, /root, /work, the environment', () =>
    withWork(async (dir) => {
      const script = [
        'cat /etc/shadow && echo LEAK-shadow',
        'ls /root && echo LEAK-root',
        'ls /work && echo LEAK-work',
        'env',
        'cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n"',
        'ls /etc',
        'touch /usr/evil && echo LEAK-usr-writable',
        'touch /evil && echo LEAK-root-writable',
      ].join('; ');
      const { output } = await sh(sandbox, dir, script);
      assert.doesNotMatch(output, /LEAK-/);
      assert.ok(!output.includes(SECRET), 'the secret env var leaked');
      assert.match(output, /\/etc\/shadow: No such file or directory/);
      assert.match(output, /\/root': No such file or directory/);
      assert.match(output, /\/work': No such file or directory/);
      assert.match(output, /Read-only file system/);
    }));

  test('no network: connections to 127.0.0.1 and ::1 listeners never arrive', async () => {
    const v4 = await listen('127.0.0.1');
    const v6 = await listen('::1');
    try {
      await withWork(async (dir) => {
        const script = `echo x > /dev/tcp/127.0.0.1/${v4.port} && echo CONNECTED4; echo x > /dev/tcp/::1/${v6.port} && echo CONNECTED6; exit 0`;
        const { result, output } = await sh(sandbox, dir, '', { command: ['/bin/bash', '-c', script] });
        assert.equal(result.exitCode, 0);
        assert.doesNotMatch(output, /CONNECTED/);
        assert.match(output, /Address family not supported/);
      });
      assert.equal(v4.connections(), 0);
      assert.equal(v6.connections(), 0);
    } finally {
      await v4.close();
      await v6.close();
    }
  });

  test('seccomp refuses namespaces, ptrace, bpf, io_uring, keyrings, mount, perf, userfaultfd, modify_ldt, personality changes, pidfd_open; clone3 is ENOSYS', () =>
    withWork(async (dir) => {
      const { result, output } = await sh(sandbox, dir, '/opt/attack/probe', { mounts: attackMount() });
      assert.equal(result.exitCode, 0, output);
      const got = Object.fromEntries(output.trim().split('\n').map((line) => line.split('=') as [string, string]));
      assert.equal(got['socket_unix'], 'ok');
      for (const family of ['socket_inet', 'socket_inet6', 'socket_netlink']) assert.equal(got[family], 'EAFNOSUPPORT', family);
      for (const call of ['unshare_user', 'unshare_net', 'ptrace', 'mount', 'bpf', 'io_uring_setup', 'keyctl', 'perf_event_open', 'userfaultfd', 'clone_newns', 'modify_ldt', 'personality_no_aslr', 'pidfd_open']) {
        assert.equal(got[call], 'EPERM', `${call}: ${output}`);
      }
      assert.equal(got['personality_query'], 'ok', 'reading the personality stays allowed');
      assert.equal(got['clone3'], 'ENOSYS');
    }));

  test('fork bomb ends on the pids limit', () =>
    withWork(async (dir) => {
      const { result, output } = await sh(sandbox, dir, 'while :; do sleep 100 & done');
      assert.equal(result.limitHit, 'pids', `${JSON.stringify(result)} ${output.slice(-300)}`);
      assert.ok(result.notes.some((note) => note.includes('process limit')));
    }));

  test('allocating 4 GiB ends on the memory limit', () =>
    withWork(async (dir) => {
      const { result, output } = await sh(sandbox, dir, '/opt/attack/eatmem', { mounts: attackMount() });
      assert.equal(result.limitHit, 'memory', `${JSON.stringify(result)} ${output}`);
      assert.doesNotMatch(output, /allocated 4096 MiB/);
    }));

  test('writing 5 GB into /build ends on the disk limit, and the host disk is untouched', () =>
    withWork(async (dir) => {
      const before = await statfs('/');
      const { result } = await sh(sandbox, dir, 'dd if=/dev/zero of=/build/big bs=1M count=5000');
      assert.equal(result.limitHit, 'disk', JSON.stringify(result));
      assert.ok((await stat(join(dir, 'big'))).size <= 64 * 1024 ** 2);
      const afterStats = await statfs('/');
      assert.ok((before.bavail - afterStats.bavail) * afterStats.bsize < 512 * 1024 ** 2, 'the host disk filled up');
    }));

  test('writing 5 GB into /tmp ends on the disk limit', () =>
    withWork(async (dir) => {
      const { result } = await sh(sandbox, dir, 'dd if=/dev/zero of=/tmp/big bs=1M count=5000', { limits: { memoryBytes: 512 * 1024 ** 2 } });
      assert.equal(result.limitHit, 'disk', JSON.stringify(result));
    }));

  test('/dev is read-only and /dev/shm is capped', () =>
    withWork(async (dir) => {
      const { result, output } = await sh(sandbox, dir, 'echo x > /dev/evil && echo LEAK-dev; dd if=/dev/zero of=/dev/shm/big bs=1M count=5000');
      assert.doesNotMatch(output, /LEAK-dev/);
      assert.match(output, /Read-only file system/);
      assert.equal(result.limitHit, 'disk', output);
    }));

  test('an infinite loop is killed by the wall limit', () =>
    withWork(async (dir) => {
      const { result } = await sh(sandbox, dir, 'while :; do :; done', { limits: { wallMs: 1000 } });
      assert.equal(result.limitHit, 'wall');
      assert.equal(result.exitCode, null);
      assert.deepEqual(await survivors(UID_BASE, UID_POOL), []);
    }));

  test('a setsid/nohup daemon does not survive the run', () =>
    withWork(async (dir) => {
      const { result } = await sh(sandbox, dir, `setsid nohup sleep ${DAEMON_SECONDS} >/dev/null 2>&1 & sleep 0.2; echo started`);
      assert.equal(result.exitCode, 0);
      assert.deepEqual(await survivors(UID_BASE, UID_POOL), []);
      assert.equal(await hostSleepers(), 0, `a sleep ${DAEMON_SECONDS} survived on the host`);
    }));

  test('100 MB of output ends on the log limit; the caller sees at most logBytes', () =>
    withWork(async (dir) => {
      const { result, outputBytes } = await sh(sandbox, dir, 'head -c 100000000 /dev/zero | tr "\\0" x');
      assert.equal(result.limitHit, 'log');
      assert.ok(outputBytes <= 1024 ** 2, `got ${outputBytes} bytes`);
    }));

  test('aborting cancels the run and kills its processes', () =>
    withWork(async (dir) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      const { result } = await sh(sandbox, dir, 'sleep 100', { signal: controller.signal });
      assert.equal(result.cancelled, true);
      assert.equal(result.limitHit, undefined);
      assert.equal(result.exitCode, null, 'killed, not ended by itself');
      assert.deepEqual(await survivors(UID_BASE, UID_POOL), []);
    }));

  test('a normal build still succeeds right after the attacks', () =>
    withWork(async (dir) => {
      await writeFile(join(dir, 'main.c'), 'int main(void){return 0;}\n');
      const { result, output } = await sh(sandbox, dir, 'cc -o main main.c && ./main');
      assert.equal(result.exitCode, 0, output);
      assert.deepEqual(result.notes, []);
    }));
});

describe('bubblewrap sandbox: fallbacks', () => {
  test('an uncapped work dir is staged through a capped tmpfs and results come back', async () => {
    const dir = await mkdtemp(join(root, 'plain-'));
    await writeFile(join(dir, 'input.txt'), 'source\n');
    const { result, output } = await sh(sandbox, dir, 'cat input.txt > output.txt && dd if=/dev/zero of=big bs=1M count=5000');
    assert.equal(result.limitHit, 'disk', output);
    assert.ok(result.notes.some((note) => note.includes('staged')));
    assert.equal(await readFile(join(dir, 'output.txt'), 'utf8'), 'source\n');
    assert.ok((await stat(join(dir, 'big'))).size <= 64 * 1024 ** 2);
  });

  test('without cgroups: rlimits, a note, and still no survivors', () =>
    withWork(async (dir) => {
      const plain = new BubblewrapSandbox({ stateDir: join(root, 'state'), uidBase: UID_BASE, uidPoolSize: UID_POOL, cgroups: false });
      const ok = await sh(plain, dir, 'setsid nohup sleep 1000 >/dev/null 2>&1 & echo fine');
      assert.equal(ok.result.exitCode, 0);
      assert.ok(ok.result.notes.some((note) => note.startsWith('cgroups unavailable: falling back to rlimits')));
      assert.deepEqual(await survivors(UID_BASE, UID_POOL), []);
      const bomb = await sh(plain, dir, 'while :; do sleep 100 & done', { limits: { wallMs: 5000 } });
      assert.notEqual(bomb.result.exitCode, 0);
      assert.match(bomb.output, /fork|Resource temporarily unavailable/i);
      const eat = await sh(plain, dir, '/opt/attack/eatmem', { mounts: attackMount() });
      assert.match(eat.output, /malloc failed/);
    }));
});

/**
 * The daemon's sleep, counted on the whole host: a duration no other test file uses, so a sleeper
 * another suite plants at the same moment (warm-pool's, running in parallel) is not counted.
 */
const DAEMON_SECONDS = '1000.31';

async function hostSleepers(): Promise<number> {
  let count = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline === `sleep\x00${DAEMON_SECONDS}\x00`) count++;
  }
  return count;
}
