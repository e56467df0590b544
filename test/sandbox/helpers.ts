import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pidsOfUid } from '../../src/sandbox/procs.ts';
import type { Sandbox, SandboxLimits, SandboxResult, SandboxRunOptions } from '../../src/sandbox/sandbox.ts';

export const TEST_LIMITS: SandboxLimits = {
  wallMs: 20_000,
  memoryBytes: 256 * 1024 ** 2,
  pids: 64,
  diskBytes: 64 * 1024 ** 2,
  logBytes: 1024 ** 2,
  cpus: 1,
};

export interface Captured {
  result: SandboxResult;
  output: string;
  outputBytes: number;
}

/** Runs `script` with /bin/sh -c and captures what the sandbox printed. */
export type ShOptions = Partial<Omit<SandboxRunOptions, 'limits'>> & { limits?: Partial<SandboxLimits> };

export async function sh(sandbox: Sandbox, workDir: string, script: string, extra: ShOptions = {}): Promise<Captured> {
  const chunks: Buffer[] = [];
  const { limits, ...rest } = extra;
  const result = await sandbox.run({
    command: ['/bin/sh', '-c', script],
    env: {},
    cwd: '/build',
    workDir,
    ...rest,
    limits: { ...TEST_LIMITS, ...limits },
    onOutput: (chunk) => chunks.push(chunk),
  });
  const output = Buffer.concat(chunks);
  return { result, output: output.toString('utf8'), outputBytes: output.length };
}

/** C programs used by the attack cases, compiled on the host with plain cc. */
const PROGRAMS: Record<string, string> = {
  // Touches every page so the memory is really used, not just reserved.
  eatmem: `#include <stdlib.h>
#include <string.h>
#include <stdio.h>
int main(void) {
  size_t chunk = 64UL << 20, total = 0;
  for (int i = 0; i < 64; i++) {            /* 64 x 64 MiB = 4 GiB */
    char *p = malloc(chunk);
    if (!p) { printf("malloc failed at %zu MiB\\n", total >> 20); return 3; }
    memset(p, 1, chunk);
    total += chunk;
  }
  printf("allocated %zu MiB\\n", total >> 20);
  return 0;
}`,
  // Each syscall the seccomp filter must refuse, with the errno it got.
  probe: `#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/sched.h>
static void report(const char *what, long rc) { printf("%s=%s\\n", what, rc < 0 ? strerrorname_np(errno) : "ok"); }
int main(void) {
  report("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
  report("socket_inet6", socket(AF_INET6, SOCK_STREAM, 0));
  report("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
  report("socket_unix", socket(AF_UNIX, SOCK_STREAM, 0));
  report("unshare_user", unshare(CLONE_NEWUSER));
  report("unshare_net", unshare(CLONE_NEWNET));
  report("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
  report("mount", mount("none", "/tmp", "tmpfs", 0, 0));
  report("bpf", syscall(SYS_bpf, 0, 0, 0));
  report("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
  report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
  report("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
  report("userfaultfd", syscall(SYS_userfaultfd, 0));
  struct clone_args args = { 0 };
  report("clone3", syscall(SYS_clone3, &args, sizeof args));
  report("clone_newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
  char ldt[16];
  report("modify_ldt", syscall(SYS_modify_ldt, 0, ldt, sizeof ldt));
  report("personality_no_aslr", syscall(SYS_personality, 0x0040000));
  report("personality_query", syscall(SYS_personality, 0xffffffff));
  report("pidfd_open", syscall(SYS_pidfd_open, getpid(), 0));
  return 0;
}`,
};

export interface Programs {
  dir: string;
  dispose(): Promise<void>;
}

/** Compiles the attack programs into a world-readable dir, to be mounted read-only. */
export async function compilePrograms(): Promise<Programs> {
  const dir = await mkdtemp(join(tmpdir(), 'kiln-attack-'));
  await chmod(dir, 0o755);
  for (const [name, source] of Object.entries(PROGRAMS)) {
    await writeFile(join(dir, `${name}.c`), source);
    execFileSync('cc', ['-O1', '-o', join(dir, name), join(dir, `${name}.c`)]);
  }
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** A TCP listener that records whether anything ever connected. */
export async function listen(host: string): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => server.listen(0, host, resolve).once('error', reject));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { port, connections: () => count, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Processes of any uid in [base, base + size). */
export async function survivors(base: number, size: number): Promise<number[]> {
  const found: number[] = [];
  for (let uid = base; uid < base + size; uid++) found.push(...(await pidsOfUid(uid)));
  return found;
}
