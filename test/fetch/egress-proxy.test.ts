/**
 * The fetch step's egress proxy with an attacker's inputs: its allow rules
 * (pure), and the real proxy on a unix socket in front of two local HTTP
 * servers — the "registry" and a "forbidden" one that must never see a
 * request.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { checkConnect, checkForwardUrl, egressTargetOf, type EgressTarget } from '../../src/fetch/egress-rules.ts';
import { startEgressProxy, type EgressProxy } from '../../src/fetch/egress-proxy.ts';

const npm: EgressTarget[] = [egressTargetOf(new URL('https://registry.npmjs.org/'))];
const local = (port: number): EgressTarget[] => [egressTargetOf(new URL(`http://127.0.0.1:${port}/index/`))];

describe('egress rules: CONNECT targets', () => {
  it('allows exactly the https registry host and port', () => {
    assert.equal(checkConnect('registry.npmjs.org:443', npm).allowed, true);
    assert.equal(checkConnect('REGISTRY.NPMJS.ORG:443', npm).allowed, true, 'host names are case-insensitive');
  });

  for (const [authority, why] of [
    ['registry.npmjs.org:22', 'another port'],
    ['registry.npmjs.org:4430', 'a port with the allowed one as prefix'],
    ['registry.npmjs.org.:443', 'a trailing dot'],
    ['evil.registry.npmjs.org:443', 'a subdomain'],
    ['registry.npmjs.org.evil.com:443', 'the name as a prefix'],
    ['104.16.0.35:443', 'an IP literal of the registry'],
    ['[::1]:443', 'an IPv6 literal'],
    ['127.0.0.1:443', 'loopback'],
    ['registry.npmjs.org', 'no port'],
    ['registry.npmjs.org:443@evil.com:443', 'userinfo tricks'],
    ['registry.npmjs.org:443 evil.com:443', 'two authorities'],
    ['registry.npmjs.org:0443', 'a zero-padded port still parses to 443'],
    ['registry.npmjs.org:443\r\nHost: x', 'header injection'],
    ['', 'nothing'],
  ] as const) {
    it(`refuses ${why}: ${JSON.stringify(authority)}`, () => {
      const decision = checkConnect(authority, npm);
      if (why === 'a zero-padded port still parses to 443') {
        // Same host, same port: harmless, and what the rule's Number() gives.
        assert.equal(decision.allowed, true);
        return;
      }
      assert.equal(decision.allowed, false);
    });
  }

  it('never tunnels to an http registry (a tunnel would carry anything)', () => {
    assert.equal(checkConnect('127.0.0.1:8080', local(8080)).allowed, false);
  });

  it('says what was refused and what is allowed, without control characters', () => {
    const decision = checkConnect('evil.com:443\u001b[31m', npm);
    assert.equal(decision.allowed, false);
    if (decision.allowed) return;
    assert.ok(!decision.destination.includes('\u001b'), decision.destination);
    const other = checkConnect('evil.com:443', npm);
    assert.ok(!other.allowed && /only the configured registry may be reached \(https:\/\/registry\.npmjs\.org:443\)/.test(other.reason));
  });
});

describe('egress rules: absolute-URI requests', () => {
  it('forwards only http URLs to the http registry host and port', () => {
    assert.equal(checkForwardUrl('http://127.0.0.1:8080/index/config.json', local(8080)).allowed, true);
    assert.equal(checkForwardUrl('http://127.0.0.1:8081/index/config.json', local(8080)).allowed, false, 'another port');
    assert.equal(checkForwardUrl('http://localhost:8080/x', local(8080)).allowed, false, 'another name for the same host');
    assert.equal(checkForwardUrl('http://2130706433:8080/x', local(8080)).allowed, true, 'WHATWG URL parsing normalizes the decimal form to 127.0.0.1 (same host)');
    assert.equal(checkForwardUrl('http://evil.com/x', local(8080)).allowed, false);
    assert.equal(checkForwardUrl('http://user:pw@127.0.0.1:8080/x', local(8080)).allowed, false, 'credentials');
    assert.equal(checkForwardUrl('/x', local(8080)).allowed, false, 'origin-form (Host header decides nothing)');
    assert.equal(checkForwardUrl('https://127.0.0.1:8080/x', local(8080)).allowed, false, 'https must use CONNECT');
    assert.equal(checkForwardUrl('http://registry.npmjs.org:443/x', npm).allowed, false, 'plain http to an https registry');
    assert.equal(checkForwardUrl('ftp://127.0.0.1:8080/x', local(8080)).allowed, false);
  });
});

describe('the egress proxy on its unix socket', () => {
  let registry: http.Server;
  let forbidden: http.Server;
  let registryPort: number;
  let forbiddenPort: number;
  const forbiddenHits: string[] = [];
  let proxy: EgressProxy;
  const refused: string[] = [];

  before(async () => {
    registry = http.createServer((request, response) => {
      if (request.url === '/index/redirect') {
        response.writeHead(302, { location: `http://127.0.0.1:${forbiddenPort}/stolen` });
        response.end();
        return;
      }
      if (request.url === '/index/big') {
        response.end(Buffer.alloc(256 * 1024, 1));
        return;
      }
      response.end(`registry saw ${request.url} host=${request.headers.host}`);
    });
    forbidden = http.createServer((request, response) => {
      forbiddenHits.push(request.url ?? '');
      response.end('you should not see this');
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => forbidden.listen(0, '127.0.0.1', resolve));
    registryPort = (registry.address() as AddressInfo).port;
    forbiddenPort = (forbidden.address() as AddressInfo).port;
    proxy = await startEgressProxy({ allowed: local(registryPort), limits: { downloadBytes: 128 * 1024 }, onRefused: (destination) => refused.push(destination) });
  });
  after(async () => {
    await proxy?.close();
    registry?.close();
    forbidden?.close();
  });

  /** Sends raw bytes to the proxy socket and returns everything it answers. */
  function raw(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(proxy.socketPath);
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      socket.on('error', reject);
      socket.setTimeout(10_000, () => socket.destroy(new Error('timeout')));
      socket.write(request);
    });
  }

  it('forwards a GET to the registry and rewrites the Host header to the registry', async () => {
    const answer = await raw(`GET http://127.0.0.1:${registryPort}/index/config.json HTTP/1.1\r\nHost: evil.com\r\nConnection: close\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 200/);
    assert.match(answer, new RegExp(`registry saw /index/config.json host=127.0.0.1:${registryPort}`));
  });

  it('refuses another host, another port and Host-header tricks with a 403 that says why', async () => {
    const other = await raw(`GET http://127.0.0.1:${forbiddenPort}/x HTTP/1.1\r\nHost: 127.0.0.1:${registryPort}\r\nConnection: close\r\n\r\n`);
    assert.match(other, /^HTTP\/1\.1 403/);
    assert.match(other, /refused 127\.0\.0\.1:\d+: only the configured registry may be reached/);
    const originForm = await raw(`GET /x HTTP/1.1\r\nHost: 127.0.0.1:${forbiddenPort}\r\nConnection: close\r\n\r\n`);
    assert.match(originForm, /^HTTP\/1\.1 403/);
    const tunnel = await raw(`CONNECT 127.0.0.1:${forbiddenPort} HTTP/1.1\r\nHost: 127.0.0.1:${forbiddenPort}\r\n\r\n`);
    assert.match(tunnel, /^HTTP\/1\.1 403/);
    const tunnelToRegistry = await raw(`CONNECT 127.0.0.1:${registryPort} HTTP/1.1\r\n\r\n`);
    assert.match(tunnelToRegistry, /^HTTP\/1\.1 403/, 'no raw tunnel to an http registry');
    assert.deepEqual(forbiddenHits, []);
    assert.ok(refused.includes(`127.0.0.1:${forbiddenPort}`), JSON.stringify(refused));
  });

  it('passes a redirect to another host through without following it', async () => {
    const answer = await raw(`GET http://127.0.0.1:${registryPort}/index/redirect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 302/);
    const followed = await raw(`GET http://127.0.0.1:${forbiddenPort}/stolen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.match(followed, /^HTTP\/1\.1 403/);
    assert.deepEqual(forbiddenHits, []);
  });

  it('refuses methods other than GET and HEAD', async () => {
    const answer = await raw(`POST http://127.0.0.1:${registryPort}/index/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 405/);
  });

  it('cuts the session at the download limit and reports it', async () => {
    const answer = await raw(`GET http://127.0.0.1:${registryPort}/index/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`).catch(() => '');
    assert.ok(answer.length < 256 * 1024, `received ${answer.length} bytes`);
    assert.equal(proxy.report().downloadLimitHit, true);
  });
});
