/**
 * The example filters in examples/ (Rust, C, AssemblyScript), built by
 * runBuild in the bubblewrap sandbox exactly as a worker builds them, run on
 * the test bed through invoke and through the preview URL with real HTTP.
 */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { call, startTestKiln } from '../support/kiln.ts';
import type { TestKiln } from '../support/kiln.ts';
import { EXAMPLES, publish, SandboxBuilder, sandboxSkip } from './support.ts';
import type { Json } from './support.ts';

interface Example {
  name: string;
  /** Where the filter adds its header and which header. */
  phase: 'request' | 'response';
  header: [string, string];
  log: RegExp;
}

const EXAMPLE_FILTERS: Example[] = [
  { name: 'rust-filter', phase: 'response', header: ['x-kiln', 'hello'], log: /rust-filter: added x-kiln/ },
  { name: 'c-filter', phase: 'request', header: ['x-kiln-c', 'hello'], log: /c-filter: added x-kiln-c/ },
  { name: 'assemblyscript-filter', phase: 'response', header: ['x-kiln', 'hello'], log: /assemblyscript-filter: added x-kiln/ },
];

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

const skip = await sandboxSkip();

describe('example filters built in the sandbox, on the test bed', { skip, timeout: 600_000 }, () => {
  let t: TestKiln;
  let builder: SandboxBuilder;

  before(async () => {
    process.env.KILN_TESTBED_WORKERS = '1';
    t = await startTestKiln();
    builder = new SandboxBuilder();
  });

  after(async () => {
    await t?.close();
    await builder?.dispose();
    delete process.env.KILN_TESTBED_WORKERS;
  });

  for (const example of EXAMPLE_FILTERS) {
    it(`${example.name}: ${example.header[0]} on the ${example.phase}, through invoke and preview`, async (context) => {
      if (!(await exists(`${EXAMPLES}${example.name}`))) {
        context.skip(`examples/${example.name} is not there`);
        return;
      }
      const id = await publish(t, await builder.build(`${EXAMPLES}${example.name}`), { kind: 'proxy-wasm', name: example.name });
      const invoked = await call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json: { request: { path: '/hello' } } });
      assert.equal(invoked.status, 200, JSON.stringify(invoked.body));
      assert.equal(invoked.body.outcome, 'ok', invoked.body.message);
      const changes = example.phase === 'request' ? invoked.body.request.changes : invoked.body.response.changes;
      assert.deepEqual(changes.headers.added, [example.header]);
      assert.ok(invoked.body.logs.some((line: Json) => example.log.test(line.message)), JSON.stringify(invoked.body.logs));

      const previewed = await fetch(`${t.url}/preview/${id}/hello`, { headers: { authorization: `Bearer ${t.ownerToken}` } });
      assert.equal(previewed.status, 200);
      const echoed = (await previewed.json()) as Json;
      if (example.phase === 'response') assert.equal(previewed.headers.get(example.header[0]), example.header[1]);
      else assert.equal(new Map<string, string>(echoed.headers).get(example.header[0]), example.header[1]);
    });
  }
});
