/**
 * C++ through the whole pipeline (upload → queue → worker → bubblewrap
 * sandbox → evaluator → test bed): clang++ with Debian's wasm32 libc++,
 * C++17 by default, -fno-exceptions, linked as C++. The example filter runs
 * on both storage backends; the edge cases on the embedded one.
 */
import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { s3Skip } from '../support/backends.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';
import { buildLog, deployDirectory, EXAMPLES, startTestWorkers, waitForBuild } from '../support/workers.ts';
import { runWasiCommand } from '../support/wasi-run.ts';
import type { RunningWorker } from '../../src/worker/worker.ts';

/**
 * The build's log once it is there. Seen once on the servers backend: right
 * after the build ended the log read back empty (the chunks → object move of
 * decision 0003 racing the read?); reported to the integrator, and retried
 * here for up to 5 s so this suite tests toolchains, not that race.
 */
async function finishedLog(t: TestKiln, buildId: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const log = await buildLog(t, buildId);
    if (log !== '' || attempt >= 25) return log;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

// Debian installs libc++.a as a symlink into llvm-14's tree: access() follows it.
const libcxxSkip = await access('/usr/lib/wasm32-wasi/libc++.a').then(
  () => false as const,
  () => 'libc++-14-dev-wasm32 is not installed (scripts/setup.sh)',
);
const rootSkip = process.getuid?.() === 0 ? false : 'the build sandbox needs root';

async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), content);
  }
}

for (const flavour of ['embedded', 'servers'] as StorageFlavour[]) {
  const skip = rootSkip || libcxxSkip || (flavour === 'servers' ? s3Skip() : false);
  describe(`C++ through the pipeline (${flavour} storage)`, { skip, timeout: 900_000 }, () => {
    let t: TestKiln;
    let workers: RunningWorker;
    let appId: string;
    let scratch: string;
    let versionNumber = 0;
    const owner = (method: string, route: string, json?: unknown) => call<Json>(t.url, method, route, { token: t.ownerToken, ...(json === undefined ? {} : { json }) });

    before(async () => {
      process.env.KILN_TESTBED_WORKERS = '1';
      t = await startTestKiln({ flavour });
      workers = startTestWorkers(t, 1);
      appId = (await owner('POST', '/v1/applications', { name: `cpp-${flavour}` })).body.id;
      scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-cpp-e2e-'));
    });
    after(async () => {
      await workers?.stop();
      await t?.close();
      if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
      delete process.env.KILN_TESTBED_WORKERS;
    });

    async function deploy(dir: string): Promise<{ versionId: string; build: Json; log: string }> {
      versionNumber += 1;
      const { version, build } = await deployDirectory(t, appId, dir, { version: `0.${versionNumber}.0` });
      const done = await waitForBuild(t, build.id);
      return { versionId: version.id, build: done, log: await finishedLog(t, build.id) };
    }

    it('cpp-filter: std::string, std::optional, containers and algorithms, on the test bed', async () => {
      const run = await deploy(path.join(EXAMPLES, 'cpp-filter'));
      assert.equal(run.build.state, 'succeeded', `${run.build.reason}\n${run.log}`);
      assert.equal(run.build.language, 'c');
      assert.equal(run.build.kind, 'proxy-wasm');
      assert.match(run.log, /C\+\+ \(c\+\+17, -fno-exceptions, libc\+\+\): 1 C\+\+ and 0 C source file\(s\), linked as C\+\+/);
      assert.match(run.log, /\/usr\/bin\/clang\+\+ --target=wasm32-wasi -O2 -Iinclude -std=c\+\+17 -fno-exceptions -mexec-model=reactor/);
      const answer = await owner('POST', `/v1/versions/${run.versionId}/invoke`, { request: { path: '/x', headers: [['user-agent', 'kiln-test'], ['b', '1'], ['b', '2']] } });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const invoked = answer.body;
      assert.equal(invoked.outcome, 'ok', invoked.message);
      const added = new Map<string, string>(invoked.request.changes.headers.added);
      assert.equal(added.get('x-kiln-agent'), 'kiln-test');
      // user-agent and b, plus whatever pseudo-headers the test bed passes: at least 2, b counted once.
      assert.ok(Number(added.get('x-kiln-cpp')) >= 2, JSON.stringify(invoked.request.changes));
      const messages = invoked.logs.map((line: Json) => String(line.message));
      assert.ok(messages.includes('cpp-filter: started (C++17)'), messages.join('\n'));
      assert.deepEqual(invoked.unimplemented, []);
    });

    it('kiln.toml picks C++20, and C sources beside C++ are compiled as C and linked in', async (context) => {
      if (flavour !== 'embedded') return context.skip('edge cases run on the embedded backend only');
      const dir = path.join(scratch, 'cxx20');
      await writeFiles(dir, {
        'kiln.toml': 'cxx-standard = "c++20"\n',
        // Valid C, invalid C++ (implicit void* conversion): proves it is compiled as C.
        'src/twice.c': '#include <stdlib.h>\nint twice(int x) { int *p = malloc(sizeof(int)); *p = 2 * x; int r = *p; free(p); return r; }\n',
        'src/main.cpp': [
          '#include <cstdio>',
          '#include <span>',
          '#include <numeric>',
          'extern "C" int twice(int);',
          'int main() {',
          '  int values[] = {1, 2, 3};',
          '  std::span<int> view(values);',
          '  std::printf("%d\\n", twice(std::accumulate(view.begin(), view.end(), 0)));',
          '}',
          '',
        ].join('\n'),
      });
      const run = await deploy(dir);
      assert.equal(run.build.state, 'succeeded', `${run.build.reason}\n${run.log}`);
      assert.match(run.log, /-std=c\+\+20/);
      assert.match(run.log, /==> \[1\/2\] clang \.\/src\/twice\.c/);
      const artifact = await owner('GET', `/v1/versions/${run.versionId}/artifact`);
      assert.equal((await runWasiCommand(new Uint8Array(artifact.raw as Buffer))).stdout, '12\n');
    });

    it('a throw fails clearly (no exceptions), and an unknown standard is refused before compiling', async (context) => {
      if (flavour !== 'embedded') return context.skip('edge cases run on the embedded backend only');
      const throwing = path.join(scratch, 'throw');
      await writeFiles(throwing, { 'src/main.cpp': '#include <stdexcept>\nint main() { throw std::runtime_error("no"); }\n' });
      const thrown = await deploy(throwing);
      assert.equal(thrown.build.state, 'failed');
      assert.match(thrown.build.reason, /exceptions disabled/);

      const unknown = path.join(scratch, 'unknown-standard');
      await writeFiles(unknown, { 'kiln.toml': 'cxx-standard = "c++99; rm -rf /"\n', 'src/main.cpp': 'int main() {}\n' });
      const refused = await deploy(unknown);
      assert.equal(refused.build.state, 'failed');
      assert.match(refused.build.reason, /kiln\.toml: cxx-standard must be one of c\+\+11, c\+\+14, c\+\+17, c\+\+20/);
      assert.doesNotMatch(refused.log, /clang\+\+/);
    });
  });
}
