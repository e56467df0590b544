/**
 * TypeBox schemas of POST /v1/versions/:versionId/invoke: they validate the
 * request and document both result shapes in /openapi.json. The result
 * schemas must list every field render.ts produces (the serializer drops
 * unknown ones).
 */
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';

const HEADER_NAME = "^[!#$%&'*+.^_`|~0-9A-Za-z:-]+$";
const METHOD = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

export const BodyInput = Type.Union(
  [
    Type.Object({ text: Type.String() }, { additionalProperties: false }),
    Type.Object({ base64: Type.String({ pattern: '^[A-Za-z0-9+/]*={0,2}$' }) }, { additionalProperties: false }),
    Type.Object({ json: Type.Unknown() }, { additionalProperties: false }),
  ],
  { description: 'bytes, given as {"text"} (UTF-8), {"base64"} or {"json"} (serialized)' },
);
export type BodyInput = Static<typeof BodyInput>;

export const HeadersInput = Type.Union(
  [
    Type.Record(Type.String({ pattern: HEADER_NAME, maxLength: 256 }), Type.Union([Type.String({ maxLength: 16_384 }), Type.Array(Type.String({ maxLength: 16_384 }), { maxItems: 32 })]), {
      additionalProperties: false,
    }),
    Type.Array(Type.Tuple([Type.String({ pattern: HEADER_NAME, maxLength: 256 }), Type.String({ maxLength: 16_384 })]), { maxItems: 256 }),
  ],
  { description: 'an object (a value may be a list) or a list of [name, value] pairs; names are lower-cased' },
);
export type HeadersInput = Static<typeof HeadersInput>;

export const RequestInput = Type.Object(
  {
    method: Type.Optional(Type.String({ pattern: METHOD, maxLength: 32, default: 'GET' })),
    path: Type.Optional(Type.String({ pattern: '^/[^\\s]*$', maxLength: 8192, default: '/' })),
    authority: Type.Optional(Type.String({ maxLength: 256, description: 'the :authority (Host); default the API host' })),
    scheme: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('https')])),
    headers: Type.Optional(HeadersInput),
    body: Type.Optional(BodyInput),
    trailers: Type.Optional(HeadersInput),
    sourceAddress: Type.Optional(Type.String({ maxLength: 64, description: 'what source.address reports (default: the caller)' })),
  },
  { additionalProperties: false },
);
export type RequestInput = Static<typeof RequestInput>;

export const ResponseInput = Type.Object(
  {
    status: Type.Integer({ minimum: 100, maximum: 599 }),
    headers: Type.Optional(HeadersInput),
    body: Type.Optional(BodyInput),
    trailers: Type.Optional(HeadersInput),
  },
  { additionalProperties: false },
);
export type ResponseInput = Static<typeof ResponseInput>;

export const LogLevel = Type.Union([Type.Literal('trace'), Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error'), Type.Literal('critical')], {
  description: 'lowest level of log lines recorded, and what proxy_get_log_level answers (default trace)',
});

export const InvokeBody = Type.Object(
  {
    input: Type.Optional(Type.Union([BodyInput], { description: 'function: stdin' })),
    args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 64, description: 'function: arguments after argv[0]' })),
    env: Type.Optional(Type.Record(Type.String({ pattern: '^[^=\\u0000]+$', maxLength: 256 }), Type.String({ maxLength: 16_384 }), { additionalProperties: false, description: 'function: environment' })),
    request: Type.Optional(Type.Union([RequestInput], { description: 'filter: the request (default GET /)' })),
    response: Type.Optional(Type.Union([ResponseInput], { description: "filter: the upstream's response to simulate instead of asking the upstream" })),
    upstream: Type.Optional(Type.String({ maxLength: 64, description: 'filter: upstream to ask (default: preview.upstream of the config, else the built-in echo)' })),
    httpCallResponses: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), ResponseInput, { description: "filter: answers to the filter's proxy_http_call by upstream name, instead of real calls" })),
    ticks: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'filter: proxy_on_tick calls to make before the request (if the filter set a tick period)' })),
    logLevel: Type.Optional(LogLevel),
    limits: Type.Optional(
      Type.Object(
        {
          timeoutMs: Type.Optional(Type.Integer({ minimum: 1, description: 'guest time allowed (at most the operator maximum)' })),
          memoryMb: Type.Optional(Type.Integer({ minimum: 1, description: 'memory cap (at most the operator maximum)' })),
        },
        { additionalProperties: false },
      ),
    ),
    variant: Type.Optional(Type.Union([Type.Literal('optimized'), Type.Literal('original')])),
  },
  { additionalProperties: false },
);
export type InvokeBody = Static<typeof InvokeBody>;

const Pairs = Type.Array(Type.Tuple([Type.String(), Type.String()]));
const Body = Type.Object({ text: Type.String(), base64: Type.Optional(Type.String()), size: Type.Integer(), truncated: Type.Optional(Type.Boolean()) });
const Changes = Type.Object({ added: Pairs, removed: Pairs });
const ModuleSummary = Type.Object({ sha256: Type.String(), size: Type.Integer(), memoryCapBytes: Type.Integer(), compileMs: Type.Number() });
const Outcome = Type.String({ description: 'ok | trap | timeout | memory_limit | limit_exceeded | paused | closed | vm_start_failed | configure_failed | exited | vm_lost | aborted | runner_lost' });

export const FunctionResultSchema = Type.Object(
  {
    kind: Type.Literal('wasi-command'),
    outcome: Outcome,
    message: Type.Optional(Type.String()),
    stack: Type.Optional(Type.Array(Type.String())),
    exitCode: Type.Union([Type.Integer(), Type.Null()]),
    stdout: Body,
    stderr: Body,
    durationMs: Type.Number(),
    unimplemented: Type.Array(Type.String()),
    module: ModuleSummary,
  },
);

