/**
 * A filter on the modern Rust toolchain (rustc 1.85, wasm32-wasip1) through
 * the pipeline, cold and warm, next to the same `cargo build` run bare in the
 * same sandbox with the same toolchain, mounts and limits (target ≤ 1.15×
 * warm). The filter is the official `proxy-wasm` crate's when
 * KILN_TEST_PROXY_WASM_SDK_DIR names its source, else a filter on vendored
 * crates.io crates (hashbrown 0.15, log) from the toolchain's source vendor/.
 * Also prints the set-up time of the modern toolchain, from its stamp.
 *
 * Cold: a new owner namespace (dependency cache miss) / a fresh target/.
 * Warm: a one-line change of the filter's source rebuilt with the compiled
 * dependencies reused (pipeline: dependency cache hit; bare: the same job
 * dir's target/).
 *
 * The client waits as `kiln deploy` does, on the build's log stream (pushed,
 * not polled). The warm pipeline builds are broken down per phase (client
 * pack and POST, queue, claim, each worker stage, after the last stage, the
 * client seeing the end), the build log says what cargo compiled, and this
 * process's CPU is counted per build, so one sees where the overhead goes. The ratio series turn optimization off (the
 * comparison is the build); a last pair of builds with the defaults, of the
 * same source twice, shows what the optimize stage costs in a warm build and
 * whether its result is reused by input hash (decision 0019).
 *
 * Usage: node --import tsx bench/rust-sdk.ts [warm runs]   (default 3)
 */
