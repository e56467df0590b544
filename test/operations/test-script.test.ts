/**
 * `npm test` (scripts/test.sh) starts PostgreSQL and Ceph for the suites and
 * must stop them on every way out: it once `exec`ed the test runner, so its
 * EXIT trap never ran and both servers were found running hours later
 * (issue 15). Here the real script runs in a scratch copy of the repository
 * layout where set-up, the service scripts, `npx` and `node` are stubs that
 * record what happened: a unit test of the script's exit paths, with no
 * server and no real test run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const SCRIPT = new URL('../../scripts/test.sh', import.meta.url).pathname;

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  events: string[];
}

interface Scenario {
  /** Exit status of the type check (`npx tsc`). */
  tscStatus?: number;
  /** What the test runner (`node`) does: exit with this status, or wait to be interrupted. */
  runner: number | 'wait';
  /** Signal sent to the script's process group once the runner (or the type check) is running. */
  interruptWith?: NodeJS.Signals;
  /** The services' start scripts are still running when the interrupt or the failure comes (and the type check takes a moment). */
  slowStart?: boolean;
}

let scratch: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kiln-test-script-'));
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A repository copy holding the real scripts/test.sh and stubs for everything it calls. */
async function layout(name: string, scenario: Scenario): Promise<{ root: string; log: string }> {
  const root = join(scratch, name);
  const log = join(root, 'events.log');
  for (const dir of ['scripts/services', 'bin', 'test']) await mkdir(join(root, dir), { recursive: true });
  await copyFile(SCRIPT, join(root, 'scripts/test.sh'));
  const record = (event: string) => `echo "${event}" >> '${log}'`;
  const startDelay = scenario.slowStart ? 'sleep 2' : ':';
  // A real type check dies of the Ctrl-C it gets with the group; so does this one (bash ignores an
  // interrupt that its foreground child survived, so a stub that exits at once would swallow it).
  const checkDelay = scenario.slowStart ? 'sleep 1' : ':';
  const stubs: Record<string, string> = {
    'scripts/setup.sh': ':',
    'scripts/services/start-postgres.sh': `${record('start postgres')}\n${startDelay}\necho DATABASE_URL=postgres://stub\n${record('started postgres')}`,
    'scripts/services/start-ceph.sh': `${record('start ceph')}\n${startDelay}\nprintf '%s\\n' S3_ENDPOINT=http://stub S3_BUCKET=b S3_ACCESS_KEY_ID=k S3_SECRET_ACCESS_KEY=s S3_REGION=r\n${record('started ceph')}`,
    'scripts/services/stop-postgres.sh': record('stop postgres'),
    'scripts/services/stop-ceph.sh': record('stop ceph'),
    'bin/npx': `${record('npx $1')}\n${checkDelay}\n[ "$1" = tsc ] && exit ${scenario.tscStatus ?? 0}\nexit 0`,
    'bin/node': scenario.runner === 'wait' ? `${record('runner')}\nexec sleep 60` : `${record('runner')}\nexit ${scenario.runner}`,
  };
  for (const [path, body] of Object.entries(stubs)) {
    await writeFile(join(root, path), `#!/bin/bash\n${body}\n`);
    await chmod(join(root, path), 0o755);
  }
  await writeFile(join(root, 'test/stub.test.ts'), '');
  return { root, log };
}

async function events(log: string): Promise<string[]> {
  return (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

/** Runs the script in its own process group, as a terminal's Ctrl-C would reach it and its children. */
async function run(name: string, scenario: Scenario): Promise<Outcome> {
  const { root, log } = await layout(name, scenario);
  const child = spawn('/bin/bash', [join(root, 'scripts/test.sh')], {
    cwd: root,
    detached: true,
    stdio: 'ignore',
    env: { PATH: `${join(root, 'bin')}:/usr/bin:/bin`, HOME: root },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  if (scenario.interruptWith) {
    const waitingFor = scenario.slowStart ? 'npx tsc' : 'runner';
    while (!(await events(log)).includes(waitingFor)) await new Promise((resolve) => setTimeout(resolve, 20));
    process.kill(-(child.pid as number), scenario.interruptWith);
  }
  const { code, signal } = await exited;
  return { code, signal, events: await events(log) };
}

function assertServicesStopped(outcome: Outcome): void {
  const { events: seen } = outcome;
  assert.ok(seen.includes('stop postgres') && seen.includes('stop ceph'), `both services stopped: ${seen.join(', ')}`);
  // A start script cut off half-way, or still running at the stop, would leave a daemon behind.
  for (const service of ['postgres', 'ceph']) {
    if (!seen.includes(`start ${service}`)) continue;
    assert.ok(seen.includes(`started ${service}`), `${service}'s start script ran to its end: ${seen.join(', ')}`);
    assert.ok(seen.indexOf(`started ${service}`) < seen.lastIndexOf(`stop ${service}`), `${service} stopped after its start finished: ${seen.join(', ')}`);
  }
}

describe('scripts/test.sh stops PostgreSQL and Ceph on every exit path', { timeout: 60_000 }, () => {
  it('when the tests pass', async () => {
    const outcome = await run('pass', { runner: 0 });
    assert.equal(outcome.code, 0);
    assert.ok(outcome.events.includes('runner'));
    assertServicesStopped(outcome);
  });

  it('when a test fails, keeping the failure as the exit status', async () => {
    const outcome = await run('fail', { runner: 1 });
    assert.equal(outcome.code, 1);
    assertServicesStopped(outcome);
  });

  it('when the type check fails before the tests run, after the services finished starting', async () => {
    const outcome = await run('type-error', { runner: 0, tscStatus: 2, slowStart: true });
    assert.notEqual(outcome.code, 0);
    assert.ok(!outcome.events.includes('runner'), 'no test ran');
    assertServicesStopped(outcome);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`when interrupted with ${signal} while the tests run`, async () => {
      const outcome = await run(`interrupt-${signal}`, { runner: 'wait', interruptWith: signal });
      assert.ok(outcome.code !== 0, `the interrupted run does not pass: ${JSON.stringify(outcome)}`);
      assertServicesStopped(outcome);
    });
  }

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`when interrupted with ${signal} while the services are still starting`, async () => {
      const outcome = await run(`interrupt-starting-${signal}`, { runner: 'wait', interruptWith: signal, slowStart: true });
      assert.ok(outcome.code !== 0, JSON.stringify(outcome));
      assert.ok(!outcome.events.includes('runner'), 'no test ran');
      assertServicesStopped(outcome);
    });
  }
});
