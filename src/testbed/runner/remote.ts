/**
 * Remote runners (`kiln testbed --api URL --token T`) reach the API the way
 * a browser reaches a WebSocket: an HTTP/1.1 request to
 * RUNNER_CONNECT_PATH with `Upgrade: kiln-runner` and a worker token; the
 * API answers 101 and both sides speak the wire protocol (wire.ts) on the
 * socket from then on. The runner dials out, so it needs no open port, and
 * the API authenticates it before it is offered any call (decision 0012).
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

export const RUNNER_CONNECT_PATH = '/internal/v1/testbed/connect';
export const RUNNER_PROTOCOL = 'kiln-runner';

/** Checks a bearer token; true for a token allowed to run tenant modules (a worker token). */
export type RunnerAuthenticator = (token: string) => Promise<boolean>;

/**
 * Handles upgrade requests on the API's server: ours are authenticated and
 * handed to `accept`; anything else is refused (the API has no other upgrade).
 * Returns a function that removes the handler.
 */
export function acceptRunnerUpgrades(server: http.Server, authenticate: RunnerAuthenticator, accept: (socket: Duplex, address: string) => void): () => void {
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    void handleUpgrade(request, socket, head, authenticate, accept).catch(() => socket.destroy());
  };
  server.on('upgrade', onUpgrade);
  return () => server.off('upgrade', onUpgrade);
}

async function handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer, authenticate: RunnerAuthenticator, accept: (socket: Duplex, address: string) => void): Promise<void> {
  const path = (request.url ?? '').split('?')[0];
  if (path !== RUNNER_CONNECT_PATH || request.headers.upgrade?.toLowerCase() !== RUNNER_PROTOCOL) {
    refuse(socket, 404, 'route_not_found', 'no upgrade is served at this path');
    return;
  }
  const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
  if (!match?.[1] || !(await authenticate(match[1]))) {
    refuse(socket, 401, 'unauthorized', 'a test bed runner connects with a worker token: Authorization: Bearer <worker token>');
    return;
  }
  // Frames are small and latency-bound: no Nagle delay.
  if (socket instanceof net.Socket) socket.setNoDelay(true);
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${RUNNER_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
  if (head.length > 0) socket.unshift(head);
  accept(socket, request.socket.remoteAddress ?? 'unknown');
}

function refuse(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** The API refused the runner (a wrong token, say): retrying will not help. */
export class RunnerRefusedError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RunnerRefusedError';
  }
}

/** Dials the API and returns the upgraded socket. */
export function connectToApi(apiUrl: string, token: string): Promise<Duplex> {
  const url = new URL(RUNNER_CONNECT_PATH, apiUrl);
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<Duplex>((resolve, reject) => {
    const request = client.request(url, { method: 'GET', headers: { connection: 'Upgrade', upgrade: RUNNER_PROTOCOL, authorization: `Bearer ${token}` } });
    request.once('upgrade', (_response, socket, head) => {
      socket.setNoDelay(true);
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    request.once('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => reject(new RunnerRefusedError(response.statusCode ?? 0, `the API refused the runner (${response.statusCode}): ${Buffer.concat(chunks).toString('utf8').slice(0, 500)}`)));
    });
    request.once('error', reject);
    request.end();
  });
}
