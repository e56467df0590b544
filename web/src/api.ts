/**
 * The UI's client of the public Kiln API. Same-origin calls with the token in
 * an Authorization header (never in a URL); every answer is typed with the
 * API's own types (src/api/types.ts), shared with the CLI.
 */
import type {
  Application,
  Build,
  BuildState,
  Deployment,
  DeploymentHistory,
  ComponentResult,
  FilterResult,
  InvokeBody,
  InvokeResult,
  Page,
  PromoteResult,
  Version,
  VersionMetadata,
} from '../../src/api/types.ts';
import { readSse } from '../../src/cli/sse.ts';

export type FilterResultView = FilterResult;
export type ComponentResultView = ComponentResult;
export type { Application, Build, BuildState, Deployment, DeploymentHistory, FilterResult, InvokeBody, InvokeResult, Page, PromoteResult, Version, VersionMetadata };
export { TERMINAL_STATES } from '../../src/api/types.ts';

/** The API said no; `message` is the API's own explanation. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** How many items a list view asks for: one page, never an unbounded crawl. */
export const LIST_LIMIT = 100;

type Query = Record<string, string | number | undefined>;

export class Api {
  constructor(
    private readonly token: string,
    /** Called on any 401: the token was revoked or is wrong, so the UI signs out. */
    private readonly onUnauthorized: (error: ApiError) => void = () => undefined,
  ) {}

  listApplications(): Promise<Page<Application>> {
    return this.json('GET', '/v1/applications', { query: { limit: LIST_LIMIT } });
  }

  getApplication(id: string): Promise<Application> {
    return this.json('GET', `/v1/applications/${seg(id)}`);
  }

  createApplication(name: string): Promise<Application> {
    return this.json('POST', '/v1/applications', { body: { name } });
  }

  deleteApplication(id: string, force: boolean): Promise<void> {
    return this.json('DELETE', `/v1/applications/${seg(id)}`, { query: { force: force ? 'true' : undefined } });
  }

  listVersions(applicationId: string, limit = LIST_LIMIT): Promise<Page<Version>> {
    return this.json('GET', `/v1/applications/${seg(applicationId)}/versions`, { query: { limit } });
  }

  getVersion(id: string): Promise<Version> {
    return this.json('GET', `/v1/versions/${seg(id)}`);
  }

  listBuilds(filters: { applicationId?: string; versionId?: string; state?: BuildState }, limit = LIST_LIMIT): Promise<Page<Build>> {
    return this.json('GET', '/v1/builds', { query: { ...filters, limit } });
  }

  getBuild(id: string): Promise<Build> {
    return this.json('GET', `/v1/builds/${seg(id)}`);
  }

  async getBuildLog(id: string): Promise<string> {
    return (await this.send('GET', `/v1/builds/${seg(id)}/logs`)).text();
  }

  cancelBuild(id: string): Promise<Build> {
    return this.json('POST', `/v1/builds/${seg(id)}/cancel`);
  }

  rebuild(versionId: string): Promise<Build> {
    return this.json('POST', `/v1/versions/${seg(versionId)}/builds`);
  }

  deployments(applicationId: string): Promise<DeploymentHistory> {
    return this.json('GET', `/v1/applications/${seg(applicationId)}/deployments`, { query: { limit: LIST_LIMIT } });
  }

  promote(applicationId: string, body: { versionId: string; environment: string; buildId?: string; variant?: string }): Promise<PromoteResult> {
    return this.json('POST', `/v1/applications/${seg(applicationId)}/deployments`, { body });
  }

  invoke(versionId: string, body: InvokeBody): Promise<InvokeResult> {
    return this.json('POST', `/v1/versions/${seg(versionId)}/invoke`, { body });
  }

  /** The newest version with a succeeded build (what Try it runs when no version is picked). */
  async latestSucceededVersion(applicationId: string): Promise<Version | undefined> {
    const [versions, succeeded] = await Promise.all([this.listVersions(applicationId), this.listBuilds({ applicationId, state: 'succeeded' })]);
    const built = new Set(succeeded.items.map((build) => build.versionId));
    return versions.items.find((version) => built.has(version.id));
  }

  /**
   * Follows a build's log (server-sent events over fetch: EventSource cannot
   * send the Authorization header) until the build ends; returns the final
   * build, or undefined when the stream closed early or was aborted.
   */
  async followLog(id: string, onLog: (text: string) => void, onState: (build: Build) => void, signal: AbortSignal): Promise<Build | undefined> {
    const response = await this.send('GET', `/v1/builds/${seg(id)}/logs`, { query: { follow: 1 }, accept: 'text/event-stream', signal });
    if (!response.body) return undefined;
    let ended: Build | undefined;
    await readSse(response.body, (event) => {
      if (event.event === 'log') onLog(event.data);
      else if (event.event === 'state') onState(JSON.parse(event.data) as Build);
      else if (event.event === 'end') ended = JSON.parse(event.data) as Build;
      return ended === undefined && !signal.aborted;
    });
    return ended;
  }

  /**
   * Uploads a source archive as a new version. XMLHttpRequest, not fetch:
   * only it reports upload progress in every browser.
   */
  uploadVersion(applicationId: string, metadata: VersionMetadata, archive: Blob, filename: string, onProgress: (sent: number, total: number) => void): Promise<{ version: Version; build: Build }> {
    const form = new FormData();
    form.append('metadata', JSON.stringify(metadata));
    form.append('source', archive, filename);
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open('POST', `/v1/applications/${seg(applicationId)}/versions`);
      request.setRequestHeader('authorization', `Bearer ${this.token}`);
      request.upload.onprogress = (event) => onProgress(event.loaded, event.total);
      request.onerror = () => reject(new ApiError(0, 'unreachable', 'the upload did not reach Kiln; is it running?'));
      request.onload = () => {
        const parsed = parseJson(request.responseText);
        if (request.status >= 200 && request.status < 300) resolve(parsed as { version: Version; build: Build });
        else reject(this.failed(request.status, parsed, request.statusText));
      };
      request.send(form);
    });
  }

  async json<T>(method: string, route: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
    const response = await this.send(method, route, options);
    const text = await response.text();
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  private async send(method: string, route: string, options: { query?: Query; body?: unknown; accept?: string; signal?: AbortSignal } = {}): Promise<Response> {
    const url = new URL(route, window.location.origin);
    for (const [key, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: options.accept ?? 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), signal: options.signal, cache: 'no-store' });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw new ApiError(0, 'unreachable', 'Kiln did not answer; is it still running?');
    }
    if (!response.ok) throw this.failed(response.status, parseJson(await response.text()), response.statusText);
    return response;
  }

  private failed(status: number, body: unknown, statusText: string): ApiError {
    const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const code = typeof error?.code === 'string' ? error.code : `http_${status}`;
    const message = typeof error?.message === 'string' ? error.message : `${status} ${statusText}`;
    const failure = new ApiError(status, code, message);
    if (status === 401) this.onUnauthorized(failure);
    return failure;
  }
}

function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

const seg = (id: string): string => encodeURIComponent(id);

export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));
