/**
 * The sync's only link to Kiln: the API URL and an edge token. Kept apart
 * from the CLI's client so an edge server can run the sync without the rest
 * of the CLI, and so its errors say whether trying again can help.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { HttpApiError, HttpTransport, HttpUnreachableError, NO_RETRY } from '../transport/http.ts';
import { ManifestSchema, type Manifest, type ManifestEntry } from './manifest.ts';

const manifestChecker = TypeCompiler.Compile(ManifestSchema);

/**
 * The API answered with an error. `retriable`: the server's fault or overload
 * (5xx, 408, 429). The transport's one error class, under the sync's name.
 */
export const EdgeApiError = HttpApiError;
export type EdgeApiError = HttpApiError;

/** No answer at all (down, wrong URL, network): always worth another try. */
export const EdgeUnreachableError = HttpUnreachableError;
export type EdgeUnreachableError = HttpUnreachableError;

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
  private readonly transport: HttpTransport;

  constructor(private readonly options: EdgeClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.transport = new HttpTransport({
      baseUrl: this.base,
      token: options.token,
      userAgent: 'kiln-edge-sync',
      // The sync engine retries whole rounds itself (src/edge/sync.ts), with its own backoff and events.
      retry: NO_RETRY,
      describe: {
        apiError: ({ status, message }) => `${this.base} answered ${status}: ${message}${status === 401 || status === 403 ? TOKEN_HINT : ''}`,
        unreachable: (why) => `cannot reach Kiln at ${this.base} (${why})`,
      },
    });
  }

  get url(): string {
    return this.base;
  }

  async fetchManifest(environment: string, etag: string | undefined, signal?: AbortSignal): Promise<ManifestAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (etag) headers['if-none-match'] = etag;
    const route = `/v1/edge/manifest?environment=${encodeURIComponent(environment)}`;
    const response = await this.transport.request('GET', route, { headers, timeoutMs: this.options.timeoutMs ?? 30_000, signal });
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
    const response = await this.transport.request('GET', url, { headers: { accept: 'application/wasm' }, timeoutMs: this.options.downloadTimeoutMs ?? 300_000, signal });
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
}

const TOKEN_HINT = ' (kiln edge sync needs an edge token: an operator creates one with POST /v1/edge-tokens or `kiln edge token create`)';
