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
import { startBenchKiln, type Json } from './harness.ts';
import { median } from './stats.ts';

const RATIO_TARGET = 1.15;
const POLL_MS = 10;
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

async function main(): Promise<void> {
  await printSetupTime();
  const source = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-rust-sdk-'));
  const what = await writeFilter(source);
  const bench = await startBenchKiln('rust-sdk');
  const { kiln, config, logger, sandbox, workRoot, api } = bench;
  const worker = startWorker({ apiUrl: kiln.url, token: kiln.credentials.workerToken, concurrency: 1, sandbox, workRoot, logger });
  try {
    const appId: string = (await api('POST', '/v1/applications', undefined, { name: 'bench-rust-sdk' })).id;
    let version = 0;
    async function pipelineOnce(): Promise<{ ms: number; build: Json }> {
      const started = performance.now();
      const { archive } = await packDirectory(source);
      const form = new FormData();
      form.append('metadata', JSON.stringify({ version: `0.0.${++version}`, optimize: { strip: false, wasmOpt: 'off', wizer: false, memoryCapPages: null } }));
      form.append('source', new Blob([new Uint8Array(archive)]), 'source.tar.gz');
      const { build } = await api('POST', `/v1/applications/${appId}/versions`, form);
      while (true) {
        const current = await api('GET', `/v1/builds/${build.id}`);
        if (current.state === 'succeeded') return { ms: performance.now() - started, build: current };
        if (['failed', 'crashed', 'cancelled'].includes(current.state)) throw new Error(`pipeline build ${current.state}: ${current.reason}`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    }

    // The bare build: one job dir kept across runs so its target/ is warm after the first;
    // later runs copy in only the edited file, as a developer's incremental `cargo build` sees it.
    const workDir = await createWorkDir(workRoot, DEFAULT_LIMITS.diskBytes, 'bench-bare');
    const jobDir = workDir.path;
    const rust = createLanguages().rust;
    let prepared: { steps: BuildStep[]; mounts: Mount[] } | undefined;
    async function bareOnce(): Promise<number> {
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
      for (const step of prepared.steps) {
        let output = '';
        const result = await sandbox.run({ command: step.command, env: step.env, cwd: step.cwd, workDir: jobDir, mounts: prepared.mounts, limits: config.buildLimits, onOutput: (chunk) => (output = (output + chunk.toString('utf8')).slice(-4000)) });
        if (result.exitCode !== 0) throw new Error(`bare ${step.name} failed (${result.exitCode ?? result.signal}): ${output}`);
      }
      return performance.now() - started;
    }

    console.log(`filter: ${what}; machine: ${os.cpus().length} cores, load ${os.loadavg().map((load) => load.toFixed(2)).join(' ')} (shared)`);
    const coldPipeline = await pipelineOnce();
    const toolchain = (coldPipeline.build.details as Json).toolchain as Json | undefined;
    console.log(`built by ${String(toolchain?.rustc)} for ${String(toolchain?.target)}`);
    const coldBare = await bareOnce();
    const warm = { pipeline: [] as number[], bare: [] as number[], cacheHits: 0, stages: [] as Json[] };
    for (let run = 1; run <= warmRuns; run++) {
      await touchSource(source, run);
      const { ms, build } = await pipelineOnce();
      warm.pipeline.push(ms);
      if ((build.details as Json).cache?.hit === true) warm.cacheHits++;
      warm.stages = build.stages as Json[];
      warm.bare.push(await bareOnce());
      console.log(`  warm run ${run}: pipeline ${ms.toFixed(0)} ms, bare ${(warm.bare.at(-1) ?? NaN).toFixed(0)} ms`);
    }
    await workDir.dispose();
    const ratio = (pipeline: number, bare: number): string => `${(pipeline / bare).toFixed(3)}×`;
    console.log(`cold: pipeline ${coldPipeline.ms.toFixed(0)} ms, bare cargo ${coldBare.toFixed(0)} ms, ratio ${ratio(coldPipeline.ms, coldBare)}`);
    const warmPipeline = median(warm.pipeline);
    const warmBare = median(warm.bare);
    const met = warmPipeline / warmBare <= RATIO_TARGET ? 'met' : 'NOT met';
    console.log(`warm: pipeline median ${warmPipeline.toFixed(0)} ms, bare cargo median ${warmBare.toFixed(0)} ms, ratio ${ratio(warmPipeline, warmBare)} (target ≤ ${RATIO_TARGET}×: ${met}); dependency cache hits ${warm.cacheHits}/${warmRuns}`);
    console.log('(optimization off in the pipeline runs: the comparison is the build; the client polls every 10 ms)');
    console.log(`stages of the last warm pipeline build: ${warm.stages.map((stage) => `${String(stage.name)} ${Number(stage.durationMs).toFixed(0)} ms`).join(', ')}`);
  } finally {
    await worker.stop();
    await bench.dispose();
    await rm(source, { recursive: true, force: true });
  }
}

await main();
