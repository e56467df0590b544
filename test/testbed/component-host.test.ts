/**
 * Unit tests of the pieces of the http-component host that decide what a
 * component may reach: the outgoing allow-list and the header fields rules.
 * (Components themselves run in test/testbed/components.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { outgoing } from '../../src/testbed/component/engine.ts';
import type { BridgeSend } from '../../src/testbed/component/bridge.ts';
import { bytesSource, createComponentHost, type OutgoingCall } from '../../src/testbed/component/wasi-http-host.ts';

const call = (scheme: string, authority: string): OutgoingCall => ({ method: 'GET', scheme, authority, pathWithQuery: '/', headers: [], body: new Uint8Array() });
const allowed = [{ name: 'backend', origin: 'http://127.0.0.1:8081' }];

describe('outgoing allow-list', () => {
  it('sends only calls to the exact origin (scheme, host and port) of an allowed upstream, by its name', () => {
    const sent: Array<{ upstream: string; timeoutMs: number }> = [];
    const send: BridgeSend = (upstream, _call, timeoutMs) => {
      sent.push({ upstream, timeoutMs });
      return { ok: true, status: 204, headers: [], body: bytesSource(new Uint8Array()) };
    };
    const answer = outgoing(call('http', '127.0.0.1:8081'), allowed, send, 250);
    assert.equal(answer.ok && answer.status, 204);
    assert.deepEqual(sent, [{ upstream: 'backend', timeoutMs: 250 }], 'sent once, as the upstream named backend');
    for (const [scheme, authority] of [
      ['http', '127.0.0.1:8082'],
      ['https', '127.0.0.1:8081'],
      ['http', '169.254.169.254'],
      ['http', 'localhost:8081'],
      ['http', '127.0.0.1:8081@evil.example'],
      ['file', ''],
    ] as const) {
      const refused = outgoing(call(scheme, authority), allowed, send);
      assert.deepEqual(refused.ok ? undefined : refused.error, { tag: 'HTTP-request-denied' }, `${scheme}://${authority}`);
    }
    const none = outgoing(call('http', '127.0.0.1:8081'), [], send);
    assert.deepEqual(none.ok ? undefined : none.error, { tag: 'HTTP-request-denied' }, 'an empty list allows nothing');
    assert.equal(sent.length, 1, 'nothing refused reached the bridge');
  });
});

describe('wasi:http host', () => {
  const host = createComponentHost({ maxBodyBytes: 16, maxLogBytes: 10 });
  type FieldsClass = new () => { append(name: string, value: Uint8Array): void; get(name: string): Uint8Array[] };
  const types = host.imports['wasi:http/types'] as { Fields: FieldsClass & { fromList(entries: Array<[string, Uint8Array]>): unknown } };

  it('refuses forbidden and malformed header names, and request headers are immutable', () => {
    const fields = new types.Fields();
    fields.append('X-Ok', new TextEncoder().encode('1'));
    assert.deepEqual(fields.get('x-ok').map((v) => new TextDecoder().decode(v)), ['1']);
    assert.throws(() => fields.append('host', new Uint8Array()), (error: unknown) => (error as { tag: string }).tag === 'forbidden');
    assert.throws(() => fields.append('bad name', new Uint8Array()), (error: unknown) => (error as { tag: string }).tag === 'invalid-syntax');
    const exchange = host.begin({ method: 'GET', pathWithQuery: '/', scheme: 'http', authority: 'x', headers: [['accept', '*/*'], ['host', 'dropped']], body: new Uint8Array() }, () => ({ ok: false, error: { tag: 'HTTP-request-denied' } }));
    const headers = exchange.request.headers();
    assert.deepEqual(headers.textPairs(), [['accept', '*/*']], 'hop-by-hop and host headers never reach the guest');
    assert.throws(() => headers.append('x-more', new Uint8Array()), (error: unknown) => (error as { tag: string }).tag === 'immutable');
  });

  it('gives no directories, no terminal and an empty stdin; keeps logs within their limit', () => {
    const preopens = host.imports['wasi:filesystem/preopens'] as { getDirectories(): unknown[] };
    assert.deepEqual(preopens.getDirectories(), []);
    const terminal = host.imports['wasi:cli/terminal-stdout'] as { getTerminalStdout(): unknown };
    assert.equal(terminal.getTerminalStdout(), undefined);
    const stdin = (host.imports['wasi:cli/stdin'] as { getStdin(): { read(n: bigint): Uint8Array } }).getStdin();
    assert.throws(() => stdin.read(10n), (error: unknown) => (error as { tag: string }).tag === 'closed');
    const exchange = host.begin({ method: 'GET', pathWithQuery: '/', scheme: 'http', authority: 'x', headers: [], body: new Uint8Array() }, () => ({ ok: false, error: { tag: 'HTTP-request-denied' } }));
    const stdout = (host.imports['wasi:cli/stdout'] as { getStdout(): { write(bytes: Uint8Array): void } }).getStdout();
    stdout.write(new TextEncoder().encode('short\nthis line is too long\n'));
    assert.deepEqual(exchange.record.logs, [{ stream: 'stdout', line: 'short' }]);
    assert.equal(exchange.record.droppedLogBytes, 'this line is too long'.length);
  });
});
