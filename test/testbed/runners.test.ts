/**
 * The test bed out of the API process, through the real API on both
 * backends: calls run in runner processes (local ones the API starts, and a
 * remote `kiln testbed` process), a runner killed mid-call costs only that
 * call, and one owner's busy loops and tick storms cannot take another
 * owner's calls down. Modules are WebAssembly text assembled at test time
 * (wat.ts) and published through the worker protocol (support.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { s3Skip } from '../support/backends.ts';
import { call, startTestKiln } from '../support/kiln.ts';
import type { StorageFlavour, TestKiln } from '../support/kiln.ts';
import { publish } from './support.ts';
import type { Json } from './support.ts';
import { busyFunction, filterWat, okFunction, wat } from './wat.ts';

const KILN = new URL('../../bin/kiln', import.meta.url).pathname;

const OK_FUNCTION = okFunction();

const BUSY_FUNCTION = busyFunction();

/** A filter whose proxy_on_tick never returns (a tick storm that hangs its worker). */
const TICK_STORM_FILTER = wat(
  filterWat(
    `(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (call $period (i32.const 1)) (drop) (i32.const 1))
     (func (export "proxy_on_tick") (param i32) (loop $l (br $l)))`,
    '(import "env" "proxy_set_tick_period_milliseconds" (func $period (param i32) (result i32)))',
  ),
);

/** Counts requests in linear memory and traps from the second one on: it passes only if no state survives a request. */
const ONCE_PER_INSTANCE_FILTER = wat(
  filterWat(
    `(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
     (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
       (i32.store (i32.const 2000) (i32.add (i32.load (i32.const 2000)) (i32.const 1)))
       (if (i32.gt_u (i32.load (i32.const 2000)) (i32.const 1)) (then unreachable))
       (i32.const 0))`,
  ),
);

const TEST_ENV = {
  KILN_TESTBED_RUNNERS: '1',
  KILN_TESTBED_WORKERS: '2',
  KILN_TESTBED_SPARES: '1',
  KILN_TESTBED_OWNER_SLOTS: '1',
  KILN_TESTBED_OWNER_QUEUE: '1',
  KILN_TESTBED_QUEUE_WAIT_MS: '20000',
  KILN_TESTBED_TIMEOUT_MS: '1500',
  KILN_TESTBED_PREVIEW_CACHE_MS: '200',
  // Long enough that the victim's calls surely meet a hung timer callback (the default is 200 ms).
  KILN_TESTBED_TICK_BUDGET_MS: '3000',
};