const Message = { status: Type.Integer(), headers: Pairs, body: Body, trailers: Pairs };

export const FilterResultSchema = Type.Object(
  {
    kind: Type.Literal('proxy-wasm'),
    outcome: Outcome,
    message: Type.Optional(Type.String()),
    limit: Type.Optional(Type.String({ description: 'with limit_exceeded: the test bed limit (a TestbedConfig field) that ended the call' })),
    stack: Type.Optional(Type.Array(Type.String())),
    request: Type.Object({
      forwarded: Type.Boolean({ description: 'false: the filter answered (or failed) before the request went upstream' }),
      method: Type.String(),
      path: Type.String(),
      authority: Type.String(),
      scheme: Type.String(),
      headers: Pairs,
      body: Body,
      trailers: Pairs,
      changes: Type.Union([Type.Object({ headers: Changes, trailers: Changes, method: Type.Boolean(), path: Type.Boolean(), body: Type.Boolean() }), Type.Null()]),
    }),
    upstream: Type.Union([Type.Object({ name: Type.String(), ...Message, error: Type.Optional(Type.String()) }), Type.Null()]),
    response: Type.Union([
      Type.Object({
        source: Type.String({ description: 'upstream | local' }),
        ...Message,
        changes: Type.Union([Type.Object({ headers: Changes, status: Type.Boolean(), body: Type.Boolean() }), Type.Null()]),
      }),
      Type.Null(),
    ]),
    localResponse: Type.Union([Type.Object({ status: Type.Integer(), details: Type.String(), sentFrom: Type.String(), grpcStatus: Type.Integer() }), Type.Null()]),
    logs: Type.Array(Type.Object({ level: Type.String(), message: Type.String(), contextId: Type.Integer() })),
    callbacks: Type.Array(Type.Object({ name: Type.String(), contextId: Type.Integer(), durationMs: Type.Number(), returned: Type.Optional(Type.Integer()) })),
    httpCalls: Type.Array(
      Type.Object({
        token: Type.Integer(),
        upstream: Type.String(),
        method: Type.String(),
        path: Type.String(),
        status: Type.Union([Type.Integer(), Type.Null()]),
        error: Type.Optional(Type.String()),
        durationMs: Type.Number(),
      }),
    ),
    metrics: Type.Array(Type.Object({ name: Type.String(), type: Type.String(), value: Type.String(), count: Type.Optional(Type.Integer()), sum: Type.Optional(Type.String()) })),
    sharedData: Type.Array(Type.Object({ key: Type.String(), size: Type.Integer(), cas: Type.Integer() })),
    unimplemented: Type.Array(Type.String()),
    notes: Type.Array(Type.String()),
    limitsHit: Type.Array(Type.String(), { description: 'test bed limits (TestbedConfig fields) that refused something the filter asked for' }),
    module: ModuleSummary,
    timings: Type.Object({ totalMs: Type.Number(), guestMs: Type.Number(), vmStarted: Type.Boolean() }),
  },
);

export const ComponentResultSchema = Type.Object({
  kind: Type.Literal('http-component'),
  outcome: Type.String({ description: 'ok | trap | timeout | no_response | error_response | vm_lost | runner_lost' }),
  message: Type.Optional(Type.String()),
  response: Type.Union([Type.Object({ status: Type.Integer(), headers: Pairs, body: Body }), Type.Null()], { description: "the component's own response (a thrown error in a fetch handler is StarlingMonkey's 500)" }),
  logs: Type.Array(Type.Object({ stream: Type.String(), line: Type.String() })),
  droppedLogBytes: Type.Integer(),
  outgoing: Type.Array(
    Type.Object({
      authority: Type.String(),
      pathWithQuery: Type.String(),
      allowed: Type.Boolean(),
      status: Type.Optional(Type.Integer()),
      error: Type.Optional(Type.String({ description: 'why an allowed call failed (the component saw an error-code)' })),
      limit: Type.Optional(Type.String({ description: 'the test bed limit (TestbedConfig field) that refused or ended the call' })),
    }),
  ),
  droppedOutgoing: Type.Integer({ description: 'outgoing calls made past the first 64 listed in `outgoing`: counted, not listed' }),
  module: Type.Object({ sha256: Type.String(), size: Type.Integer(), memoryCapBytes: Type.Integer(), prepareMs: Type.Number() }),
  timings: Type.Object({ totalMs: Type.Number(), instantiateMs: Type.Number(), handleMs: Type.Number(), prewarmed: Type.Boolean() }),
});

/** GET /v1/testbed/runners (admin): the runner processes, the API's slots and what each owner holds. */
export const RunnerListingSchema = Type.Object({
  runners: Type.Array(
    Type.Object({
      id: Type.Integer(),
      origin: Type.Union([Type.Literal('local'), Type.Literal('remote')]),
      name: Type.String(),
      pid: Type.Integer(),
      slots: Type.Integer(),
      kinds: Type.Array(Type.String()),
      address: Type.Optional(Type.String({ description: 'where a remote runner connected from' })),
      connectedAt: Type.String({ format: 'date-time' }),
      calls: Type.Integer({ description: 'calls sent to it since it connected' }),
    }),
  ),
  localPids: Type.Array(Type.Integer(), { description: 'pids of the runner processes this API started' }),
  slots: Type.Integer({ description: 'slots over every connected runner' }),
  owners: Type.Record(Type.String(), Type.Object({ running: Type.Integer(), queued: Type.Integer() }), { description: 'per owner id: calls running and waiting' }),
});
