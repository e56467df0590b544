/**
 * Build optimizations against the brief's targets (§9), measured in one run
 * through the real pipeline (API + one bubblewrap worker):
 *
 *   1. size: raw release build vs optimized artifact for the Rust examples
 *      (target: optimized ≤ 30 % of raw);
 *   2. Wizer: time to first response of the init-heavy function, optimized
 *      with and without Wizer, each sample a fresh node process in the
 *      sandbox answering a real request (target: ≥ 5× faster with Wizer);
 *   3. dependency cache: first build vs rebuild after a one-line change of
 *      the serde-based rust-function, for an owner with an empty cache
 *      (target: ≥ 5× faster).
 * Prints absolute numbers and ratios; asserts nothing.
 *
 * Usage: node --import tsx bench/optimize.ts [samples]   (default 5 start-up samples per variant)
 */
import { chmod, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { packDirectory } from '../src/archive/pack.ts';
import { measureStartup, isStartupTimes, type StartupTimes } from '../src/optimize/startup.ts';
import type { ToolContext } from '../src/optimize/tool-run.ts';
import { createSandbox, createWorkDir, DEFAULT_LIMITS } from '../src/sandbox/index.ts';
import { startWorker } from '../src/worker/worker.ts';
import { versionForm } from '../test/support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../test/support/kiln.ts';
import { waitForBuild } from '../test/support/workers.ts';
import { median } from './stats.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- bench-side JSON access

const EXAMPLES = path.resolve(import.meta.dirname, '../examples');
const SAMPLES = Math.max(1, Number(process.argv[2] ?? 5));
const REQUEST = '{"from": "depot-3", "to": "depot-250"}';

const ratio = (a: number, b: number) => (b === 0 ? NaN : a / b);
const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const ms = (value: number) => `${value.toFixed(1)} ms`;

interface Built {
  version: Json;
  build: Json;
  wallMs: number;
}

async function deploy(t: TestKiln, token: string, appId: string, dir: string, metadata: Record<string, unknown>): Promise<Built> {
  const { archive } = await packDirectory(dir);
  const started = performance.now();
  const answer = await call<Json>(t.url, 'POST', `/v1/applications/${appId}/versions`, { token, body: versionForm(metadata, archive) });
  if (answer.status !== 202) throw new Error(`upload refused: ${JSON.stringify(answer.body)}`);
  const build = await waitForBuild({ ...t, ownerToken: token }, answer.body.build.id);
  const wallMs = performance.now() - started;
  if (build.state !== 'succeeded') throw new Error(`${dir}: ${build.state}: ${build.reason}`);
  return { version: answer.body.version, build, wallMs };
}

async function newOwner(t: TestKiln, name: string): Promise<{ token: string; appId: string }> {
  const owner = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name } });
  const token = owner.body.token as string;
  const app = await call<Json>(t.url, 'POST', '/v1/applications', { token, json: { name } });
  return { token, appId: app.body.id };
}

async function sizes(t: TestKiln, owner: { token: string; appId: string }): Promise<Built> {
  console.log('\n1. Size: raw release build vs optimized (default options: strip, Wizer, wasm-opt -O2), target ≤ 30 %');
  let initHeavy: Built | undefined;
  for (const [index, example] of ['rust-function', 'rust-filter', 'init-heavy-function'].entries()) {
    const built = await deploy(t, owner.token, owner.appId, path.join(EXAMPLES, example), { version: `1.0.${index}` });
    const { original, optimized } = built.build.details.variants;
    const steps = (built.build.details.optimize.steps as Json[]).filter((step) => step.status === 'applied').map((step) => step.name).join(' + ');
    console.log(`   ${example.padEnd(20)} raw ${kib(original.bytes).padStart(11)}  optimized ${kib(optimized.bytes).padStart(10)}  = ${(100 * ratio(optimized.bytes, original.bytes)).toFixed(1)} %  (${steps})`);
    if (example === 'init-heavy-function') initHeavy = built;
  }
  if (!initHeavy) throw new Error('init-heavy-function was not built');
  return initHeavy;
}

async function artifact(t: TestKiln, token: string, versionId: string): Promise<Uint8Array> {
  const answer = await call(t.url, 'GET', `/v1/versions/${versionId}/artifact?variant=optimized`, { token });
  if (answer.status !== 200) throw new Error(`artifact: ${answer.status}`);
  return new Uint8Array(answer.raw);
}


/** Median of each phase over SAMPLES fresh processes, as a host answering a real request. */
async function firstResponse(context: ToolContext, module: Uint8Array, name: string): Promise<StartupTimes> {
  const runs: StartupTimes[] = [];
  for (let sample = 0; sample < SAMPLES; sample++) {
    const result = await measureStartup(context, module, 'wasi-command', { name: `${name}.wasm`, input: Buffer.from(REQUEST), callInit: false });
    if (!isStartupTimes(result)) throw new Error(`${name}: ${result.error}`);
    runs.push(result);
  }
  const phase = (key: keyof StartupTimes) => median(runs.map((run) => run[key] ?? 0));
  return { compileMs: phase('compileMs'), instantiateMs: phase('instantiateMs'), initMs: phase('initMs'), firstCallMs: phase('firstCallMs'), totalMs: phase('totalMs') };
}

