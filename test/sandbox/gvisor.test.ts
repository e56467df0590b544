import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GvisorSandbox, ociConfig } from '../../src/sandbox/gvisor.ts';
import { DEFAULT_LIMITS } from '../../src/sandbox/sandbox.ts';
import { createWorkDir } from '../../src/sandbox/volume.ts';
import { compilePrograms, listen, sh, survivors, TEST_LIMITS } from './helpers.ts';
import type { Captured, Programs } from './helpers.ts';

const UID_BASE = 220_000;
const UID_POOL = 4;
const SECRET = `kiln-gvisor-secret-${process.pid}-${Date.now()}`;

let root: string;
let sandbox: GvisorSandbox;
let programs: Programs;

before(async () => {
  process.env['KILN_TEST_SECRET'] = SECRET;
  root = await mkdtemp(join(tmpdir(), 'kiln-gvisor-test-'));
  await chmod(root, 0o755);
  sandbox = new GvisorSandbox({ stateDir: join(root, 'state'), uidBase: UID_BASE, uidPoolSize: UID_POOL });
  await sandbox.check();
  programs = await compilePrograms();
});

after(async () => {
  await programs?.dispose();
  await rm(root, { recursive: true, force: true });
});

async function withWork<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const work = await createWorkDir(root, 64 * 1024 ** 2);
  try {
    return await fn(work.path);
  } finally {
    await work.dispose();
  }
}

/** Like sh(), but the consumer blocks the event loop for a moment per chunk, as a loaded host would. */
async function slowReader(workDir: string, script: string): Promise<Captured> {
  const chunks: Buffer[] = [];
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const result = await sandbox.run({
    command: ['/bin/sh', '-c', script],
    env: {},
    cwd: '/build',
    workDir,
    limits: TEST_LIMITS,
    onOutput: (chunk) => {
      chunks.push(chunk);
      Atomics.wait(pause, 0, 0, 20);
    },
  });
  const output = Buffer.concat(chunks);
  return { result, output: output.toString('utf8'), outputBytes: output.length };
}

/** Host processes started by runsc for one of our runs (their bundle path names our root). */
async function runscLeftovers(): Promise<number> {
  let count = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(root)) count++;
  }
  return count;
}

