/**
 * The hostile-module corpus: filters built through the real pipeline (C and
 * Rust — Debian's 1.63, raw ABI, no crates — in the bubblewrap sandbox, then uploaded as a version's build and run by the
 * API's test bed) try to grow the host without bound while a second owner
 * keeps invoking a normal filter. Each case asserts that the API is the same
 * process and still answers, that every victim call succeeded, that the
 * attacker's call ended at the named limit, and that the memory of the API
 * process and of the runner process (where the modules run) stays within a
 * generous bound, the runner being the same process afterwards. Run against
 * both storage backends.
 *
 * The outgoing paths are attacked too: an http-component (JavaScript, built
 * by componentize-js in the sandbox) floods fetch() at an allowed upstream
 * that answers without end or never answers, and a filter floods gRPC calls
 * (16 MiB messages, a stream fed until refused, calls from every answer) at
 * a gRPC upstream with methods that hang or answer without end. Those cases
 * also check that no upstream stream is left open.
 *
 * Busy loops, tick storms and killed runners belong to the runner-process
 * suite, not here.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toolchainDir } from '../../src/languages/javascript/toolchain.ts';
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

/** The suite's maxHttpCallResponseBytes (1 MiB by default). */
const CALL_RESPONSE_LIMIT_BYTES = 64 * 1024;
/** What a flooding upstream writes at most per request: far past maxHttpCallResponseBytes. */
const ENDLESS_BYTES = 64 * MIB;
/** The upstream timeout the suite runs with: the hanging upstreams' calls end at it (limit upstreamTimeoutMs). */
const UPSTREAM_TIMEOUT_MS = 1_000;

interface Upstream {
  port: number;
  /** Requests (or gRPC calls) seen, by path. */
  seen: Map<string, number>;
  /** Requests or streams still open (a hanging one stays open until the test bed gives up on it). */
  open(): number;
  close(): void;
}

/** Writes ENDLESS_BYTES in 64 KiB chunks, as fast as the reader takes them, until it goes away. */
function pump(out: NodeJS.WritableStream & { destroyed: boolean }, first?: Buffer): void {
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  let sent = 0;
  if (first) out.write(first);
  const more = (): void => {
    while (!out.destroyed && sent < ENDLESS_BYTES) {
      sent += chunk.length;
      if (!out.write(chunk)) {
        out.once('drain', more);
        return;
      }
    }
    if (!out.destroyed) out.end();
  };
  more();
}

function counted(seen: Map<string, number>, path: string): void {
  seen.set(path, (seen.get(path) ?? 0) + 1);
}

