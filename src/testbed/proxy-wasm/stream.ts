/**
 * One HTTP request/response pair going through a filter (a stream context):
 * the header maps, bodies and trailers the filter reads and changes, and the
 * decisions it made — pause, continue, close, answer locally.
 */
import type { ConnectionInfo, HttpRequestData, HttpResponseData } from '../http-message.ts';
import { requestHeaderPairs, responseHeaderPairs } from '../http-message.ts';
import type { HeaderPairs } from './header-map.ts';
import { HeaderMap } from './header-map.ts';

export type StreamPhase = 'request' | 'response' | 'done';

export interface LocalResponse {
  status: number;
  details: string;
  headers: HeaderPairs;
  body: Uint8Array;
  grpcStatus: number;
  /** The callback that sent it. */
  sentFrom: string;
}

export interface HttpFields {
  headers: HeaderMap;
  body: Uint8Array;
  trailers: HeaderMap;
}

export class StreamState {
  phase: StreamPhase = 'request';
  readonly request: HttpFields;
  response: HttpFields | undefined;
  /** The request as it arrived, for pseudo-headers the filter removed. */
  readonly originalRequest: HttpRequestData;
  /** The last request/response callback returned PAUSE. */
  paused = false;
  /** proxy_continue_stream was called for the current phase. */
  continued = false;
  closed = false;
  localResponse: LocalResponse | undefined;
  /** A local response sent during the request phase, after it went through the response callbacks. */
  sentLocally: LocalResponse | undefined;
  /** The callback that last returned PAUSE. */
  pausedIn: string | undefined;
  /** proxy_on_done returned false and proxy_done was not called yet. */
  awaitingDone = false;
  readonly properties = new Map<string, Uint8Array>();
  readonly startedAt = Date.now();

  constructor(
    readonly id: number,
    request: HttpRequestData,
    readonly connection: ConnectionInfo,
  ) {
    this.originalRequest = request;
    this.request = { headers: new HeaderMap(requestHeaderPairs(request)), body: request.body, trailers: new HeaderMap(request.trailers) };
  }

  beginResponse(response: HttpResponseData): void {
    this.phase = 'response';
    this.paused = false;
    this.continued = false;
    this.response = { headers: new HeaderMap(responseHeaderPairs(response)), body: response.body, trailers: new HeaderMap(response.trailers) };
  }

  /** The current phase may proceed: nothing paused it, or the filter resumed it. */
  get proceeds(): boolean {
    return !this.paused || this.continued;
  }
}