async function wizer(t: TestKiln, owner: { token: string; appId: string }, withWizer: Built, workRoot: string): Promise<void> {
  console.log(`\n2. Wizer: time to first response of init-heavy-function (median of ${SAMPLES} fresh processes, request ${REQUEST}), target ≥ 5×`);
  const without = await deploy(t, owner.token, owner.appId, path.join(EXAMPLES, 'init-heavy-function'), { version: '2.0.0', optimize: { wizer: false } });
  const volume = await createWorkDir(workRoot, 256 * 1024 ** 2, 'bench-startup');
  try {
    const context: ToolContext = { sandbox: createSandbox('bubblewrap'), volume: volume.path, limits: { ...DEFAULT_LIMITS, logBytes: 1024 ** 2 }, onOutput: () => undefined };
    const plain = await firstResponse(context, await artifact(t, owner.token, without.version.id), 'without-wizer');
    const wizened = await firstResponse(context, await artifact(t, owner.token, withWizer.version.id), 'with-wizer');
    for (const [label, times, bytes] of [['without Wizer', plain, without.build.details.variants.optimized.bytes], ['with Wizer', wizened, withWizer.build.details.variants.optimized.bytes]] as const) {
      console.log(
        `   ${label.padEnd(14)} first response ${ms(times.totalMs).padStart(9)}  (compile ${ms(times.compileMs)}, instantiate ${ms(times.instantiateMs)}, init ${ms(times.initMs)}, first call ${ms(times.firstCallMs)}; module ${kib(bytes)})`,
    );
    }
    console.log(`   speed-up ${ratio(plain.totalMs, wizened.totalMs).toFixed(1)}×`);
  } finally {
    await volume.dispose();
  }
}

function buildStagesMs(build: Json): number {
  const ignored = new Set(['download', 'extract', 'upload', 'optimize', 'upload optimized']);
  return (build.stages as Json[]).filter((stage) => !ignored.has(stage.name)).reduce((sum, stage) => sum + Number(stage.durationMs), 0);
}

async function rebuild(t: TestKiln, scratch: string): Promise<void> {
  console.log('\n3. Dependency cache: rust-function (serde, serde_json) first build vs rebuild after a one-line change, target ≥ 5×');
  const owner = await newOwner(t, 'bench-rebuild');
  const dir = path.join(scratch, 'rust-function');
  await cp(path.join(EXAMPLES, 'rust-function'), dir, { recursive: true });
  const first = await deploy(t, owner.token, owner.appId, dir, { version: '1.0.0' });
  const main = path.join(dir, 'src', 'main.rs');
  await writeFile(main, (await readFile(main, 'utf8')).replace('"Hello, {}!"', '"Hi, {}!"'));
  const second = await deploy(t, owner.token, owner.appId, dir, { version: '1.0.1' });
  for (const [label, built] of [['first build', first], ['rebuild', second]] as const) {
    const cache = built.build.details.cache as Json;
    console.log(`   ${label.padEnd(12)} submit→succeeded ${ms(built.wallMs).padStart(10)}   build stages ${ms(buildStagesMs(built.build)).padStart(10)}   cache hit ${String(cache.hit)}${cache.bytes ? ` (${kib(cache.bytes)})` : ''}`);
  }
  const stageList = (built: Built) => (built.build.stages as Json[]).map((stage) => `${stage.name} ${stage.durationMs}`).join(', ');
  console.log(`   first build stages (ms): ${stageList(first)}`);
  console.log(`   rebuild stages (ms):     ${stageList(second)}`);
  console.log(`   speed-up ${ratio(first.wallMs, second.wallMs).toFixed(1)}× submit→succeeded, ${ratio(buildStagesMs(first.build), buildStagesMs(second.build)).toFixed(1)}× build stages (restore + resolve + cargo + collect + save)`);
}

async function main(): Promise<void> {
  const t = await startTestKiln();
  const workRoot = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-optimize-'));
  await chmod(workRoot, 0o755);
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-src-'));
  const worker = startWorker({ apiUrl: t.url, token: t.workerToken, concurrency: 1, sandbox: createSandbox('bubblewrap'), workRoot, logger: pino({ level: 'warn' }), heartbeatMs: 500 });
  try {
    console.log(`Kiln build optimizations — ${os.cpus().length} cores, one bubblewrap worker`);
    const owner = await newOwner(t, 'bench-optimize');
    const initHeavy = await sizes(t, owner);
    await wizer(t, owner, initHeavy, workRoot);
    await rebuild(t, scratch);
  } finally {
    await worker.stop();
    await t.close();
    await rm(workRoot, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
