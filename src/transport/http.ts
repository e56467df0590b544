/**
 * The one HTTP transport of Kiln's clients: the CLI's API client, the
 * worker's client and the edge sync all talk to the API through it.
 *
 * It owns what every client needs the same way: the base URL and the bearer
 * token (sent to the API's origin only), a deadline per request that also
 * covers reading the body, retries with backoff where repeating a request is
 * harmless, and the decoding of the API's `{ error: { code, message } }`
 * into one error class that says whose fault it was. What a client adds is
 * its own wording (the `describe` hooks) and what its calls mean.
 *
 * Imports nothing of Kiln: a client outside the server (an edge machine)
 * carries no more than this file.
 */

/** How often, and how patiently, a request that may be repeated is tried. */
export interface RetryPolicy {
  /** Tries in all, the first included; 1 means no retry. */
  attempts: number;
  /** Wait before the second try; doubled for each further one. */
  baseDelayMs: number;
  /** No single wait is longer than this. */
  maxDelayMs: number;
}

export const NO_RETRY: RetryPolicy = Object.freeze({ attempts: 1, baseDelayMs: 0, maxDelayMs: 0 });
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 3, baseDelayMs: 250, maxDelayMs: 2_000 });
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Error bodies are read for their message, never kept whole. */
export const MAX_ERROR_TEXT = 500;

/** Answers worth another try: the API or a proxy in front of it is restarting or overloaded. */
const RETRY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);
/** Methods that mean the same when sent twice (RFC 9110 §9.2.2). */
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);

/** What a request was, for messages. */
export interface RequestSummary {
  method: string;
  /** The path without its query string. */
  path: string;
}

/** The API answered with an error status; `code` and `message` are the API's own when it sent them. */
export class HttpApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HttpApiError';
  }

  /** The caller's (the user's) fault: a 4xx other than a timeout or a rate limit. Fixing the request helps, repeating it does not. */
  get callerFault(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }

  /** The server's fault or overload (5xx, 408, 429): trying again later can help. */
  get retriable(): boolean {
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

/** No answer at all: the server is down, the URL is wrong, the network failed, or the deadline passed. */
export class HttpUnreachableError extends Error {
  readonly retriable = true;
  readonly callerFault = false;
  /** The deadline passed (rather than the connection failing): not retried, the deadline was the budget. */
  readonly timedOut: boolean;

  constructor(
    readonly url: string,
    message: string,
    options?: { cause?: unknown; timedOut?: boolean },
  ) {
    super(message, { cause: options?.cause });
    this.name = 'HttpUnreachableError';
    this.timedOut = options?.timedOut ?? false;
  }
}

export interface HttpTransportOptions {
  /** The API's URL; a path prefix is kept (`https://host/kiln` + `/v1/…`). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …`; none when absent. */
  token?: string;
  userAgent?: string;
  /** Deadline of a request that names none (default DEFAULT_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Retries of idempotent requests (default DEFAULT_RETRY); NO_RETRY when the caller retries itself. */
  retry?: RetryPolicy;
  /** How this client words failures; the defaults name the URL, the request and the API's message. */
  describe?: {
    apiError?(failure: { status: number; code: string; message: string }, request: RequestSummary): string;
    unreachable?(why: string, request: RequestSummary): string;
  };
}

export interface HttpRequest {
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  body?: BodyInit;
  /** Serialized as the JSON body (and its content type). */
  json?: unknown;
  /** This request's deadline, headers and body; 0 for none (long streams, big uploads). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Idempotent methods are retried with the transport's policy. A POST or
   * PATCH is only when the caller says repeating it is harmless (`true`, or a
   * policy of its own); `false` turns retries off for any method.
   */
  retry?: boolean | RetryPolicy;
}

export class HttpTransport {
  readonly baseUrl: string;
  private readonly origin: string;
  private readonly timeoutMs: number;
  private readonly retry: RetryPolicy;

  constructor(private readonly options: HttpTransportOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.baseUrl).origin;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retry = options.retry ?? DEFAULT_RETRY;
  }

  /**
   * Sends a request and answers the response of a status below 400, its body
   * unread (the caller reads or streams it, within the deadline). Every other
   * status becomes an HttpApiError; no answer an HttpUnreachableError; the
   * caller's own abort is rethrown as it came.
   */
  async request(method: string, path: string, init: HttpRequest = {}): Promise<Response> {
    const url = this.resolve(path, init.query);
    const summary: RequestSummary = { method, path: path.startsWith('/') ? (path.split('?')[0] ?? path) : url.pathname };
    const policy = this.policyFor(method, init);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(method, url, init, summary);
      } catch (error) {
        if (attempt >= policy.attempts || init.signal?.aborted || !worthRepeating(error)) throw error;
        await pause(Math.min(policy.baseDelayMs * 2 ** (attempt - 1), policy.maxDelayMs), init.signal);
        if (init.signal?.aborted) throw error;
      }
    }
  }

  /**
   * The JSON the API answered (undefined for an empty body). A body that is
   * not JSON is an HttpApiError `invalid_response`: whatever answered is not
   * speaking Kiln's API.
   */
  async json(method: string, path: string, init: HttpRequest = {}): Promise<unknown> {
    const response = await this.request(method, path, init);
    const text = await response.text();
    if (text === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new HttpApiError(response.status, 'invalid_response', `${this.baseUrl} answered ${method} ${path.split('?')[0]} with something that is not JSON; is this a Kiln server?`, { cause: error });
    }
  }

  /** A path on the API, or an absolute URL that must stay on the API's origin (the token goes nowhere else). */
  private resolve(path: string, query: HttpRequest['query']): URL {
    const url = path.startsWith('/') ? new URL(`${this.baseUrl}${path}`) : new URL(path);
    if (url.origin !== this.origin) throw new TypeError(`refusing to send a request for ${url.origin} with the credentials of ${this.origin}`);
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    return url;
  }

  private policyFor(method: string, init: HttpRequest): RetryPolicy {
    // A streamed body is consumed by the first try: there is nothing to send again.
    if (init.retry === false || init.body instanceof ReadableStream) return NO_RETRY;
    if (typeof init.retry === 'object') return init.retry;
    return init.retry === true || IDEMPOTENT_METHODS.has(method.toUpperCase()) ? this.retry : NO_RETRY;
  }

  private async once(method: string, url: URL, init: HttpRequest, summary: RequestSummary): Promise<Response> {
    const headers: Record<string, string> = { ...(this.options.userAgent ? { 'user-agent': this.options.userAgent } : {}), ...init.headers };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    const timeoutMs = init.timeoutMs ?? this.timeoutMs;
    const exchange = new Exchange(timeoutMs, init.signal);
    const request: RequestInit & { duplex?: 'half' } = { method, headers, body, signal: exchange.signal };
    // A streamed request body needs this (undici's rule for fetch uploads).
    if (body instanceof ReadableStream) request.duplex = 'half';
    let response: Response;
    try {
      response = await fetch(url, request);
    } catch (error) {
      exchange.end();
      if (init.signal?.aborted) throw error;
      const why = exchange.timedOut ? `no answer within ${timeoutMs / 1000} s` : describeFetchError(error);
      const message = this.options.describe?.unreachable?.(why, summary) ?? `cannot reach ${this.baseUrl} (${why})`;
      throw new HttpUnreachableError(this.baseUrl, message, { cause: error, timedOut: exchange.timedOut });
    }
    if (response.status < 400) return exchange.releaseWhenRead(response);
    try {
      throw await this.decodeError(response, summary);
    } finally {
      exchange.end();
    }
  }

  private async decodeError(response: Response, summary: RequestSummary): Promise<HttpApiError> {
    const failure = await readErrorBody(response);
    const message = this.options.describe?.apiError?.(failure, summary) ?? `${this.baseUrl} answered ${failure.status} to ${summary.method} ${summary.path}: ${failure.message}`;
    return new HttpApiError(failure.status, failure.code, message);
  }
}

