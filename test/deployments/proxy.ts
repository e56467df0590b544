/**
 * A tiny HTTP proxy in front of the test API that counts what passes and can
 * tamper with artifact downloads (flip one byte), so tests can prove the sync
 * rejects bytes that do not match the manifest.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TamperingProxy {
  url: string;
  port: number;
  /** Flip a byte in every artifact body while true. */
  tamper: boolean;
  /** Request paths (without query) and statuses, in order. */
  log: Array<{ path: string; status: number }>;
  close(): Promise<void>;
}

export async function startProxy(target: string, port = 0): Promise<TamperingProxy> {
  const upstream = new URL(target);
  const state: TamperingProxy = { url: '', port: 0, tamper: false, log: [], close: async () => undefined };
  const server = http.createServer((request, response) => {
    const forwarded = http.request(
      { host: upstream.hostname, port: upstream.port, method: request.method, path: request.url, headers: { ...request.headers, host: upstream.host } },
      (answer) => {
        const path = (request.url ?? '').split('?')[0] ?? '';
        state.log.push({ path, status: answer.statusCode ?? 0 });
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          if (state.tamper && path.startsWith('/v1/edge/artifacts/') && body.length > 0) body[body.length - 1] = (body[body.length - 1] ?? 0) ^ 0xff;
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          response.end(body);
        });
      },
    );
    forwarded.on('error', () => {
      response.writeHead(502);
      response.end();
    });
    request.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  state.port = address.port;
  state.url = `http://127.0.0.1:${address.port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

/** A port nothing listens on (right now). */
export async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