describe('gVisor sandbox', () => {
  test('the OCI config has a read-only root, no capabilities and the work dir writable', () => {
    const config = ociConfig({
      rootfs: '/r',
      etcDir: '/e',
      etcFromHost: ['ld.so.cache'],
      volume: '/v',
      uid: 1,
      gid: 2,
      options: { command: ['/bin/true'], env: { A: 'b' }, cwd: '/build' },
      limits: DEFAULT_LIMITS,
    }) as { root: { readonly: boolean }; process: { capabilities: { bounding: string[] }; env: string[] }; mounts: Array<{ destination: string; options?: string[] }> };
    assert.equal(config.root.readonly, true);
    assert.deepEqual(config.process.capabilities.bounding, []);
    assert.ok(config.process.env.includes('A=b'));
    const build = config.mounts.find((mount) => mount.destination === '/build');
    assert.ok(build?.options?.includes('rw'));
    assert.ok(config.mounts.find((mount) => mount.destination === '/usr')?.options?.includes('ro'));
  });

  test('compiles and runs a C program; coreutils work despite the statx bug', () =>
    withWork(async (dir) => {
      await writeFile(join(dir, 'hello.c'), '#include <stdio.h>\nint main(void){puts("hello from gvisor");return 0;}\n');
      const { result, output } = await sh(sandbox, dir, 'cc -o hello hello.c && ./hello && ls -l hello >/dev/null && stat -c %s hello.c');
      assert.equal(result.exitCode, 0, output);
      assert.match(output, /hello from gvisor/);
      assert.ok((await stat(join(dir, 'hello'))).isFile());
    }));

  test('secrets and the network stay out of reach', async () => {
    const listener = await listen('127.0.0.1');
    try {
      await withWork(async (dir) => {
        const script = `cat /etc/shadow; ls /root; ls /work; env; echo x > /dev/tcp/127.0.0.1/${listener.port} && echo CONNECTED; touch /usr/x /x`;
        const { output } = await sh(sandbox, dir, '', { command: ['/bin/bash', '-c', script] });
        assert.ok(!output.includes(SECRET));
        assert.doesNotMatch(output, /CONNECTED/);
        assert.match(output, /\/etc\/shadow: No such file or directory/);
      });
      assert.equal(listener.connections(), 0);
    } finally {
      await listener.close();
    }
  });

  test('an infinite loop is killed by the wall limit and nothing of runsc survives', () =>
    withWork(async (dir) => {
      const { result } = await sh(sandbox, dir, 'setsid sleep 1000 & while :; do :; done', { limits: { wallMs: 2000 } });
      assert.equal(result.limitHit, 'wall');
      assert.equal(await runscLeftovers(), 0);
      assert.deepEqual(await survivors(UID_BASE, UID_POOL), []);
    }));

  test('allocating 4 GiB ends on the memory limit', () =>
    withWork(async (dir) => {
      const { result, output } = await sh(sandbox, dir, '/opt/attack/eatmem', { mounts: [{ host: programs.dir, sandbox: '/opt/attack' }], limits: { memoryBytes: 512 * 1024 ** 2 } });
      assert.equal(result.limitHit, 'memory', `${JSON.stringify(result)} ${output}`);
    }));

  test('writing 5 GB into /build ends on the disk limit', () =>
    withWork(async (dir) => {
      const { result } = await sh(sandbox, dir, 'dd if=/dev/zero of=/build/big bs=1M count=5000');
      assert.equal(result.limitHit, 'disk', JSON.stringify(result));
    }));

  test('the log cap works as with bubblewrap', () =>
    withWork(async (dir) => {
      const flood = await sh(sandbox, dir, 'head -c 100000000 /dev/zero | tr "\\0" x');
      assert.equal(flood.result.limitHit, 'log', JSON.stringify(flood.result));
      assert.ok(flood.outputBytes <= 1024 ** 2);
    }));

  // Issue 15: runsc imports the run's stdout and stderr as host descriptors and
  // marks each non-blocking; when both were one open file description, the
  // second import saw the first's O_NONBLOCK and the sandboxed program got
  // EAGAIN as soon as the supervisor fell behind (a loaded host). A reader held
  // back on purpose makes "falls behind" certain instead of a matter of load.
  for (const stream of ['stdout', 'stderr'] as const) {
    test(`a flood on ${stream} reaches the log cap while the supervisor reads slowly`, () =>
      withWork(async (dir) => {
        const redirect = stream === 'stderr' ? ' >&2' : '';
        const { result, outputBytes, output } = await slowReader(dir, `head -c 100000000 /dev/zero | tr "\\0" x${redirect}`);
        assert.equal(result.limitHit, 'log', `${JSON.stringify(result)} ${output.replace(/x+/g, 'x…').slice(-500)}`);
        assert.ok(outputBytes <= 1024 ** 2);
      }));
  }

  test('the sandboxed program gets a blocking stdout and stderr', () =>
    withWork(async (dir) => {
      // The shell's own descriptors ($$), not those of the command substitution. fdinfo's flags are octal; O_NONBLOCK is 04000.
      const { result, output } = await sh(sandbox, dir, 'for fd in 1 2; do echo "fd$fd $(grep ^flags: /proc/$$/fdinfo/$fd)"; done');
      assert.equal(result.exitCode, 0, output);
      const flags = [...output.matchAll(/^fd(\d) flags:\s+(\d+)$/gm)].map(([, fd, octal]) => [fd, (parseInt(octal ?? '0', 8) & 0o4000) !== 0]);
      assert.deepEqual(flags, [['1', false], ['2', false]], output);
    }));

  test('cancel works as with bubblewrap', () =>
    withWork(async (dir) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 500);
      const cancelled = await sh(sandbox, dir, 'sleep 100', { signal: controller.signal });
      assert.equal(cancelled.result.cancelled, true);
      assert.equal(cancelled.result.exitCode, null, 'killed, not ended by itself');
      assert.equal(await runscLeftovers(), 0);
    }));
});