/** The API's `{ error: { code, message } }`, or the start of whatever else answered (a proxy's HTML page, say). */
export async function readErrorBody(response: Response): Promise<{ status: number; code: string; message: string }> {
  const text = await response.text().catch(() => '');
  let code = `http_${response.status}`;
  let message = text.slice(0, MAX_ERROR_TEXT) || response.statusText;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message.slice(0, 4 * MAX_ERROR_TEXT);
  } catch {
    // Not our error shape: keep the text.
  }
  return { status: response.status, code, message };
}

function worthRepeating(error: unknown): boolean {
  if (error instanceof HttpApiError) return RETRY_STATUSES.has(error.status);
  // A passed deadline is the caller's whole budget: trying again would overrun it.
  return error instanceof HttpUnreachableError && !error.timedOut;
}

function describeFetchError(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * One try's deadline and its link to the caller's signal. Both last until the
 * body is read (or cancelled), then are undone: a long-lived caller signal
 * (a worker's "stopping") must not collect a listener per request, which
 * AbortSignal.any would leave behind.
 */
class Exchange {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly forward: () => void;
  private ended = false;
  timedOut = false;

  constructor(
    timeoutMs: number,
    private readonly callerSignal: AbortSignal | undefined,
  ) {
    if (timeoutMs > 0) {
      this.timer = setTimeout(() => {
        this.timedOut = true;
        this.controller.abort(new DOMException(`no answer within ${timeoutMs / 1000} s`, 'TimeoutError'));
      }, timeoutMs);
      this.timer.unref();
    }
    this.forward = () => this.controller.abort(callerSignal?.reason);
    if (callerSignal?.aborted) this.forward();
    else callerSignal?.addEventListener('abort', this.forward, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.callerSignal?.removeEventListener('abort', this.forward);
  }

  /** The same response, whose body ends this exchange once it is read to the end, fails or is cancelled. */
  releaseWhenRead(response: Response): Response {
    if (!response.body) {
      this.end();
      return response;
    }
    const reader = response.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const { done, value } = await reader.read();
          if (done) {
            this.end();
            controller.close();
          } else controller.enqueue(value);
        } catch (error) {
          this.end();
          controller.error(error);
        }
      },
      cancel: async (reason) => {
        this.end();
        await reader.cancel(reason);
      },
    });
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  }
}
