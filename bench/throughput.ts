/**
 * Throughput (BRIEF §9: within 10 % of the ideal): 50 queued C builds
 * (examples/c-function, distinct versions) drained by 2 workers, against
 * the ideal of 50 × the median single build time / 2.
 *
 * A real Kiln (embedded: PGlite + filesystem objects) and real bubblewrap
 * workers in this process. The single build time: builds one at a time
 * with both workers idle, measured after the drain below. The drain:
 * all 50 uploads are queued before any worker exists, two workers start,
 * and the clock runs until the last build has finished. Both the single
 * build time and the drain come from the API's own timestamps (claimed →
 * finished, and workers started → last finished), so client polling does
 * not blur them.
 *
 * Usage: node --import tsx bench/throughput.ts [builds] [workers]   (default 50, 2)
 */
import os from 'node:os';
import path from 'node:path';
import { packDirectory } from '../src/archive/pack.ts';
import { startWorker, type RunningWorker } from '../src/worker/worker.ts';
import { startBenchKiln, type Json } from './harness.ts';
import { median } from './stats.ts';


const TARGET = 1.1;
const SINGLE_RUNS = 5;
const builds = Math.max(2, Number(process.argv[2] ?? 50));
const workerCount = Math.max(1, Number(process.argv[3] ?? 2));
const exampleDir = path.resolve(import.meta.dirname, '../examples/c-function');
const TERMINAL = ['succeeded', 'failed', 'crashed', 'cancelled'];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const bench = await startBenchKiln('throughput');
  const { kiln, logger, sandbox, workRoot, api } = bench;
  const startWorkers = (): RunningWorker[] =>
    Array.from({ length: workerCount }, (_, index) =>
      startWorker({ apiUrl: kiln.url, token: kiln.credentials.workerToken, concurrency: 1, sandbox, workRoot, logger, name: `bench-${index}` }),
    );
  let workers: RunningWorker[] = [];

  try {
    const appId: string = (await api('POST', '/v1/applications', undefined, { name: 'bench-throughput' })).id;
    const { archive } = await packDirectory(exampleDir);
    let version = 0;
    const submit = async (): Promise<string> => {
      const form = new FormData();
      form.append('metadata', JSON.stringify({ version: `1.0.${++version}` }));
      form.append('source', new Blob([new Uint8Array(archive)]), 'source.tar.gz');
      return (await api('POST', `/v1/applications/${appId}/versions`, form)).build.id as string;
    };
    const waitFor = async (buildId: string): Promise<Json> => {
      while (true) {
        const build = await api('GET', `/v1/builds/${buildId}`);
        if (TERMINAL.includes(build.state)) return build;
        await sleep(20);
      }
    };
    const workerMs = (build: Json): number => Date.parse(build.finishedAt) - Date.parse(build.startedAt);

    console.log(`throughput: ${builds} queued builds of examples/c-function on ${workerCount} workers`);
    console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((load) => load.toFixed(2)).join(' ')} (shared with other people's builds)`);

    // Fill the queue before any worker exists, then drain it. (Workers are
    // never stopped before the drain: a stopped worker's pending long-poll
    // claim can still take a job on the API side, which then waits for its
    // lease to expire — see the note printed below when it happens.)
    const queued: string[] = [];
    for (let index = 0; index < builds; index++) queued.push(await submit());
    const started = Date.now();
    workers = startWorkers();
    let finished: Json[] = [];
    while (finished.length < builds) {
      await sleep(250);
      const page = await api('GET', `/v1/builds?applicationId=${appId}&limit=200`);
      finished = (page.items as Json[]).filter((build) => queued.includes(build.id) && TERMINAL.includes(build.state));
    }
    const lastFinished = Math.max(...finished.map((build) => Date.parse(build.finishedAt)));
    const total = lastFinished - started;
    // Single build time, one at a time, on the same (now idle) workers.
    await waitFor(await submit());
    const singles: number[] = [];
    const singlesClient: number[] = [];
    for (let run = 0; run < SINGLE_RUNS; run++) {
      const submitted = Date.now();
      const build = await waitFor(await submit());
      if (build.state !== 'succeeded') throw new Error(`single build ${build.state}: ${build.reason}`);
      singles.push(workerMs(build));
      singlesClient.push(Date.now() - submitted);
    }
    const single = median(singles);
    const ideal = (builds * single) / workerCount;
    const states = new Map<string, number>();
    for (const build of finished) states.set(build.state, (states.get(build.state) ?? 0) + 1);
    const ratio = total / ideal;
    const retried = finished.filter((build) => build.attempts > 1).length;

    console.log(`single build (claimed → finished)  median ${single.toFixed(0)} ms of ${SINGLE_RUNS}   (submit → seen succeeded by a client: ${median(singlesClient).toFixed(0)} ms)`);
    console.log(`${builds} queued builds drained          ${total} ms   (${[...states].map(([state, count]) => `${count} ${state}`).join(', ')})`);
    console.log(`ideal (${builds} × ${single.toFixed(0)} ms / ${workerCount})         ${ideal.toFixed(0)} ms`);
    console.log(`ratio                              ${ratio.toFixed(3)}×   (target within 10 %: ${ratio <= TARGET ? 'met' : 'NOT met'})`);
    console.log(`median worker time per build during the drain: ${median(finished.map(workerMs)).toFixed(0)} ms (${workerCount} builds at once share the ${os.cpus().length} cores)`);
    // Separates the queue from the CPU: how much of the drain the workers spent inside a build.
    const busy = finished.reduce((sum, build) => sum + workerMs(build), 0);
    if (retried > 0) console.log(`note: ${retried} build(s) needed more than one attempt (a lost claim or a crash): their lease wait is in the total`);
    console.log(`worker utilisation during the drain: ${((busy / (workerCount * total)) * 100).toFixed(1)} % (the rest is claim/report gaps between builds)`);
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await bench.dispose();
  }
}

await main();
