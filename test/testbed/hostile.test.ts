/**
 * The hostile-module corpus: filters built through the real pipeline (C and
 * Rust — Debian's 1.63, raw ABI, no crates — in the bubblewrap sandbox, then uploaded as a version's build and run by the
 * API's test bed) try to grow the host without bound while a second owner
 * keeps invoking a normal filter. Each case asserts that the API is the same
 * process and still answers, that every victim call succeeded, that the
 * attacker's call ended at the named limit, and that the memory of the
 * process running the modules (here the API's: its worker threads) stays
 * within a generous bound. Run against both storage backends.
 *
 * Busy loops, tick storms and killed runners belong to the runner-process
 * suite, not here.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { s3Skip } from '../support/backends.ts';
import { call, startTestKiln } from '../support/kiln.ts';
import type { StorageFlavour, TestKiln } from '../support/kiln.ts';
import { FIXTURE_ABI_H, FIXTURES, publish, SandboxBuilder, sandboxSkip } from './support.ts';
import type { Json } from './support.ts';
import { filterWat, wat } from './wat.ts';

const skip = await sandboxSkip();
const MIB = 1024 * 1024;
/** RSS may grow this much over a case (worker heaps warming up, module caches); the leaks found grew GiBs. */
const RSS_BOUND = 400 * MIB;

/** A filter that grows an externref and a funcref table by millions of entries, then reports what table.grow said. */
const TABLE_GROWER = filterWat(
  `(table $ext 0 externref) (table $fn 1 funcref)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $r i32)
    (loop $more
      (local.set $r (table.grow $ext (ref.null extern) (i32.const 1000000)))
      (drop (table.grow $fn (ref.null func) (i32.const 1000000)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 50))))
    (if (i32.eq (local.get $r) (i32.const -1)) (then (unreachable)))
    (i32.const 0))`,
);

interface Flavour {
  name: string;
  flavour: StorageFlavour;
  skip: string | false;
}

const FLAVOURS: Flavour[] = [
  { name: 'embedded (PGlite + filesystem)', flavour: 'embedded', skip: false },
  { name: 'servers (PostgreSQL + S3)', flavour: 'servers', skip: s3Skip() || (process.env.KILN_TEST_DATABASE_URL ? false : 'KILN_TEST_DATABASE_URL is not set') },
];

let builder: SandboxBuilder;
let hostileModule: Uint8Array;
let rustModule: Uint8Array;
let victimModule: Uint8Array;