async function withEnv<T>(env: Record<string, string>, run: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]));
  Object.assign(process.env, env);
  try {
    return await run();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Without the test servers, the servers flavour is a visible skip naming what is missing (npm test starts them). */
const serversSkip = (): string | false => s3Skip() || (process.env.KILN_TEST_DATABASE_URL ? false : 'KILN_TEST_DATABASE_URL is not set');

for (const flavour of ['embedded', 'servers'] as StorageFlavour[]) {
  describe(`test bed runners (${flavour})`, { timeout: 240_000, skip: flavour === 'servers' ? serversSkip() : false }, () => {
    let t: TestKiln;
    let bobToken: string;
    let okId: string;
    let busyId: string;
    let tickId: string;
    let bobOkId: string;

    const as = (token: string) => (method: string, route: string, json?: unknown) => call<Json>(t.url, method, route, { token, ...(json === undefined ? {} : { json }) });
    const admin = () => as(t.adminToken)('GET', '/v1/testbed/runners');
    const invoke = (token: string, id: string, json: unknown = {}) => as(token)('POST', `/v1/versions/${id}/invoke`, json);

    /** Polls the admin listing until `check` holds (runners start asynchronously). */
    async function waitFor(check: (listing: Json) => boolean, what: string): Promise<Json> {
      for (let i = 0; i < 300; i++) {
        const listing = (await admin()).body;
        if (check(listing)) return listing;
        await sleep(50);
      }
      assert.fail(`gave up waiting for ${what}`);
    }

    before(async () => {
      t = await withEnv(TEST_ENV, () => startTestKiln({ flavour }));
      okId = await publish(t, OK_FUNCTION, { kind: 'wasi-command' });
      busyId = await publish(t, BUSY_FUNCTION, { kind: 'wasi-command' });
      tickId = await publish(t, TICK_STORM_FILTER, { kind: 'proxy-wasm' });
      const bob = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: `bob-${flavour}` } });
      bobToken = bob.body.token;
      bobOkId = await publish({ ...t, ownerToken: bobToken }, OK_FUNCTION, { kind: 'wasi-command' });
    });

    after(async () => {
      await t?.close();
    });

    it('runs a function in a runner process, never in the API process', async () => {
      const result = await invoke(t.ownerToken, okId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.equal(result.body.outcome, 'ok', JSON.stringify(result.body));
      assert.equal(Buffer.from(result.body.stdout.text).toString(), 'ok');
      const listing = await waitFor((l) => l.runners.length === 1, 'one local runner');
      assert.equal(listing.runners[0].origin, 'local');
      assert.notEqual(listing.runners[0].pid, process.pid, 'the runner is another process');
      assert.deepEqual(listing.localPids, [listing.runners[0].pid]);
      assert.equal(listing.slots, 2);
    });

    it('answers another owner 404 for a version it does not own, even while the version is cached', async () => {
      assert.equal((await invoke(t.ownerToken, okId)).body.outcome, 'ok');
      const foreign = await invoke(bobToken, okId);
      assert.equal(foreign.status, 404, JSON.stringify(foreign.body));
    });

    it('costs only the running call when its runner is killed with SIGKILL, and replaces the runner', async () => {
      const before = await waitFor((l) => l.runners.length === 1, 'a runner');
      const victimPid = before.runners[0].pid as number;
      const pending = invoke(t.ownerToken, busyId, { limits: { timeoutMs: 10_000 } });
      await waitFor((l) => (l.owners[Object.keys(l.owners)[0] ?? '']?.running ?? 0) >= 1, 'the busy call to be running');
      process.kill(victimPid, 'SIGKILL');
      const lost = await pending;
      assert.equal(lost.status, 200, JSON.stringify(lost.body));
      assert.equal(lost.body.outcome, 'runner_lost', JSON.stringify(lost.body));
      assert.match(lost.body.message, /runner/);
      const after = await waitFor((l) => l.runners.length === 1 && l.runners[0].pid !== victimPid, 'a replacement runner');
      assert.notEqual(after.runners[0].pid, victimPid);
      const next = await invoke(t.ownerToken, okId);
      assert.equal(next.body.outcome, 'ok', JSON.stringify(next.body));
      assert.equal((await call(t.url, 'GET', '/healthz')).status, 200, 'the API answers (it is this test process: same pid throughout)');
    });

    it("keeps another owner's calls succeeding while one owner runs busy loops and tick storms on every slot it may use", async () => {
      await waitFor((l) => l.slots === 2, 'two free slots');
      const heapBefore = process.memoryUsage().heapUsed;
      // A warm VM whose timer callback never returns: it hangs a worker in the background after every preview.
      const preview = await fetch(`${t.url}/preview/${tickId}/storm`, { headers: { authorization: `Bearer ${t.ownerToken}` } });
      assert.equal(preview.status, 200, await preview.text());
      // Then four calls: one runs (on the other slot: the hung one was freed last), one waits in the
      // owner's queue (KILN_TESTBED_OWNER_QUEUE=1), two are refused. The victim gets the hung slot.
      // The first loop's own limit outlasts the test's poll and the three calls that follow, however loaded the machine.
      const attacks = [invoke(t.ownerToken, busyId, { limits: { timeoutMs: 6_000 } })];
      await waitFor((l) => Object.values(l.owners as Record<string, { running: number }>).some((o) => o.running >= 1), 'the busy loop to run');
      attacks.push(invoke(t.ownerToken, tickId, { ticks: 1 }), invoke(t.ownerToken, busyId), invoke(t.ownerToken, busyId));
      const victim: Json[] = [];
      for (let i = 0; i < 8; i++) victim.push((await invoke(bobToken, bobOkId)).body);
      const attackResults = await Promise.all(attacks);
      for (const result of victim) assert.equal(result.outcome, 'ok', JSON.stringify(result));
      const refused = attackResults.filter((r) => r.status === 429);
      const ran = attackResults.filter((r) => r.status === 200);
      assert.equal(refused.length, 2, JSON.stringify(attackResults.map((r) => r.body)));
      for (const r of refused) {
        assert.equal(r.body.error.code, 'owner_concurrency_limit');
        assert.match(r.body.error.message, /KILN_TESTBED_OWNER_SLOTS/);
        assert.ok(Number(r.headers.get('retry-after')) >= 1);
      }
      assert.equal(ran.length, 2);
      for (const r of ran) assert.equal(r.body.outcome, 'timeout', JSON.stringify(r.body));
      // The API holds no guest state: its heap does not grow with what the modules did.
      assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'the API heap stays bounded');
      const after = await invoke(bobToken, bobOkId);
      assert.equal(after.body.outcome, 'ok');
    });

    it('gives each preview request a fresh instance when the version asks for it, and keeps the VM warm otherwise', async () => {
      const fresh = await publish(t, ONCE_PER_INSTANCE_FILTER, { kind: 'proxy-wasm', config: JSON.stringify({ preview: { freshInstance: true } }) });
      const warm = await publish(t, ONCE_PER_INSTANCE_FILTER, { kind: 'proxy-wasm', config: '{}' });
      const get = (id: string) => fetch(`${t.url}/preview/${id}/n`, { headers: { authorization: `Bearer ${t.ownerToken}` } });
      for (let i = 0; i < 3; i++) {
        const response = await get(fresh);
        assert.equal(response.status, 200, `fresh request ${i}: ${await response.text()}`);
        await response.arrayBuffer().catch(() => undefined);
      }
      const first = await get(warm);
      assert.equal(first.status, 200, await first.text());
      const second = await get(warm);
      assert.equal(second.status, 502, 'the warm VM remembers the first request (the control for the fresh case)');
      assert.equal(second.headers.get('x-kiln-outcome'), 'trap');
      await second.arrayBuffer();
    });

    it('stops serving a deleted version within the cache bound', async () => {
      const doomed = await publish(t, OK_FUNCTION, { kind: 'wasi-command' });
      assert.equal((await invoke(t.ownerToken, doomed)).body.outcome, 'ok');
      const deleted = await as(t.ownerToken)('DELETE', `/v1/versions/${doomed}`);
      assert.ok(deleted.status < 300, JSON.stringify(deleted.body));
      await sleep(Number(TEST_ENV.KILN_TESTBED_PREVIEW_CACHE_MS) + 50);
      assert.equal((await invoke(t.ownerToken, doomed)).status, 404);
    });
  });
}

