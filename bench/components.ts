/**
 * JavaScript edge functions as http-components (issue 13), in one run:
 *
 *   build: examples/js-handler through runBuild in the bubblewrap sandbox
 *     (esbuild + componentize-js), wall time and component size.
 *   first request: the component is published (upload, build reported
 *     succeeded); the clock starts then and stops when the first preview
 *     response has arrived: artifact read, jco transpile, compile, first
 *     instance, the request. The same for a Proxy-Wasm filter (a small WAT
 *     filter adding a header, to the built-in echo upstream) beside it.
 *   warm requests: p50/p90 of GET through /preview/:id/ for both; each
 *     component request gets a fresh (pre-warmed) instance.
 *
 * Figures are printed with their ratio to the filter measured in the same
 * run: the machine is shared, absolute numbers move with its load.
 *
 * Usage: node --import tsx bench/components.ts [warm requests]   (default 50)
 */
import { SandboxBuilder, publish, EXAMPLES } from '../test/testbed/support.ts';
import { startTestKiln } from '../test/support/kiln.ts';
import { filterWat, wat } from '../test/testbed/wat.ts';
import { percentile } from './stats.ts';

const warmRuns = Math.max(10, Number(process.argv[2] ?? 50));

const FILTER = filterWat(
  `(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
     (drop (call $add (i32.const 2) (i32.const 100) (i32.const 6) (i32.const 110) (i32.const 2))) (i32.const 0))
   (data (i32.const 100) "x-kiln")
   (data (i32.const 110) "on")`,
  '(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))',
);

async function timedGet(url: string, token: string): Promise<{ ms: number; status: number }> {
  const started = performance.now();
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  await response.arrayBuffer();
  return { ms: performance.now() - started, status: response.status };
}

async function warm(url: string, token: string): Promise<{ p50: number; p90: number }> {
  const times: number[] = [];
  for (let i = 0; i < warmRuns; i++) {
    const { ms, status } = await timedGet(url, token);
    if (status !== 200) throw new Error(`${url}: status ${status}`);
    times.push(ms);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p90: percentile(times, 90) };
}

const builder = new SandboxBuilder();
const buildStarted = performance.now();
const component = await builder.build(`${EXAMPLES}js-handler`);
const buildMs = performance.now() - buildStarted;
await builder.dispose();

const t = await startTestKiln();
try {
  const filterId = await publish(t, wat(FILTER), { kind: 'proxy-wasm', name: 'bench-filter' });
  const filterFirst = await timedGet(`${t.url}/preview/${filterId}/`, t.ownerToken);
  const componentId = await publish(t, component, { kind: 'http-component', name: 'bench-component' });
  const componentFirst = await timedGet(`${t.url}/preview/${componentId}/`, t.ownerToken);
  if (componentFirst.status !== 200 || filterFirst.status !== 200) throw new Error(`first requests: component ${componentFirst.status}, filter ${filterFirst.status}`);
  const filterWarm = await warm(`${t.url}/preview/${filterId}/`, t.ownerToken);
  const componentWarm = await warm(`${t.url}/preview/${componentId}/`, t.ownerToken);
  const ms = (value: number) => `${value.toFixed(1)} ms`;
  console.log(`build (js-handler, sandbox, esbuild + componentize-js): ${(buildMs / 1000).toFixed(1)} s, component ${(component.length / 1024 / 1024).toFixed(1)} MiB`);
  console.log(`first request after the build: component ${ms(componentFirst.ms)}, filter ${ms(filterFirst.ms)} (×${(componentFirst.ms / filterFirst.ms).toFixed(1)})`);
  console.log(`warm request p50: component ${ms(componentWarm.p50)}, filter ${ms(filterWarm.p50)} (×${(componentWarm.p50 / filterWarm.p50).toFixed(1)}); p90 ${ms(componentWarm.p90)} vs ${ms(filterWarm.p90)}; ${warmRuns} requests each`);
} finally {
  await t.close();
}