describe('hostile modules', { skip, timeout: 600_000 }, () => {
  before(async () => {
    builder = new SandboxBuilder();
    hostileModule = await builder.build(`${FIXTURES}hostile-filter`, undefined, FIXTURE_ABI_H);
    rustModule = await builder.build(`${FIXTURES}hostile-rust`);
    victimModule = await builder.build(`${FIXTURES}abi-filter`);
  });
  after(() => builder?.dispose());

  for (const flavour of FLAVOURS) {
    describe(flavour.name, { skip: flavour.skip }, () => {
      let t: TestKiln;
      let attacker: string;
      let rustAttacker: string;
      let tableAttacker: string;
      let victim: string;
      let victimToken: string;

      before(async () => {
        t = await startTestKiln({ flavour: flavour.flavour, env: { KILN_TESTBED_WORKERS: '1', KILN_TESTBED_MAX_HTTP_CALL_ROUNDS: '8' } });
        process.env.KILN_TESTBED_WORKERS = '1';
        attacker = await publish(t, hostileModule, { kind: 'proxy-wasm', name: 'attacker' });
        rustAttacker = await publish(t, rustModule, { kind: 'proxy-wasm', name: 'rust-attacker' });
        // clang 14 with Kiln's link flags cannot emit a growable table: this one module is our own WAT, uploaded as the build.
        tableAttacker = await publish(t, wat(TABLE_GROWER), { kind: 'proxy-wasm', name: 'table-attacker' });
        const bob = await call<Json>(t.url, 'POST', '/v1/owners', { token: t.adminToken, json: { name: `victim-${flavour.flavour}` } });
        victimToken = bob.body.token as string;
        victim = await publish({ ...t, ownerToken: victimToken }, victimModule, { kind: 'proxy-wasm', name: 'victim' });
        // Prepared (compiled) before the first attack, so the first case does not time the compile.
        assert.equal((await invoke(victimToken, victim, '/anything', 10_000)).status, 200);
      });
      after(async () => {
        await t?.close();
        delete process.env.KILN_TESTBED_WORKERS;
      });

      // The attacker gets the longest deadline: on a shared 2-core machine its floods are slow, and a
      // deadline kill would replace the one worker (aborting the victim's call: the runner suite's subject).
      const invoke = (token: string, id: string, path: string, timeoutMs = 2_000) =>
        call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token, json: { request: { method: 'POST', path, body: { text: 'x' } }, limits: { timeoutMs } } });

      /**
       * Runs `attack` while the victim owner invokes its filter in a loop;
       * returns the attack's results after checking the victim and the process.
       */
      async function underAttack(attack: () => Promise<Array<Awaited<ReturnType<typeof invoke>>>>) {
        const pid = process.pid;
        const rssBefore = process.memoryUsage().rss;
        let attacking = true;
        const victimCalls: Array<Awaited<ReturnType<typeof invoke>>> = [];
        const victimLoop = (async () => {
          // A long deadline: time fairness under load is the runner suite's subject; this one is about host resources.
          while (attacking || victimCalls.length === 0) victimCalls.push(await invoke(victimToken, victim, '/anything', 10_000));
        })();
        let results: Array<Awaited<ReturnType<typeof invoke>>>;
        try {
          results = await attack();
        } finally {
          attacking = false;
          await victimLoop;
        }
        for (const answer of victimCalls) {
          assert.equal(answer.status, 200, JSON.stringify(answer.body).slice(0, 500));
          assert.equal(answer.body.outcome, 'ok', answer.body.message);
        }
        const health = await call(t.url, 'GET', '/healthz');
        assert.equal(health.status, 200, 'the API still answers');
        assert.equal(process.pid, pid, 'the API is the same process');
        const grown = process.memoryUsage().rss - rssBefore;
        assert.ok(grown < RSS_BOUND, `RSS grew ${Math.round(grown / MIB)} MiB during the attack`);
        return results;
      }

      const repeat = async (times: number, path: string, id = attacker) => {
        const out = [];
        for (let i = 0; i < times; i++) out.push(await invoke(t.ownerToken, id, path, 10_000));
        return out;
      };

      it('table growth by millions of entries fails at the table cap', async () => {
        const [answer] = await underAttack(() => repeat(3, '/', tableAttacker));
        assert.equal(answer?.status, 200);
        // table.grow answered -1 at the cap, so the module trapped on purpose instead of exhausting V8's heap.
        assert.equal(answer?.body.outcome, 'trap', JSON.stringify(answer?.body).slice(0, 500));
      });

      it('a VM chaining HTTP calls past the round limit is dropped every time (no leak)', async () => {
        // Each VM holds 24 MiB of touched memory: 24 leaked VMs would be 576 MiB, over the RSS bound.
        const answers = await underAttack(() => repeat(24, '/chain'));
        for (const answer of answers) {
          assert.equal(answer.status, 200);
          assert.equal(answer.body.outcome, 'limit_exceeded', answer.body.message);
          assert.equal(answer.body.limit, 'maxHttpCallRounds');
        }
      });

      it('header floods stop at the header limits', async () => {
        const [answer] = await underAttack(() => repeat(3, '/headers'));
        assert.equal(answer?.body.outcome, 'ok', answer?.body.message);
        assert.ok(answer?.body.limitsHit.includes('maxHeaderBytes'), JSON.stringify(answer?.body.limitsHit));
        assert.ok((answer?.raw.length ?? Infinity) < 2 * MIB, `the result is ${answer?.raw.length} bytes`);
      });

      it('body floods stop at maxBodyBytes, and an echoed body is not rendered whole', async () => {
        const [body, echo] = await underAttack(async () => [...(await repeat(1, '/body')), ...(await repeat(1, '/echo'))]);
        assert.ok(body?.body.limitsHit.includes('maxBodyBytes'), JSON.stringify(body?.body.limitsHit));
        assert.equal(body?.body.response.status, 413, 'the 16 MiB local response was refused');
        assert.ok(echo?.body.limitsHit.includes('maxBodyBytes'));
        assert.equal(echo?.body.response.body.truncated, true);
        assert.ok((echo?.raw.length ?? Infinity) < 4 * MIB, `the result is ${echo?.raw.length} bytes`);
      });

      it('request smuggling through proxy_http_call headers is refused', async () => {
        const [answer] = await underAttack(() => repeat(1, '/smuggle'));
        const forwarded = answer?.body.request.headers as Array<[string, string]>;
        const status = (key: string) => forwarded.find(([k]) => k === key)?.[1];
        assert.equal(status('x-host-status'), '2', 'BAD_ARGUMENT for a second Host');
        assert.equal(status('x-te-status'), '2', 'BAD_ARGUMENT for Transfer-Encoding with Content-Length');
        assert.equal(status('x-crlf-status'), '2', 'BAD_ARGUMENT for CRLF in a value');
        assert.deepEqual(answer?.body.httpCalls, []);
      });

      it('log floods keep maxLogLines lines', async () => {
        const [answer] = await underAttack(() => repeat(2, '/logs'));
        assert.equal(answer?.body.logs.length, 1000);
        assert.ok(answer?.body.limitsHit.includes('maxLogLines'));
      });

      it('Rust: a VM chaining HTTP calls is dropped every time, header floods and shared data floods stop at their limits, smuggling is refused', async () => {
        const answers = await underAttack(async () => [...(await repeat(24, '/chain', rustAttacker)), ...(await repeat(1, '/headers', rustAttacker)), ...(await repeat(1, '/shared', rustAttacker)), ...(await repeat(1, '/smuggle', rustAttacker))]);
        const [headers, shared, smuggle] = answers.slice(24);
        for (const answer of answers.slice(0, 24)) {
          assert.equal(answer.body.outcome, 'limit_exceeded', answer.body.message);
          assert.equal(answer.body.limit, 'maxHttpCallRounds');
        }
        assert.ok(headers?.body.limitsHit.includes('maxHeaderBytes'), JSON.stringify(headers?.body.limitsHit));
        const header = (answer: Json | undefined, key: string) => (answer?.body.request.headers as Array<[string, string]>).find(([k]) => k === key)?.[1];
        assert.equal(header(shared, 'x-shared-status'), '10');
        assert.equal(header(smuggle, 'x-te-status'), '2');
        assert.equal(header(smuggle, 'x-crlf-status'), '2');
        assert.deepEqual(smuggle?.body.httpCalls, []);
      });

      it('shared data and queue floods stop at the owner limits', async () => {
        const [shared, queue] = await underAttack(async () => [...(await repeat(1, '/shared')), ...(await repeat(1, '/queue'))]);
        const header = (answer: Json | undefined, key: string) => (answer?.body.request.headers as Array<[string, string]>).find(([k]) => k === key)?.[1];
        assert.equal(header(shared, 'x-shared-status'), '10', 'INTERNAL_FAILURE once the owner holds its limit');
        assert.ok(shared?.body.limitsHit.some((name: string) => name === 'maxSharedKeys' || name === 'maxSharedBytes'));
        assert.equal(header(queue, 'x-queue-status'), '10');
        assert.ok(queue?.body.limitsHit.includes('maxQueueDepth'));
      });
    });
  }
});