describe('remote test bed runner (kiln testbed)', { timeout: 120_000 }, () => {
  let t: TestKiln;
  let okId: string;

  before(async () => {
    t = await withEnv({ ...TEST_ENV, KILN_TESTBED_RUNNERS: '0', KILN_TESTBED_QUEUE_WAIT_MS: '60000' }, () => startTestKiln());
    okId = await publish(t, OK_FUNCTION, { kind: 'wasi-command' });
  });

  after(async () => {
    await t?.close();
  });

  it('refuses a runner without a worker token', async () => {
    const child = spawn(KILN, ['testbed', '--api', t.url, '--token', t.ownerToken], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.notEqual(code, 0);
    assert.match(stderr, /401/);
  });

  it('serves calls from a separate kiln testbed process', async () => {
    const child = spawn(KILN, ['testbed', '--api', t.url, '--token', t.workerToken, '--slots', '1', '--name', 'far-away'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, KILN_LOG_LEVEL: 'warn' } });
    try {
      const result = await call<Json>(t.url, 'POST', `/v1/versions/${okId}/invoke`, { token: t.ownerToken, json: {} });
      assert.equal(result.body.outcome, 'ok', JSON.stringify(result.body));
      const listing = (await call<Json>(t.url, 'GET', '/v1/testbed/runners', { token: t.adminToken })).body;
      assert.equal(listing.runners.length, 1);
      assert.equal(listing.runners[0].origin, 'remote');
      assert.equal(listing.runners[0].name, 'far-away');
      assert.equal(listing.runners[0].pid, child.pid);
      assert.deepEqual(listing.localPids, []);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
});
