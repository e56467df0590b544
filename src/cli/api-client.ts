/**
 * The one client of the Kiln REST API that every command uses. It turns
 * every failure into a message that says what to do next: the URL it could
 * not reach, how to log in after a 401, which id was not found after a 404.
 *
 * Response types come straight from the API's TypeBox schemas (type-only
 * imports: nothing of the server is loaded at run time), so the CLI and the
 * API cannot drift apart without the type check noticing.
 */
import type { Build, BuildState, InvokeBody, InvokeResult, Page, Version, VersionMetadata, Application } from '../api/types.ts';
import { HttpApiError, HttpTransport, HttpUnreachableError, type HttpRequest, type RequestSummary } from '../transport/http.ts';
import { describeTokenSource, type ResolvedConfig } from './config.ts';
import { readSse } from './sse.ts';

export type {
  Application,
  Build,
  BuildState,
  ComponentResult,
  FilterResult,
  FunctionResult,
  InvokeBody,
  InvokeResult,
  KindName,
  LanguageName,
  Page,
  Version,
  VersionMetadata,
} from '../api/types.ts';
export { BUILD_STATES, TERMINAL_STATES } from '../api/types.ts';

export interface PageOptions {
  limit?: number;
  cursor?: string;
}

export interface BuildFilters {
  applicationId?: string;
  versionId?: string;
  state?: BuildState;
}

export interface VersionPatch {
  version?: string;
  phases?: string[];
  config?: string;
  notes?: string;
}

/**
 * The API answered with an error; `message` already says what to do. The
 * transport's one error class (src/transport/http.ts), under the name the
 * CLI's commands know.
 */
export const KilnApiError = HttpApiError;
export type KilnApiError = HttpApiError;

/** No answer at all: the server is down, the URL is wrong, or the network is. */
export const KilnUnreachableError = HttpUnreachableError;
export type KilnUnreachableError = HttpUnreachableError;

/** Plain calls give up after `timeoutMs`; uploads, downloads and streams pass 0 (none). */
type RequestOptions = Omit<HttpRequest, 'retry'>;

const DEFAULT_TIMEOUT_MS = 60_000;
/** Reconnections of a dropped log stream before giving up. */
const MAX_RESUMES = 5;
/** Versions `latestSucceededVersion` looks through before giving up. */
export const LATEST_SUCCEEDED_SEARCH = 100;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: string): boolean => UUID.test(value);

export class ApiClient {
  private readonly transport: HttpTransport;

  constructor(readonly config: ResolvedConfig) {
    this.transport = new HttpTransport({
      baseUrl: config.url,
      token: config.token,
      userAgent: 'kiln-cli',
      timeoutMs: DEFAULT_TIMEOUT_MS,
      describe: {
        apiError: (failure, request) => this.explain(failure.status, failure.code, failure.message, request),
        unreachable: (why) =>
          `cannot reach Kiln at ${this.url} (${why}). Is it running? Start one here with \`kiln serve\`, or point the CLI at yours with --url, KILN_URL or \`kiln login <url>\`.`,
      },
    });
  }

  get url(): string {
    return this.config.url;
  }

  // ── applications ────────────────────────────────────────────────────────

  listApplications(page: PageOptions = {}): Promise<Page<Application>> {
    return this.json('GET', '/v1/applications', { query: { ...page } });
  }

  getApplication(id: string): Promise<Application> {
    return this.json('GET', `/v1/applications/${segment(id)}`);
  }

  createApplication(input: { name: string; notes?: string }): Promise<Application> {
    return this.json('POST', '/v1/applications', { json: input });
  }

  updateApplication(id: string, patch: { name?: string; notes?: string }): Promise<Application> {
    return this.json('PATCH', `/v1/applications/${segment(id)}`, { json: patch });
  }

  async deleteApplication(id: string): Promise<void> {
    await this.send('DELETE', `/v1/applications/${segment(id)}`);
  }

  /** By id, or by name (names are unique per owner). */
  async findApplication(ref: string): Promise<Application | undefined> {
    if (isUuid(ref)) return this.getApplication(ref);
    for await (const app of this.paginate((page) => this.listApplications(page))) if (app.name === ref) return app;
    return undefined;
  }

  async resolveApplication(ref: string): Promise<Application> {
    const found = await this.findApplication(ref);
    if (!found) throw new KilnApiError(404, 'not_found', `application ${JSON.stringify(ref)} does not exist; \`kiln apps list\` shows yours, \`kiln apps create ${ref}\` makes it`);
    return found;
  }

  // ── versions ────────────────────────────────────────────────────────────

  listVersions(applicationId: string, page: PageOptions = {}): Promise<Page<Version>> {
    return this.json('GET', `/v1/applications/${segment(applicationId)}/versions`, { query: { ...page } });
  }

  getVersion(id: string): Promise<Version> {
    return this.json('GET', `/v1/versions/${segment(id)}`);
  }

  updateVersion(id: string, patch: VersionPatch): Promise<Version> {
    return this.json('PATCH', `/v1/versions/${segment(id)}`, { json: patch });
  }

  async deleteVersion(id: string): Promise<void> {
    await this.send('DELETE', `/v1/versions/${segment(id)}`);
  }