import { appendFile, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { packDirectory } from '../src/archive/pack.ts';
import { toolchainsDir } from '../src/config.ts';
import { createLanguages } from '../src/languages/index.ts';
import type { BuildContext, BuildStep } from '../src/languages/language.ts';
import type { Mount } from '../src/sandbox/sandbox.ts';
import { BASE_DIRECTORIES } from '../src/build-kit/paths.ts';
import { installedToolchains, STAMP_FILE } from '../src/languages/rust/toolchains.ts';
import { createWorkDir, DEFAULT_LIMITS } from '../src/sandbox/index.ts';
import { startWorker } from '../src/worker/worker.ts';
import { officialSdkDir, toolchainVendorMissing, writeHashbrownFilter, writeOfficialSdkFilter } from '../test/languages/rust-vendored.ts';
import { ApiClient } from '../src/cli/api-client.ts';
import { startBenchKiln, type Json } from './harness.ts';
import { median } from './stats.ts';

const RATIO_TARGET = 1.15;
/** Version metadata turning every optimization off: the build alone. */
const NO_OPTIMIZE = { strip: false, wasmOpt: 'off', wizer: false, memoryCapPages: null };
const warmRuns = Math.max(1, Number(process.argv[2] ?? 3));

async function printSetupTime(): Promise<void> {
  const modern = (await installedToolchains(toolchainsDir())).find((toolchain) => toolchain.target === 'wasm32-wasip1');
  if (modern?.hostRoot === undefined) throw new Error('no modern Rust toolchain: run scripts/setup.sh');
  const stamp = JSON.parse(await readFile(path.join(modern.hostRoot, STAMP_FILE), 'utf8')) as Json;
  console.log(`modern toolchain: ${String(stamp.rustc)} for ${String(stamp.target)}, set up in ${String(stamp.setupSeconds)} s (from ${STAMP_FILE}; downloads + std build on this machine)`);
}


async function writeFilter(dir: string): Promise<string> {
  const sdk = await officialSdkDir();
  if ('dir' in sdk) {
    await writeOfficialSdkFilter(dir, sdk.dir);
    return 'official proxy-wasm crate (vendored)';
  }
  const missing = await toolchainVendorMissing();
  if (missing !== undefined) throw new Error(missing);
  await writeHashbrownFilter(dir);
  return `Kiln SDK + vendored hashbrown/log (${sdk.missing})`;
}

/** The "one-line change" of a warm rebuild. */
async function touchSource(dir: string, run: number): Promise<void> {
  await appendFile(path.join(dir, 'src/lib.rs'), `\n// bench edit ${run}\n`);
}

interface PipelineRun {
  ms: number;
  build: Json;
  /** Client side: packing the directory. */
  packMs: number;
  /** Client side: the POST until its 202. */
  postMs: number;
  /** When the client saw the end (wall clock, to compare with the build's timestamps). */
  seenAt: number;
  log: string;
  /** CPU of this process (client, API, worker; not the sandboxed cargo) from pack to seeing the end. */
  cpuMs: number;
}

/** What cargo compiled, from its `Compiling name vX` lines: in a warm build, only the user's crate. */
function compiledCrates(log: string): string[] {
  return [...log.matchAll(/^\s*Compiling (\S+) v/gm)].map((match) => match[1] ?? '?');
}

const NOTES: Record<string, string> = {
  'last stage → finished': 'log flush, report, evaluation, test bed readying (decision 0040), commit',
  'worker time outside stages': 'both rows above and any gap between stages',
};

/** Median ms per phase of the warm pipeline builds, as bench/pipeline.ts prints them. */
class PhaseTable {
  private readonly phases = new Map<string, number[]>();

  add(run: PipelineRun): void {
    const { build } = run;
    const stages = build.stages as Array<{ name: string; startedAt: string; durationMs: number }>;
    const [startedAt, finishedAt] = [Date.parse(build.startedAt), Date.parse(build.finishedAt)];
    this.push('client: pack', run.packMs);
    this.push('client: POST (upload → 202)', run.postMs);
    this.push('queued → claimed', startedAt - Date.parse(build.createdAt));
    this.push('claimed → first stage', Math.min(...stages.map((stage) => Date.parse(stage.startedAt))) - startedAt);
    for (const stage of stages) this.push(`worker: ${stage.name}`, stage.durationMs);
    this.push('last stage → finished', finishedAt - Math.max(...stages.map((stage) => Date.parse(stage.startedAt) + stage.durationMs)));
    const staged = stages.reduce((sum, stage) => sum + stage.durationMs, 0);
    this.push('worker time outside stages', finishedAt - startedAt - staged);
    this.push('finished → seen by client', run.seenAt - finishedAt);
  }

  print(bareMs: number): void {
    console.log('median ms per phase of the warm pipeline builds:');
    for (const [name, values] of this.phases) {
      const note = NOTES[name] === undefined ? '' : `   (${NOTES[name]})`;
      console.log(`  ${name.padEnd(32)} ${median(values).toFixed(0).padStart(6)}${note}`);
    }
    const cargo = median(this.phases.get('worker: cargo build') ?? []);
    console.log(`  ${'bare cargo build (same sandbox)'.padEnd(32)} ${bareMs.toFixed(0).padStart(6)}   (cargo in the pipeline ${(cargo - bareMs).toFixed(0)} ms vs bare)`);
  }

  private push(name: string, ms: number): void {
    this.phases.set(name, [...(this.phases.get(name) ?? []), ms]);
  }
}

function stageMs(build: Json, name: string): number {
  return (build.stages as Array<{ name: string; durationMs: number }>).find((stage) => stage.name === name)?.durationMs ?? NaN;
}

async function main(): Promise<void> {
  await printSetupTime();
  const source = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-rust-sdk-'));
  const what = await writeFilter(source);
  const bench = await startBenchKiln('rust-sdk');
  const { kiln, config, logger, sandbox, workRoot, api } = bench;
  const client = new ApiClient({ url: kiln.url, token: bench.ownerToken, configFile: '' });
  const worker = startWorker({ apiUrl: kiln.url, token: kiln.credentials.workerToken, concurrency: 1, sandbox, workRoot, logger });
  try {
    const appId: string = (await api('POST', '/v1/applications', undefined, { name: 'bench-rust-sdk' })).id;
    let version = 0;
    /** Submit→succeeded as `kiln deploy` sees it: pack, upload, then the build's log stream until the API ends it. */
    async function pipelineOnce(optimize: Json | undefined): Promise<PipelineRun> {
      const started = performance.now();
      const cpu = process.cpuUsage();
      const { archive } = await packDirectory(source);
      const packMs = performance.now() - started;
      const form = new FormData();
      form.append('metadata', JSON.stringify({ version: `0.0.${++version}`, ...(optimize ? { optimize } : {}) }));
      form.append('source', new Blob([new Uint8Array(archive)]), 'source.tar.gz');
      const { build } = await api('POST', `/v1/applications/${appId}/versions`, form);
      const postMs = performance.now() - started - packMs;
      let log = '';
      const ended = (await client.followBuild(build.id, { onLog: (text) => (log += text) })) as unknown as Json;
      const seenAt = Date.now();
      if (ended.state !== 'succeeded') throw new Error(`pipeline build ${ended.state}: ${ended.reason}\n${log.slice(-4000)}`);
      const { user, system } = process.cpuUsage(cpu);
      return { ms: performance.now() - started, build: ended, packMs, postMs, seenAt, log, cpuMs: (user + system) / 1000 };
    }

    // The bare build: one job dir kept across runs so its target/ is warm after the first;
    // later runs copy in only the edited file, as a developer's incremental `cargo build` sees it.
    const workDir = await createWorkDir(workRoot, DEFAULT_LIMITS.diskBytes, 'bench-bare');
    const jobDir = workDir.path;
    const rust = createLanguages().rust;
    let prepared: { steps: BuildStep[]; mounts: Mount[] } | undefined;
    async function bareOnce(): Promise<{ ms: number; log: string; cpuMs: number }> {
      if (prepared === undefined) {
        await cp(source, path.join(jobDir, 'src'), { recursive: true });
        for (const directory of BASE_DIRECTORIES) await mkdir(path.join(jobDir, directory), { recursive: true });
        const context: BuildContext = { jobDir, sourceDir: path.join(jobDir, 'src'), kind: 'proxy-wasm', log: () => undefined };
        await rust.prepare(context);
        prepared = { steps: await rust.steps(context), mounts: rust.mounts(context) };
      } else {
        await cp(path.join(source, 'src/lib.rs'), path.join(jobDir, 'src/src/lib.rs'));
      }
      const started = performance.now();
      const cpu = process.cpuUsage();
      let log = '';
      for (const step of prepared.steps) {
        const result = await sandbox.run({ command: step.command, env: step.env, cwd: step.cwd, workDir: jobDir, mounts: prepared.mounts, limits: config.buildLimits, onOutput: (chunk) => (log = (log + chunk.toString('utf8')).slice(-64_000)) });
        if (result.exitCode !== 0) throw new Error(`bare ${step.name} failed (${result.exitCode ?? result.signal}): ${log.slice(-4000)}`);
      }
      const { user, system } = process.cpuUsage(cpu);
      return { ms: performance.now() - started, log, cpuMs: (user + system) / 1000 };
    }

    console.log(`filter: ${what}; machine: ${os.cpus().length} cores, load ${os.loadavg().map((load) => load.toFixed(2)).join(' ')} (shared)`);
    const coldPipeline = await pipelineOnce(NO_OPTIMIZE);
    const toolchain = (coldPipeline.build.details as Json).toolchain as Json | undefined;
    console.log(`built by ${String(toolchain?.rustc)} for ${String(toolchain?.target)}`);
    const coldBare = (await bareOnce()).ms;
    const warm = { pipeline: [] as number[], bare: [] as number[], pipelineCpu: [] as number[], bareCpu: [] as number[], cacheHits: 0, unpacked: 0, phases: new PhaseTable(), compiled: new Set<string>(), bareCompiled: new Set<string>() };
    let last: PipelineRun | undefined;
    for (let run = 1; run <= warmRuns; run++) {
      await touchSource(source, run);
      // Alternating which goes first spreads load drift over both series.
      const pipelineFirst = run % 2 === 1;
      const bare = pipelineFirst ? undefined : await bareOnce();
      last = await pipelineOnce(NO_OPTIMIZE);
      const bareRun = bare ?? (await bareOnce());
      warm.pipeline.push(last.ms);
      warm.bare.push(bareRun.ms);
      warm.pipelineCpu.push(last.cpuMs);
      warm.bareCpu.push(bareRun.cpuMs);
      warm.phases.add(last);
      const cache = (last.build.details as Json).cache as Json | undefined;
      if (cache?.hit === true) warm.cacheHits++;
      if (cache?.unpacked === true) warm.unpacked++;
      for (const crate of compiledCrates(last.log)) warm.compiled.add(crate);
      for (const crate of compiledCrates(bareRun.log)) warm.bareCompiled.add(crate);
      console.log(`  warm run ${run}: pipeline ${last.ms.toFixed(0)} ms (cargo ${stageMs(last.build, 'cargo build').toFixed(0)} ms), bare ${bareRun.ms.toFixed(0)} ms`);
    }
    await workDir.dispose();
    const ratio = (pipeline: number, bare: number): string => `${(pipeline / bare).toFixed(3)}×`;
    console.log(`cold: pipeline ${coldPipeline.ms.toFixed(0)} ms, bare cargo ${coldBare.toFixed(0)} ms, ratio ${ratio(coldPipeline.ms, coldBare)}`);
    const warmPipeline = median(warm.pipeline);
    const warmBare = median(warm.bare);
    const met = warmPipeline / warmBare <= RATIO_TARGET ? 'met' : 'NOT met';
    console.log(`warm: pipeline median ${warmPipeline.toFixed(0)} ms, bare cargo median ${warmBare.toFixed(0)} ms, ratio ${ratio(warmPipeline, warmBare)} (target ≤ ${RATIO_TARGET}×: ${met}); dependency cache hits ${warm.cacheHits}/${warmRuns} (${warm.unpacked} from the unpacked copy)`);
    console.log(`cargo compiled in the warm builds: pipeline ${[...warm.compiled].join(', ') || 'nothing'}; bare ${[...warm.bareCompiled].join(', ') || 'nothing'}`);
    console.log('(optimization off in these pipeline runs: the comparison is the build; the client follows the log stream as `kiln deploy` does)');
    warm.phases.print(warmBare);
    console.log(`CPU of this process (client, API, worker; not the sandboxed cargo) per warm build: pipeline median ${median(warm.pipelineCpu).toFixed(0)} ms, bare ${median(warm.bareCpu).toFixed(0)} ms`);
    await printOptimizeReuse(last, () => pipelineOnce(undefined));
  } finally {
    await worker.stop();
    await bench.dispose();
    await rm(source, { recursive: true, force: true });
  }
}

/**
 * The same source, unchanged since the last warm build, built twice more with
 * the default optimization: the first optimizes (nothing earlier had these
 * options), the second should reuse that result by input hash, which works
 * only when cargo's output is byte-identical from one build to the next.
 */
async function printOptimizeReuse(lastWarm: PipelineRun | undefined, buildWithDefaults: () => Promise<PipelineRun>): Promise<void> {
  const first = await buildWithDefaults();
  const second = await buildWithDefaults();
  const sha = (run: PipelineRun | undefined): string => String(((run?.build.artifacts as Json | undefined)?.original as Json | undefined)?.sha256 ?? '?');
  const reused = (run: PipelineRun): boolean => ((run.build.details as Json).optimize as Json | undefined)?.reused === true;
  const identical = sha(lastWarm) === sha(first) && sha(first) === sha(second);
  console.log(`optimize stage with the defaults, same source rebuilt: ${stageMs(first.build, 'optimize').toFixed(0)} ms (reused: ${reused(first)}), then ${stageMs(second.build, 'optimize').toFixed(0)} ms (reused: ${reused(second)}); ` +
    `submit→succeeded ${first.ms.toFixed(0)} ms, then ${second.ms.toFixed(0)} ms`);
  console.log(`cargo output of the three builds of that source ${identical ? 'byte-identical' : `NOT byte-identical: ${sha(lastWarm).slice(0, 12)} ${sha(first).slice(0, 12)} ${sha(second).slice(0, 12)}`}`);
}

await main();
