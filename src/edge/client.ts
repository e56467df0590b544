/**
 * The sync's only link to Kiln: the API URL and an edge token. Kept apart
 * from the CLI's client so an edge server can run the sync without the rest
 * of the CLI, and so its errors say whether trying again can help.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ManifestSchema, type Manifest, type ManifestEntry } from './manifest.ts';

const manifestChecker = TypeCompiler.Compile(ManifestSchema);

/** The API answered with an error. `retriable`: the server's fault or overload (5xx, 408, 429). */
export class EdgeApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'EdgeApiError';
  }

  get retriable(): boolean {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** No answer at all (down, wrong URL, network): always worth another try. */
export class EdgeUnreachableError extends Error {
  readonly retriable = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EdgeUnreachableError';
  }
}

export type ManifestAnswer = { changed: false; etag: string } | { changed: true; etag: string | undefined; manifest: Manifest };

export interface EdgeClientOptions {
  url: string;
  token: string;
  /** Manifest requests give up after this; downloads after `downloadTimeoutMs`. */
  timeoutMs?: number;
  downloadTimeoutMs?: number;
}

export class EdgeClient {
  private readonly base: string;

  constructor(private readonly options: EdgeClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
  }

  get url(): string {
    return this.base;
  }

  async fetchManifest(environment: string, etag: string | undefined, signal?: AbortSignal): Promise<ManifestAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (etag) headers['if-none-match'] = etag;
    const route = `/v1/edge/manifest?environment=${encodeURIComponent(environment)}`;
    const response = await this.request(`${this.base}${route}`, headers, this.options.timeoutMs ?? 30_000, signal);
    if (response.status === 304) {
      // Cancelled, not read: a 304 that wrongly announces a body would otherwise
      // keep the request (and this process) waiting for bytes that never come.
      await response.body?.cancel();
      return { changed: false, etag: etag ?? '' };
    }
    const text = await response.text();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new EdgeApiError(response.status, 'invalid_manifest', `${this.base} answered the manifest request with something that is not JSON; is this a Kiln server?`);
    }
    if (!manifestChecker.Check(value)) {
      const first = manifestChecker.Errors(value).First();
      throw new EdgeApiError(response.status, 'invalid_manifest', `the manifest from ${this.base} is malformed at ${first?.path || '/'}: ${first?.message ?? 'invalid'}; is this CLI as recent as the server?`);
    }
    if (value.environment !== environment) throw new EdgeApiError(response.status, 'invalid_manifest', `asked for environment ${environment}, got ${value.environment}`);
    return { changed: true, etag: response.headers.get('etag') ?? undefined, manifest: value };
  }

  /** The artifact's body, unread: the caller verifies it while writing. */
  async download(entry: ManifestEntry, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const url = this.artifactUrl(entry);
    const response = await this.request(url, { accept: 'application/wasm' }, this.options.downloadTimeoutMs ?? 300_000, signal);
    if (response.status !== 200 || !response.body) throw new EdgeApiError(response.status, 'unexpected_status', `downloading ${url} answered ${response.status}`);
    return response.body;
  }

  /**
   * Relative URLs are joined to the API URL (keeping any path prefix); an
   * absolute one must stay on the API's origin: the edge token is never
   * sent anywhere else, whatever a manifest says.
   */
  artifactUrl(entry: ManifestEntry): string {
    const resolved = entry.url.startsWith('/') ? new URL(`${this.base}${entry.url}`) : new URL(entry.url);
    if (resolved.origin !== new URL(this.base).origin) throw new EdgeApiError(400, 'foreign_url', `refusing to download ${resolved.href}: it is not on ${this.base}`);
    return resolved.href;
  }

  private async request(url: string, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal): Promise<Response> {
    const signals = [AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])];
    let response: Response;
    try {
      response = await fetch(url, { headers: { ...headers, authorization: `Bearer ${this.options.token}`, 'user-agent': 'kiln-edge-sync' }, signal: AbortSignal.any(signals) });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new EdgeUnreachableError(`cannot reach Kiln at ${this.base} (${describeFetchError(error, timeoutMs)})`, { cause: error });
    }
    if (response.status >= 400) throw await apiError(response, this.base);
    return response;
  }
}

function describeFetchError(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && error.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  const cause = error instanceof Error ? (error.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

async function apiError(response: Response, base: string): Promise<EdgeApiError> {
  const text = await response.text().catch(() => '');
  let code = `http_${response.status}`;
  let message = text.slice(0, 300) || response.statusText;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message;
  } catch {
    // not our error shape: keep the text
  }
  const hint = response.status === 401 || response.status === 403 ? ' (kiln edge sync needs an edge token: an operator creates one with POST /v1/edge-tokens or `kiln edge token create`)' : '';
  return new EdgeApiError(response.status, code, `${base} answered ${response.status}: ${message}${hint}`);
}