  /** A version id, or `app@1.2.3` (application name or id, then the semantic version). */
  async resolveVersion(ref: string): Promise<Version> {
    if (isUuid(ref)) return this.getVersion(ref);
    const at = ref.lastIndexOf('@');
    if (at <= 0) throw new KilnApiError(400, 'invalid_reference', `${JSON.stringify(ref)} is neither a version id nor app@version (e.g. hello@1.0.0)`);
    const app = await this.resolveApplication(ref.slice(0, at));
    const wanted = ref.slice(at + 1);
    for await (const version of this.paginate((page) => this.listVersions(app.id, page))) if (version.version === wanted) return version;
    throw new KilnApiError(404, 'not_found', `application ${app.name} has no version ${wanted}; \`kiln versions list ${app.name}\` shows them`);
  }

  /**
   * The newest version of an application that has a succeeded build: what
   * `kiln invoke APP` runs when no version is named. Versions are checked
   * newest first, at most LATEST_SUCCEEDED_SEARCH of them.
   */
  async latestSucceededVersion(appRef: string): Promise<{ application: Application; version: Version }> {
    const application = await this.resolveApplication(appRef);
    let checked = 0;
    for await (const version of this.paginate((page) => this.listVersions(application.id, page), LATEST_SUCCEEDED_SEARCH)) {
      checked++;
      const succeeded = await this.listBuilds({ versionId: version.id, state: 'succeeded' }, { limit: 1 });
      if (succeeded.items.length > 0) return { application, version };
    }
    const which = checked === 0 ? 'has no versions yet; `kiln deploy` uploads one' : `has no succeeded build among its newest ${checked} versions; name one with ${application.name}@VERSION`;
    throw new KilnApiError(404, 'no_succeeded_version', `application ${application.name} ${which}`);
  }

  /**
   * Uploads a source archive as a new version (multipart: `metadata` JSON and
   * the `source` file). The body is streamed so `onProgress` can follow it.
   */
  createVersion(applicationId: string, metadata: VersionMetadata, archive: Buffer, onProgress?: (sent: number, total: number) => void): Promise<{ version: Version; build: Build }> {
    const upload = multipartUpload(metadata, archive, onProgress);
    return this.json('POST', `/v1/applications/${segment(applicationId)}/versions`, {
      body: upload.body,
      headers: { 'content-type': upload.contentType, 'content-length': String(upload.length) },
      timeoutMs: 0,
    });
  }

  // ── builds ──────────────────────────────────────────────────────────────

  listBuilds(filters: BuildFilters = {}, page: PageOptions = {}): Promise<Page<Build>> {
    return this.json('GET', '/v1/builds', { query: { ...filters, ...page } });
  }

  getBuild(id: string): Promise<Build> {
    return this.json('GET', `/v1/builds/${segment(id)}`);
  }

  async getBuildLog(id: string): Promise<string> {
    const response = await this.send('GET', `/v1/builds/${segment(id)}/logs`);
    return response.text();
  }

  cancelBuild(id: string): Promise<Build> {
    return this.json('POST', `/v1/builds/${segment(id)}/cancel`);
  }

  rebuild(versionId: string): Promise<Build> {
    return this.json('POST', `/v1/versions/${segment(versionId)}/builds`);
  }

  /**
   * Follows a build's log over server-sent events until the build ends and
   * returns the final build. A stream that drops after it was established
   * (an API restart, a proxy timeout) is resumed: the server replays the log
   * from the start, and the bytes already shown are skipped. Failing to
   * connect at all is reported at once.
   */
  async followBuild(id: string, handlers: FollowHandlers, signal?: AbortSignal): Promise<Build> {
    let shownBytes = 0;
    let connected = false;
    for (let failures = 0; ; ) {
      let skip = shownBytes;
      const before = shownBytes;
      const onLog = (text: string) => {
        const bytes = Buffer.from(text, 'utf8');
        if (skip >= bytes.length) {
          skip -= bytes.length;
          return;
        }
        const fresh = bytes.subarray(skip);
        skip = 0;
        shownBytes += fresh.length;
        handlers.onLog?.(fresh.toString('utf8'));
      };
      let failure: unknown;
      try {
        const ended = await this.followOnce(id, { onLog, onState: handlers.onState }, signal, () => (connected = true));
        if (ended) return ended;
      } catch (error) {
        if (signal?.aborted || error instanceof KilnApiError || !connected) throw error;
        failure = error;
      }
      // Only consecutive fruitless attempts count: a long build may drop now and then.
      failures = shownBytes > before ? 1 : failures + 1;
      if (failures > MAX_RESUMES) {
        throw failure ?? new KilnUnreachableError(this.url, `the log stream of build ${id} kept closing before the build ended; try \`kiln logs ${id} --follow\``);
      }
      await delay(Math.min(250 * 2 ** failures, 5_000), signal);
    }
  }

