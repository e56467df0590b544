/**
 * The host side of the fetch step's only network path: an HTTP forward
 * proxy listening on a unix socket that is bound into the fetch sandbox
 * (SandboxRunOptions.egress). It lets through exactly the configured
 * registry (egress-rules.ts) and answers everything else with a 403 whose
 * body says why; every refusal is also reported to the caller, so the build
 * log and the build's reason can name it.
 *
 * Everything a session can grow is bounded: bytes received from upstream
 * (all connections together), concurrent connections, idle time of a
 * connection, time to connect upstream. Redirects are passed through
 * untouched: following one to another host needs a new request, which the
 * rules refuse.
 */
import { mkdtemp, chmod, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { checkConnect, checkForwardUrl, describeTarget, type EgressDecision, type EgressTarget } from './egress-rules.ts';

export interface EgressLimits {
  /** Bytes received from the registry over the whole session (default 512 MiB). */
  downloadBytes: number;
  /** Client connections open at once (default 32). */
  connections: number;
  /** A connection with no traffic for this long is closed (default 60 s). */
  idleMs: number;
  /** Connecting to the registry may take this long (default 15 s). */
  connectMs: number;
}

export const DEFAULT_EGRESS_LIMITS: EgressLimits = {
  downloadBytes: 512 * 1024 ** 2,
  connections: 32,
  idleMs: 60_000,
  connectMs: 15_000,
};

export interface EgressProxyOptions {
  allowed: readonly EgressTarget[];
  limits?: Partial<EgressLimits>;
  /** Parent of the socket's private directory (default: the OS temp dir, which sandbox uids can traverse). */
  parentDir?: string;
  /** A refused destination, as it happens (for the build log). */
  onRefused?: (destination: string, reason: string) => void;
}

export interface EgressReport {
  bytesDownloaded: number;
  /** Distinct refused destinations (at most MAX_RECORDED_REFUSALS). */
  refused: string[];
  /** Set when the download budget ended the session. */
  downloadLimitHit: boolean;
  /** Upstream failures (the registry unreachable): the platform's problem, not the user's. */
  upstreamErrors: string[];
}

export interface EgressProxy {
  /** Host path of the unix socket to bind into the sandbox. */
  readonly socketPath: string;
  report(): EgressReport;
  close(): Promise<void>;
}

const MAX_RECORDED = 20;

export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const limits = { ...DEFAULT_EGRESS_LIMITS, ...options.limits };
  const directory = await mkdtemp(join(options.parentDir ?? tmpdir(), 'kiln-egress-'));
  // Sandbox uids must reach the socket; the random name is the only secret, and the socket leads only to the registry.
  await chmod(directory, 0o711);
  const socketPath = join(directory, 'egress.sock');
  const session = new Session(options, limits);
  const server = http.createServer({ requestTimeout: limits.idleMs, headersTimeout: limits.idleMs, maxHeaderSize: 16 * 1024 });
  server.maxConnections = limits.connections;
  server.on('connection', (socket: net.Socket) => session.track(socket));
  server.on('connect', (request: http.IncomingMessage, client: Duplex, head: Buffer) => session.tunnel(request, client, head));
  server.on('request', (request: http.IncomingMessage, response: http.ServerResponse) => session.forward(request, response));
  server.on('clientError', (_error, socket: Duplex) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await chmod(socketPath, 0o666);
  return {
    socketPath,
    report: () => session.report(),
    async close() {
      session.destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(directory, { recursive: true, force: true });
    },
  };
}

class Session {
  private bytes = 0;
  private limitHit = false;
  private readonly refused = new Set<string>();
  private readonly upstreamErrors: string[] = [];
  private readonly sockets = new Set<Duplex>();

  constructor(
    private readonly options: EgressProxyOptions,
    private readonly limits: EgressLimits,
  ) {}

  report(): EgressReport {
    return { bytesDownloaded: this.bytes, refused: [...this.refused], downloadLimitHit: this.limitHit, upstreamErrors: [...this.upstreamErrors] };
  }

  track(socket: Duplex): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** CONNECT host:port → a byte tunnel to the registry (TLS end to end between client and registry). */
  tunnel(request: http.IncomingMessage, client: Duplex, head: Buffer): void {
    this.track(client);
    const decision = checkConnect(request.url ?? '', this.options.allowed);
    if (!decision.allowed) {
      this.refuse(decision);
      client.end(rawResponse(403, refusalText(decision)));
      return;
    }
    const upstream = this.connectUpstream(decision.target, client);
    upstream.once('connect', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      this.pipeCounted(upstream, client);
      client.pipe(upstream);
    });
  }

  /** GET http://host/path → the same request sent to the registry, Host rewritten. */
  forward(request: http.IncomingMessage, response: http.ServerResponse): void {
    const decision = checkForwardUrl(request.url ?? '', this.options.allowed);
    if (!decision.allowed) {
      this.refuse(decision);
      sendText(response, 403, refusalText(decision));
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      sendText(response, 405, `kiln egress proxy: only GET and HEAD reach the registry, not ${request.method ?? '?'}\n`);
      return;
    }
    const url = new URL(request.url ?? '');
    const { target } = decision;
    const upstream = http.request({
      host: target.hostname,
      port: target.port,
      method: request.method,
      path: `${url.pathname}${url.search}`,
      headers: { ...forwardableHeaders(request.headers), host: url.host },
      timeout: this.limits.connectMs,
    });
    upstream.on('timeout', () => upstream.destroy(new Error('timed out')));
    upstream.on('error', (error) => {
      this.upstreamError(target, error);
      if (!response.headersSent) sendText(response, 502, `kiln egress proxy: the registry ${describeTarget(target)} could not be reached\n`);
      else response.destroy();
    });
    upstream.on('response', (answer) => {
      response.writeHead(answer.statusCode ?? 502, forwardableHeaders(answer.headers));
      answer.on('data', (chunk: Buffer) => this.count(chunk.length));
      answer.pipe(response);
    });
    request.pipe(upstream);
  }

  private connectUpstream(target: EgressTarget, client: Duplex): net.Socket {
    const upstream = net.connect({ host: target.hostname, port: target.port });
    this.track(upstream);
    const connectTimer = setTimeout(() => upstream.destroy(new Error('timed out')), this.limits.connectMs);
    upstream.once('connect', () => {
      clearTimeout(connectTimer);
      upstream.setTimeout(this.limits.idleMs, () => upstream.destroy());
    });
    upstream.on('error', (error) => {
      clearTimeout(connectTimer);
      this.upstreamError(target, error);
      if (upstream.connecting) client.end(rawResponse(502, `kiln egress proxy: the registry ${describeTarget(target)} could not be reached\n`));
      else client.destroy();
    });
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    return upstream;
  }

  private pipeCounted(upstream: net.Socket, client: Duplex): void {
    upstream.on('data', (chunk: Buffer) => this.count(chunk.length));
    upstream.pipe(client);
  }

  private count(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.limits.downloadBytes && !this.limitHit) {
      this.limitHit = true;
      this.destroyAll();
    }
  }

  private refuse(decision: Extract<EgressDecision, { allowed: false }>): void {
    if (this.refused.size < MAX_RECORDED && !this.refused.has(decision.destination)) {
      this.refused.add(decision.destination);
      this.options.onRefused?.(decision.destination, decision.reason);
    }
  }

  private upstreamError(target: EgressTarget, error: Error): void {
    if (this.upstreamErrors.length < MAX_RECORDED) this.upstreamErrors.push(`${describeTarget(target)}: ${error.message}`);
  }
}

function refusalText(decision: Extract<EgressDecision, { allowed: false }>): string {
  return `kiln egress proxy: refused ${decision.destination}: ${decision.reason}\n`;
}

function rawResponse(status: number, text: string): string {
  const phrase = http.STATUS_CODES[status] ?? 'Error';
  return `HTTP/1.1 ${status} ${phrase}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
}

function sendText(response: http.ServerResponse, status: number, text: string): void {
  response.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text), connection: 'close' });
  response.end(text);
}

/** Hop-by-hop and proxy headers stay on this hop (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function forwardableHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const result: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) result[name] = value;
  }
  return result;
}