/** An allowed HTTP upstream: /endless answers ENDLESS_BYTES, /hang never answers, anything else "ok". */
async function startHttpUpstream(): Promise<Upstream> {
  const seen = new Map<string, number>();
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((request, response) => {
    const path = request.url ?? '/';
    counted(seen, path);
    open.add(response);
    response.on('close', () => open.delete(response));
    if (path === '/endless') {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      pump(response);
    } else if (path !== '/hang') response.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    open: () => open.size,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** gRPC's length prefix for one message of `length` bytes. */
function grpcPrefix(length: number): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/** kiln.test.Echo for the floods: Hang never answers, Huge answers one message without end, the rest answer "pong". */
async function startGrpcUpstream(): Promise<Upstream> {
  const seen = new Map<string, number>();
  const open = new Set<http2.ServerHttp2Stream>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    counted(seen, path);
    open.add(stream);
    stream.on('close', () => open.delete(stream));
    stream.on('error', () => undefined);
    stream.resume();
    if (path.endsWith('/Hang')) return;
    stream.on('end', () => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      if (path.endsWith('/Huge')) pump(stream, grpcPrefix(ENDLESS_BYTES));
      else stream.end(Buffer.concat([grpcPrefix(4), Buffer.from('pong')]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    open: () => [...open].filter((stream) => !stream.closed).length,
    close: () => {
      for (const session of sessions) session.destroy();
      server.close();
    },
  };
}

/** Why the JavaScript component case cannot run here (then it skips), or false. */
async function componentToolchainSkip(): Promise<string | false> {
  try {
    await access(join(toolchainDir(), 'node_modules/@bytecodealliance/componentize-js/package.json'));
    return false;
  } catch {
    return 'the JavaScript component toolchain is not installed (bash scripts/install-js-toolchain.sh)';
  }
}
const componentSkip = skip || (await componentToolchainSkip());

/** The resident memory of a process, from /proc (the runners are other processes than this one). */
async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  assert.ok(kib, `no VmRSS for ${pid}`);
  return Number(kib) * 1024;
}

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
let grpcFloodModule: Uint8Array;
let fetchFloodComponent: Uint8Array | undefined;
let httpUpstream: Upstream;
let grpcUpstream: Upstream;

describe('hostile modules', { skip, timeout: 600_000 }, () => {
  before(async () => {
    builder = new SandboxBuilder();
    hostileModule = await builder.build(`${FIXTURES}hostile-filter`, undefined, FIXTURE_ABI_H);
    rustModule = await builder.build(`${FIXTURES}hostile-rust`);
    victimModule = await builder.build(`${FIXTURES}abi-filter`);
    grpcFloodModule = await builder.build(`${FIXTURES}hostile-grpc`, undefined, { 'src/abi.h': `${FIXTURES}grpc-filter/src/abi.h` });
    if (!componentSkip) fetchFloodComponent = await builder.build(`${FIXTURES}hostile-component`, 'http-component');
    httpUpstream = await startHttpUpstream();
    grpcUpstream = await startGrpcUpstream();
  });
  after(async () => {
    httpUpstream?.close();
    grpcUpstream?.close();
    await builder?.dispose();
  });

  for (const flavour of FLAVOURS) {
    describe(flavour.name, { skip: flavour.skip }, () => {
      let t: TestKiln;
      let attacker: string;
      let rustAttacker: string;
      let tableAttacker: string;
      let grpcAttacker: string;
      let componentAttacker: string | undefined;
      let victim: string;
      let victimToken: string;

      before(async () => {
        t = await startTestKiln({
          flavour: flavour.flavour,
          env: {
            KILN_TESTBED_WORKERS: '1',
            KILN_TESTBED_MAX_HTTP_CALL_ROUNDS: '8',
            // The outgoing floods' upstreams (the other cases use the built-in echo, answered in the runner).
            KILN_TESTBED_UPSTREAMS: `grpc=http://127.0.0.1:${grpcUpstream.port},backend=http://127.0.0.1:${httpUpstream.port}`,
            KILN_TESTBED_UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
            // Reached in the first reads of an endless answer: the flood's queued calls must meet this
            // limit, not their upstream timeout, even when a loaded machine reads slowly.
            KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES: String(CALL_RESPONSE_LIMIT_BYTES),
          },
        });
        process.env.KILN_TESTBED_WORKERS = '1';
        attacker = await publish(t, hostileModule, { kind: 'proxy-wasm', name: 'attacker' });
        rustAttacker = await publish(t, rustModule, { kind: 'proxy-wasm', name: 'rust-attacker' });
        // clang 14 with Kiln's link flags cannot emit a growable table: this one module is our own WAT, uploaded as the build.
        tableAttacker = await publish(t, wat(TABLE_GROWER), { kind: 'proxy-wasm', name: 'table-attacker' });
        grpcAttacker = await publish(t, grpcFloodModule, { kind: 'proxy-wasm', name: 'grpc-attacker' });
        if (fetchFloodComponent) componentAttacker = await publish(t, fetchFloodComponent, { kind: 'http-component', name: 'fetch-attacker' });
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

      /** The local runners' pids (the test bed's admin listing). */
      const runnerPids = async (): Promise<number[]> => {
        const listing = await call<Json>(t.url, 'GET', '/v1/testbed/runners', { token: t.adminToken });
        return (listing.body.runners as Json[]).map((runner) => runner.pid as number).sort();
      };

      /**
       * underAttack, and the runner process too: the outgoing floods run
       * there, so it must be the same process afterwards (nothing crashed)
       * with its memory within the same bound.
       */
      async function runnerUnderAttack(attack: () => Promise<Array<Awaited<ReturnType<typeof invoke>>>>) {
        // The victim's first call starts the runner (and warms its filter) if no case ran before.
        assert.equal((await invoke(victimToken, victim, '/anything', 10_000)).status, 200);
        const pids = await runnerPids();
        assert.ok(pids.length > 0, 'a local runner is running');
        const rssBefore = await Promise.all(pids.map(rssOf));
        const results = await underAttack(attack);
        assert.deepEqual(await runnerPids(), pids, 'the runner is the same process');
        for (const [index, pid] of pids.entries()) {
          const grown = (await rssOf(pid)) - (rssBefore[index] ?? 0);
          assert.ok(grown < RSS_BOUND, `the runner's RSS grew ${Math.round(grown / MIB)} MiB during the attack`);
        }
        return results;
      }

      /** Waits until `upstream` holds no open request or stream (the test bed ended what it started). */
      async function drained(upstream: Upstream): Promise<number> {
        for (let i = 0; i < 100 && upstream.open() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
        return upstream.open();
      }

      it('table growth by millions of entries fails at the table cap', async () => {
        const [answer] = await runnerUnderAttack(() => repeat(3, '/', tableAttacker));
        assert.equal(answer?.status, 200);
        // table.grow answered -1 at the cap, so the module trapped on purpose instead of exhausting V8's heap.
        assert.equal(answer?.body.outcome, 'trap', JSON.stringify(answer?.body).slice(0, 500));
      });

      it('a VM chaining HTTP calls past the round limit is dropped every time (no leak)', async () => {
        // Each VM holds 24 MiB of touched memory: 24 leaked VMs would be 576 MiB of the runner's RSS, over the bound.
        const answers = await runnerUnderAttack(() => repeat(24, '/chain'));
        for (const answer of answers) {
          assert.equal(answer.status, 200);
          assert.equal(answer.body.outcome, 'limit_exceeded', answer.body.message);
          assert.equal(answer.body.limit, 'maxHttpCallRounds');
        }
      });

      it('header floods stop at the header limits', async () => {
        const [answer] = await runnerUnderAttack(() => repeat(3, '/headers'));
        assert.equal(answer?.body.outcome, 'ok', answer?.body.message);
        assert.ok(answer?.body.limitsHit.includes('maxHeaderBytes'), JSON.stringify(answer?.body.limitsHit));
        assert.ok((answer?.raw.length ?? Infinity) < 2 * MIB, `the result is ${answer?.raw.length} bytes`);
      });

      it('body floods stop at maxBodyBytes, and an echoed body is not rendered whole', async () => {
        const [body, echo] = await runnerUnderAttack(async () => [...(await repeat(1, '/body')), ...(await repeat(1, '/echo'))]);
        assert.ok(body?.body.limitsHit.includes('maxBodyBytes'), JSON.stringify(body?.body.limitsHit));
        assert.equal(body?.body.response.status, 413, 'the 16 MiB local response was refused');
        assert.ok(echo?.body.limitsHit.includes('maxBodyBytes'));
        assert.equal(echo?.body.response.body.truncated, true);
        assert.ok((echo?.raw.length ?? Infinity) < 4 * MIB, `the result is ${echo?.raw.length} bytes`);
      });

      it('request smuggling through proxy_http_call headers is refused', async () => {
        const [answer] = await runnerUnderAttack(() => repeat(1, '/smuggle'));
        const forwarded = answer?.body.request.headers as Array<[string, string]>;
        const status = (key: string) => forwarded.find(([k]) => k === key)?.[1];
        assert.equal(status('x-host-status'), '2', 'BAD_ARGUMENT for a second Host');
        assert.equal(status('x-te-status'), '2', 'BAD_ARGUMENT for Transfer-Encoding with Content-Length');
        assert.equal(status('x-crlf-status'), '2', 'BAD_ARGUMENT for CRLF in a value');
        assert.deepEqual(answer?.body.httpCalls, []);
      });

      it('log floods keep maxLogLines lines', async () => {
        const [answer] = await runnerUnderAttack(() => repeat(2, '/logs'));
        assert.equal(answer?.body.logs.length, 1000);
        assert.ok(answer?.body.limitsHit.includes('maxLogLines'));
      });

      it('Rust: a VM chaining HTTP calls is dropped every time, header floods and shared data floods stop at their limits, smuggling is refused', async () => {
        const answers = await runnerUnderAttack(async () => [...(await repeat(24, '/chain', rustAttacker)), ...(await repeat(1, '/headers', rustAttacker)), ...(await repeat(1, '/shared', rustAttacker)), ...(await repeat(1, '/smuggle', rustAttacker))]);
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
        const [shared, queue] = await runnerUnderAttack(async () => [...(await repeat(1, '/shared')), ...(await repeat(1, '/queue'))]);
        const header = (answer: Json | undefined, key: string) => (answer?.body.request.headers as Array<[string, string]>).find(([k]) => k === key)?.[1];
        assert.equal(header(shared, 'x-shared-status'), '10', 'INTERNAL_FAILURE once the owner holds its limit');
        assert.ok(shared?.body.limitsHit.some((name: string) => name === 'maxSharedKeys' || name === 'maxSharedBytes'));
        assert.equal(header(queue, 'x-queue-status'), '10');
        assert.ok(queue?.body.limitsHit.includes('maxQueueDepth'));
      });

      it('gRPC floods: calls past maxHttpCalls are refused, calls from every answer stop at maxHttpCallRounds, a hanging upstream at upstreamTimeoutMs (VMs dropped, streams closed)', async () => {
        const hangsBefore = grpcUpstream.seen.get('/kiln.test.Echo/Hang') ?? 0;
        // Each VM holds 24 MiB of touched memory: 24 leaked VMs would be 576 MiB of the runner's RSS, over the bound.
        const answers = await runnerUnderAttack(() => repeat(24, '/grpc-flood', grpcAttacker));
        for (const answer of answers) {
          assert.equal(answer.status, 200, JSON.stringify(answer.body).slice(0, 500));
          assert.equal(answer.body.outcome, 'limit_exceeded', answer.body.message);
          assert.equal(answer.body.limit, 'maxHttpCallRounds');
          assert.ok(answer.body.limitsHit.includes('maxHttpCalls'), JSON.stringify(answer.body.limitsHit));
          assert.ok(answer.body.limitsHit.includes('upstreamTimeoutMs'), JSON.stringify(answer.body.limitsHit));
          const calls = answer.body.httpCalls as Json[];
          // 16 calls at once (maxHttpCalls) in each of 8 rounds: the 10,000 tried at first and the 100 from each answer never went out.
          assert.ok(calls.length <= 16 * 8, `${calls.length} gRPC calls were made`);
          assert.equal(calls.filter((made) => made.path === '/kiln.test.Echo/Hang').length, 16);
        }
        assert.equal((grpcUpstream.seen.get('/kiln.test.Echo/Hang') ?? 0) - hangsBefore, 16 * answers.length, 'only maxHttpCalls hanging calls per request reached the upstream');
        assert.equal(await drained(grpcUpstream), 0, 'every hanging gRPC stream was cancelled');
      });

      it('gRPC floods: a 16 MiB message and an overfed stream stop at maxBodyBytes, an endless answer at maxHttpCallResponseBytes', async () => {
        const [answer] = await runnerUnderAttack(() => repeat(1, '/grpc-big', grpcAttacker));
        assert.equal(answer?.body.outcome, 'ok', answer?.body.message);
        assert.equal(answer?.body.response.status, 503, JSON.stringify(answer?.body).slice(0, 1000));
        // INTERNAL_FAILURE for the 16 MiB message; a stream's maxBodyBytes (8 MiB) counts what goes on the wire, each
        // message with its 5-byte prefix: 7 of 1 MiB fit, the 8th is BAD_ARGUMENT; the endless answer closes
        // RESOURCE_EXHAUSTED (8).
        assert.match(answer?.body.response.body.text, /^big=10 sent=7 refused=2 closed 8: the answer is larger than \d+ bytes \(limit maxHttpCallResponseBytes\)$/);
        assert.ok(answer?.body.limitsHit.includes('maxBodyBytes'), JSON.stringify(answer?.body.limitsHit));
        assert.ok(answer?.body.limitsHit.includes('maxHttpCallResponseBytes'), JSON.stringify(answer?.body.limitsHit));
        assert.equal(await drained(grpcUpstream), 0, 'the endless gRPC answer was cancelled');
      });

      /** Enough refused calls to make an unbounded listing large; few enough to finish within the call's deadline on a loaded machine. */
      const FLOOD_FETCHES = 1_000;

      it('fetch() floods from a component: endless answers stop at maxHttpCallResponseBytes, calls past maxHttpCalls are refused and only counted, a hanging upstream ends at upstreamTimeoutMs', { skip: componentSkip }, async () => {
        const endlessBefore = httpUpstream.seen.get('/endless') ?? 0;
        const endless = encodeURIComponent(`http://127.0.0.1:${httpUpstream.port}/endless`);
        const hang = encodeURIComponent(`http://127.0.0.1:${httpUpstream.port}/hang`);
        const id = componentAttacker as string;
        const [flood, hanging] = await runnerUnderAttack(async () => [
          ...(await repeat(1, `/flood?to=${endless}&n=${FLOOD_FETCHES}&together=8`, id)),
          ...(await repeat(1, `/flood?to=${hang}&n=3`, id)),
        ]);
        assert.equal(flood?.status, 200, JSON.stringify(flood?.body).slice(0, 500));
        assert.equal(flood?.body.outcome, 'ok', flood?.body.message);
        assert.match(flood?.body.response.body.text, new RegExp(`^ok=0 failed=${FLOOD_FETCHES} `));
        const records = flood?.body.outgoing as Json[];
        assert.equal(records.length, 64, 'the first 64 calls are listed');
        assert.equal(flood?.body.droppedOutgoing, FLOOD_FETCHES - 64, 'the others are counted');
        for (const record of records.slice(0, 16)) assert.equal(record.limit, 'maxHttpCallResponseBytes', JSON.stringify(record));
        for (const record of records.slice(16)) assert.equal(record.limit, 'maxHttpCalls', JSON.stringify(record));
        assert.equal((httpUpstream.seen.get('/endless') ?? 0) - endlessBefore, 16, 'only maxHttpCalls calls reached the upstream');
        assert.ok((flood?.raw.length ?? Infinity) < 256 * 1024, `the result is ${flood?.raw.length} bytes`);

        assert.equal(hanging?.body.outcome, 'ok', hanging?.body.message);
        assert.match(hanging?.body.response.body.text, /^ok=0 failed=3 /);
        assert.deepEqual((hanging?.body.outgoing as Json[]).map((record) => record.limit), ['upstreamTimeoutMs', 'upstreamTimeoutMs', 'upstreamTimeoutMs']);
        assert.equal(await drained(httpUpstream), 0, 'every hanging request was closed');
      });
    });
  }
});