  private async followOnce(id: string, handlers: FollowHandlers, signal: AbortSignal | undefined, onConnected: () => void): Promise<Build | undefined> {
    const response = await this.send('GET', `/v1/builds/${segment(id)}/logs`, { query: { follow: 1 }, headers: { accept: 'text/event-stream' }, signal, timeoutMs: 0 });
    onConnected();
    if (!response.body) return undefined;
    let ended: Build | undefined;
    await readSse(response.body, (event) => {
      if (event.event === 'log') handlers.onLog?.(event.data);
      else if (event.event === 'state') handlers.onState?.(JSON.parse(event.data) as Build);
      else if (event.event === 'end') ended = JSON.parse(event.data) as Build;
      return ended === undefined;
    });
    return ended;
  }

  // ── artifacts ───────────────────────────────────────────────────────────

  /** The artifact's response, body unread: the caller streams it (and checks the sha256). */
  async downloadArtifact(versionId: string, variant?: string, signal?: AbortSignal): Promise<ArtifactDownload> {
    const response = await this.send('GET', `/v1/versions/${segment(versionId)}/artifact`, { query: { variant }, signal, timeoutMs: 0 });
    const header = (name: string) => response.headers.get(name) ?? undefined;
    return {
      response,
      sha256: header('x-kiln-sha256'),
      size: Number(header('content-length') ?? Number.NaN),
      variant: header('x-kiln-variant'),
      buildId: header('x-kiln-build'),
    };
  }

  // ── test bed ────────────────────────────────────────────────────────────

  invoke(versionId: string, body: InvokeBody, signal?: AbortSignal): Promise<InvokeResult> {
    return this.json('POST', `/v1/versions/${segment(versionId)}/invoke`, { json: body, signal, timeoutMs: 120_000 });
  }

  // ── plumbing ────────────────────────────────────────────────────────────

  /** Every item of a paginated list (bounded: a CLI listing is not a data export). */
  async *paginate<T>(fetchPage: (page: PageOptions) => Promise<Page<T>>, max = 10_000): AsyncGenerator<T> {
    let cursor: string | undefined;
    let seen = 0;
    do {
      const page = await fetchPage({ limit: 200, cursor });
      for (const item of page.items) {
        if (seen++ >= max) return;
        yield item;
      }
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** The API's JSON answer; typed by the API's schemas, which the server validates and serializes with. */
  async json<T>(method: string, route: string, options: RequestOptions = {}): Promise<T> {
    return (await this.transport.json(method, route, options)) as T;
  }

  /** The response of a successful request, body unread; idempotent requests ride out a restarting server. */
  async send(method: string, route: string, options: RequestOptions = {}): Promise<Response> {
    return this.transport.request(method, route, options);
  }

  private explain(status: number, code: string, message: string, { method, path: route }: RequestSummary): string {
    const login = `Run \`kiln login ${this.url}\` with a valid token, or set KILN_TOKEN`;
    if (status === 401 && !this.config.token) {
      return `no token for ${this.url}. ${login}. (On the machine running \`kiln serve\`, run kiln from its directory, or below it: the CLI reads .kiln/local-token there.)`;
    }
    if (status === 401) return `${this.url} refused the token from ${describeTokenSource(this.config)}: ${message}. ${login}.`;
    if (status === 403) return `the token from ${describeTokenSource(this.config)} may not do this: ${message}`;
    if (code === 'route_not_found') return `${this.url} has no ${method} ${route.split('?')[0]}: is it a Kiln server, and as recent as this CLI?`;
    // Another owner's resource is a 404 too (tenancy): say so, or "does not exist" misleads.
    if (status === 404 && /^(application|version|build) \S+ does not exist$/.test(message)) return `${message} (or it belongs to another owner)`;
    if (code === 'no_artifact') return `${message.replace(/; see GET .*$/, '')}; see \`kiln builds list --version ${route.split('/')[3] ?? ''}\``;
    if (status >= 500) return `the server failed (${status} ${code}): ${message}`;
    return message;
  }
}

export interface FollowHandlers {
  onLog?: (text: string) => void;
  onState?: (build: Build) => void;
}

export interface ArtifactDownload {
  response: Response;
  sha256?: string;
  size: number;
  variant?: string;
  buildId?: string;
}

/** Ids go into paths: encode them, so a stray `/` or `?` cannot change the route. */
const segment = (id: string): string => encodeURIComponent(id);

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

const UPLOAD_CHUNK = 64 * 1024;

/**
 * multipart/form-data written by hand: FormData gives no way to watch the
 * upload. The metadata part carries no Content-Type, like a browser's form
 * field: @fastify/multipart turns an `application/json` part into an object,
 * which the API then fails to read as JSON text.
 */
function multipartUpload(metadata: VersionMetadata, archive: Buffer, onProgress?: (sent: number, total: number) => void) {
  const boundary = `----kiln${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n${JSON.stringify(metadata)}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="source"; filename="source.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const whole = Buffer.concat([head, archive, tail]);
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= whole.length) {
        controller.close();
        return;
      }
      const chunk = whole.subarray(offset, offset + UPLOAD_CHUNK);
      offset += chunk.length;
      controller.enqueue(new Uint8Array(chunk));
      onProgress?.(offset, whole.length);
    },
  });
  return { body, contentType: `multipart/form-data; boundary=${boundary}`, length: whole.length };
}
