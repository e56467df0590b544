/**
 * The test bed over HTTP:
 *
 * - POST /v1/versions/:versionId/invoke runs the latest successful build
 *   once: a function with stdin, args and env; a filter with one request
 *   (through a fresh VM; the upstream's response may be simulated). Guest
 *   failures (trap, timeout, memory cap, paused forever) are results with an
 *   `outcome`, answered 200; a module that cannot run at all is a 422.
 * - ALL /preview/:versionId/* sends real HTTP through the filter's warm VM
 *   to an upstream: the built-in echo, or the allow-listed upstream named by
 *   `preview.upstream` in the version's config JSON. Authenticate with the
 *   owner token (`Authorization: Bearer …`); Kiln removes that header before
 *   the filter and the upstream see the request.
 * - GET /v1/testbed/runners (admin) lists the runner processes.
 *
 * Tenant modules, http-components included, run only in runner processes
 * (decisions 0012, 0017): this module
 * resolves versions (cached briefly: no database round trip per call for a
 * hot version), applies the owner's fair-share limits (429 with
 * Retry-After) and hands the call over.
 */
import { Type } from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { badRequest, conflict, notFound, unprocessable } from '../../errors.ts';
import type { Build } from '../../store/metadata/repositories/builds.ts';
import type { Version } from '../../store/metadata/repositories/versions.ts';
import { ComponentResultSchema, FilterResultSchema, FunctionResultSchema, InvokeBody } from '../../testbed/api-schemas.ts';
import { componentResultJson, type ComponentResult } from '../../testbed/component/index.ts';
import type { TestbedConfig } from '../../testbed/config.ts';
import type { HttpRequestData } from '../../testbed/http-message.ts';
import { bodyBytes, requestData, responseData } from '../../testbed/inputs.ts';
import { Lru } from '../../testbed/lru.ts';
import type { ArtifactRef } from '../../testbed/modules.ts';
import { LOG_LEVELS } from '../../testbed/proxy-wasm/abi.ts';
import type { HeaderPairs } from '../../testbed/proxy-wasm/header-map.ts';
import { filterResultJson, functionResultJson } from '../../testbed/render.ts';
import { RunnerTestbed } from '../../testbed/runner/client.ts';
import { acceptRunnerUpgrades } from '../../testbed/runner/remote.ts';
import { TestbedLimitError } from '../../testbed/runner/scheduler.ts';
import type { FilterResult, PluginSettings } from '../../testbed/testbed.ts';
import { ECHO_UPSTREAM, HOP_BY_HOP } from '../../testbed/upstream.ts';
import type { AppKind } from '../../wasm/kind.ts';
import { ownerOf } from '../auth.ts';
import { errorResponses, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';

const VersionParams = Type.Object({ versionId: Uuid });

/** What a version runs as on the test bed, looked up from its latest successful build. */
interface Target {
  version: Version;
  kind: AppKind;
  artifact: ArtifactRef;
  plugin: PluginSettings;
  /** From the version's config, parsed once per look-up rather than per request. */
  preview: { upstream: string | undefined; freshInstance: boolean };
}

export interface TestbedRouteOptions {
  /** Default: the server's `config.testbed` (loaded once at start, src/config.ts). */
  config?: TestbedConfig;
}

export function testbedRoutes(services: Services, options: TestbedRouteOptions = {}): FastifyPluginAsync {
  return async (plugin) => {
    const config = options.config ?? services.config.testbed;
    const testbed = new RunnerTestbed(config);
    const stopAccepting = acceptRunnerUpgrades(plugin.server, (token) => isWorkerToken(services, token), (socket, address) => testbed.hub.attach(socket, 'remote', address));
    const targets = new TargetCache(services, config.previewCacheMs);
    const stopCompiling = services.buildEvents.onSucceeded((build) => {
      precompile(services, testbed, build);
      warmFilter(testbed, targets, build);
    });
    plugin.addHook('onClose', async () => {
      stopAccepting();
      stopCompiling();
      await testbed.close();
    });
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.get(
      '/v1/testbed/runners',
      { config: { auth: 'admin' }, schema: { tags: ['testbed'], summary: 'Test bed runner processes, their slots and the calls each owner holds', response: { 200: Type.Unknown(), ...errorResponses } } },
      async () => ({ runners: testbed.runners(), localPids: testbed.localPids(), slots: testbed.hub.scheduler.slotCount, owners: testbed.hub.scheduler.usage() }),
    );

    app.post(
      '/v1/versions/:versionId/invoke',
      {
        config: { auth: 'owner' },
        // An empty POST runs with the defaults (empty stdin, or GET / through the filter).
        preValidation: async (request) => {
          request.body ??= {};
        },
        schema: {
          tags: ['testbed'],
          summary: 'Run the latest successful build once on the test bed',
          description:
            'A function (wasi-command) gets `input` on stdin, `args` and `env`; a filter (proxy-wasm) gets `request` in a fresh VM configured with the version config, and its upstream answers (or `response` is used). Guest failures are results (`outcome`: trap, timeout, memory_limit, paused, …), not errors.',
          params: VersionParams,
          body: InvokeBody,
          response: { 200: Type.Union([FunctionResultSchema, FilterResultSchema, ComponentResultSchema]), ...errorResponses },
        },
      },
      async (request, reply) => {
        const body = request.body;
        const target = await targets.get(ownerOf(request), request.params.versionId, body.variant);
        checkLimits(body, config);
        // The 200 schema is a union of three results: its serializer would validate every result against each
        // branch to pick one (the largest single cost of an invoke in a profile). The kind is known: its own
        // schema serializes it (compiled once by Fastify, cached per schema).
        // Set only once the result is there: an error's body goes through the error handler's serializer.
        const serializeAs = (schema: TSchema) => reply.type('application/json; charset=utf-8').serializer(reply.compileSerializationSchema(schema));
        if (target.kind === 'wasi-command') {
          const result = await withRetryAfter(reply, () => invokeFunction(testbed, target, body));
          return serializeAs(FunctionResultSchema).send(result);
        }
        if (target.kind === 'http-component') {
          const result = await withRetryAfter(reply, () => invokeComponent(testbed, target, body, request, config));
          return serializeAs(ComponentResultSchema).send(result);
        }
        const result = await withRetryAfter(reply, () => invokeFilter(testbed, target, body, request));
        return serializeAs(FilterResultSchema).send(result);
      },
    );

    await app.register(previewRoutes(testbed, config, targets));
  };
}

function checkLimits(body: InvokeBody, config: TestbedConfig): void {
  const limits = body.limits ?? {};
  if (limits.timeoutMs !== undefined && limits.timeoutMs > config.maxTimeoutMs) throw badRequest('invalid_limits', `limits.timeoutMs may be at most ${config.maxTimeoutMs}`);
  if (limits.memoryMb !== undefined && limits.memoryMb > config.memoryCapMb) throw badRequest('invalid_limits', `limits.memoryMb may be at most ${config.memoryCapMb}`);
}

const FILTER_FIELDS = ['request', 'response', 'upstream', 'httpCallResponses', 'ticks', 'logLevel'] as const;
const FUNCTION_FIELDS = ['input', 'args', 'env'] as const;

function refuseFields(body: InvokeBody, fields: readonly (keyof InvokeBody)[], kind: AppKind): void {
  const wrong = fields.filter((field) => body[field] !== undefined);
  if (wrong.length > 0) throw badRequest('wrong_input_for_kind', `this version is a ${kind}; ${wrong.join(', ')} ${wrong.length === 1 ? 'applies' : 'apply'} only to the other kind`);
}

async function invokeFunction(testbed: RunnerTestbed, target: Target, body: InvokeBody) {
  refuseFields(body, FILTER_FIELDS, target.kind);
  const stdin = bodyBytes(body.input, testbed.config.maxBodyBytes, 'input');
  const result = await testbed.invokeFunction(target.artifact, { ownerId: target.plugin.info.ownerId, stdin, args: [target.plugin.info.name, ...(body.args ?? [])], env: body.env ?? {}, ...body.limits });
  return functionResultJson(result, { maxBodyBytes: testbed.config.maxResultBodyBytes });
}

async function invokeFilter(testbed: RunnerTestbed, target: Target, body: InvokeBody, request: FastifyRequest) {
  refuseFields(body, FUNCTION_FIELDS, target.kind);
  const max = testbed.config.maxBodyBytes;
  const httpRequest = requestData(body.request, request.headers.host ?? 'localhost', max);
  const upstream = body.upstream ?? previewUpstream(target.version.config) ?? ECHO_UPSTREAM;
  if (!body.response && !testbed.upstreams.has(upstream)) throw unknownUpstream(testbed, upstream);
  const simulatedCalls = body.httpCallResponses
    ? Object.fromEntries(Object.entries(body.httpCallResponses).map(([name, response]) => [name, responseData(response, max, `httpCallResponses.${name}`)]))
    : undefined;
  const result = await testbed.invokeFilter(target.artifact, target.plugin, {
    request: httpRequest,
    connection: { sourceAddress: body.request?.sourceAddress ?? request.ip, sourcePort: request.socket.remotePort ?? 0, destinationAddress: request.socket.localAddress ?? '127.0.0.1', destinationPort: request.socket.localPort ?? 0 },
    upstream,
    ...(body.response ? { response: responseData(body.response, max, 'response') } : {}),
    ...(simulatedCalls ? { httpCallResponses: simulatedCalls } : {}),
    ticks: body.ticks ?? 0,
    logLevel: LOG_LEVELS.indexOf(body.logLevel ?? 'trace'),
    ...body.limits,
  });
  return filterResultJson(result, httpRequest, { name: upstream, simulated: body.response !== undefined }, { maxBodyBytes: testbed.config.maxResultBodyBytes });
}

const COMPONENT_REFUSED_FIELDS = ['response', 'upstream', 'httpCallResponses', 'ticks', 'logLevel', 'input', 'args', 'env'] as const;

/** An http-component answers the request itself: there is no upstream to simulate and no stdin. */
async function invokeComponent(testbed: RunnerTestbed, target: Target, body: InvokeBody, request: FastifyRequest, config: TestbedConfig) {
  refuseFields(body, COMPONENT_REFUSED_FIELDS, target.kind);
  if (body.limits?.memoryMb !== undefined) throw badRequest('invalid_limits', `limits.memoryMb does not apply to an http-component; its memory cap is the operator's (${config.memoryCapMb} MB)`);
  const httpRequest = requestData(body.request, request.headers.host ?? 'localhost', config.maxBodyBytes);
  const limits = body.limits?.timeoutMs === undefined ? {} : { timeoutMs: body.limits.timeoutMs };
  return componentResultJson(await testbed.invokeComponent(target.plugin.info.ownerId, target.version.id, target.artifact, httpRequest, limits));
}

function unknownUpstream(testbed: RunnerTestbed, name: string) {
  return badRequest('unknown_upstream', `no test bed upstream is named ${JSON.stringify(name)}; the operator allows ${testbed.upstreams.names().map((n) => JSON.stringify(n)).join(', ')} (KILN_TESTBED_UPSTREAMS)`);
}

/** `preview.upstream` from the version's config, when the config is a JSON object that has it. */
export function previewUpstream(config: string): string | undefined {
  const preview = previewSettings(config);
  return typeof preview?.upstream === 'string' ? preview.upstream : undefined;
}

/** `preview.freshInstance: true` in the version's config: a new VM per preview request (nothing survives a request). */
export function previewFreshInstance(config: string): boolean {
  return previewSettings(config)?.freshInstance === true;
}

/**
 * `preview.rootId` in the version's config: the plugin's root_id (Envoy's
 * PluginConfig.root_id), which the filter reads as plugin_root_id. SDKs that
 * pick their root context by that name (proxy-runtime's registerRootContext,
 * the C++ SDK) need it; empty when none is configured, as in Envoy.
 */
export function previewRootId(config: string): string {
  const rootId = previewSettings(config)?.rootId;
  return typeof rootId === 'string' ? rootId : '';
}

function previewSettings(config: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config);
  } catch {
    return undefined;
  }
  const preview = isRecord(parsed) ? parsed.preview : undefined;
  return isRecord(preview) ? preview : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function resolveTarget(services: Services, ownerId: string, versionId: string, variant?: 'optimized' | 'original'): Promise<Target> {
  const version = await services.versions.get(ownerId, versionId);
  if (!version) throw notFound('version', versionId);
  const [build, application] = await Promise.all([services.builds.latestSucceeded(version.id), services.applications.get(ownerId, version.applicationId)]);
  if (!build) throw conflict('no_artifact', `version ${version.id} has no successful build yet; see GET /v1/builds?versionId=${version.id}`);
  const chosen = variant ?? (build.artifacts.optimized ? 'optimized' : 'original');
  const record = build.artifacts[chosen];
  if (!record) throw notFound('artifact variant', chosen);
  const kind = build.kind ?? version.kind;
  if (kind !== 'proxy-wasm' && kind !== 'wasi-command' && kind !== 'http-component') throw unprocessable('unknown_kind', `version ${version.id} has no app kind the test bed can run`);
  return {
    version,
    kind,
    artifact: { sha256: record.sha256, load: async () => new Uint8Array((await services.objects.getBuffer(record.key)).body) },
    plugin: {
      info: { ownerId, name: application?.name ?? version.id, rootId: previewRootId(version.config), vmId: version.id, versionId: version.id, version: version.version, applicationId: version.applicationId },
      config: version.config,
    },
    preview: { upstream: previewUpstream(version.config), freshInstance: previewFreshInstance(version.config) },
  };
}

/**
 * The preview routes live in their own plugin: they take any body as raw
 * bytes (the filter decides what it means), where the rest of the API
 * parses JSON and multipart.
 */
function previewRoutes(testbed: RunnerTestbed, config: TestbedConfig, targets: TargetCache): FastifyPluginAsync {
  return async (plugin) => {
    plugin.removeAllContentTypeParsers();
    plugin.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.maxBodyBytes }, (_request, body, done) => done(null, body));
    const targetFor = async (ownerId: string, versionId: string): Promise<Target> => {
      const target = await targets.get(ownerId, versionId);
      if (target.kind === 'wasi-command') throw badRequest('not_a_filter', `version ${versionId} is a ${target.kind}; the preview URL runs filters and http-components (use POST /v1/versions/${versionId}/invoke)`);
      return target;
    };
    const options = {
      config: { auth: 'owner' as const },
      schema: { tags: ['testbed'], summary: 'Real HTTP through the filter to its upstream (Authorization: Bearer <owner token>)', params: Type.Object({ versionId: Uuid }) },
    };
    const handler = async (request: FastifyRequest<{ Params: { versionId: string } }>, reply: FastifyReply) => {
      const target = await targetFor(ownerOf(request), request.params.versionId);
      if (target.kind === 'http-component') return sendComponentPreview(reply, await withRetryAfter(reply, () => testbed.invokeComponent(target.plugin.info.ownerId, target.version.id, target.artifact, previewRequest(request))));
      const upstream = target.preview.upstream ?? ECHO_UPSTREAM;
      if (!testbed.upstreams.has(upstream)) throw unknownUpstream(testbed, upstream);
      const incoming = previewRequest(request);
      const connection = { sourceAddress: request.socket.remoteAddress ?? '127.0.0.1', sourcePort: request.socket.remotePort ?? 0, destinationAddress: request.socket.localAddress ?? '127.0.0.1', destinationPort: request.socket.localPort ?? 0, requestId: request.id };
      const result = await withRetryAfter(reply, () => testbed.serveFilter(target.artifact, target.plugin, incoming, connection, upstream, target.preview.freshInstance));
      return sendPreview(reply, result);
    };
    plugin.all('/preview/:versionId', options, handler);
    plugin.all('/preview/:versionId/*', options, handler);
  };
}

/** The client's request as the filter sees it: Kiln's prefix, credentials and hop-by-hop headers removed. */
function previewRequest(request: FastifyRequest<{ Params: { versionId: string } }>): HttpRequestData {
  const prefix = `/preview/${request.params.versionId}`;
  const rest = request.url.slice(prefix.length);
  const path = rest.startsWith('/') ? rest : `/${rest}`;
  const headers = rawPairs(request.raw.rawHeaders).filter(([key]) => key !== 'authorization' && key !== 'host' && key !== 'content-length' && !HOP_BY_HOP.has(key));
  const body = Buffer.isBuffer(request.body) ? new Uint8Array(request.body) : new Uint8Array(0);
  return {
    method: request.method,
    path,
    authority: request.headers.host ?? 'localhost',
    scheme: request.protocol,
    headers,
    body,
    trailers: rawPairs(request.raw.rawTrailers).filter(([key]) => !HOP_BY_HOP.has(key)),
  };
}

function rawPairs(raw: string[]): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([(raw[i] ?? '').toLowerCase(), raw[i + 1] ?? '']);
  return pairs;
}

/** Failures that ended the exchange without a response, as the status a proxy would answer. */
const FAILURE_STATUS: Readonly<Record<string, number>> = { paused: 504, timeout: 504 };

/** The component's own response; failures as a proxy would answer them (504 for a deadline, else 502). */
function sendComponentPreview(reply: FastifyReply, result: ComponentResult): FastifyReply {
  const timing = `component;dur=${result.timings.handleMs.toFixed(3)}, instantiate;dur=${result.timings.instantiateMs.toFixed(3)}`;
  const { response } = result;
  if (response === null) {
    return reply
      .status(result.outcome === 'timeout' ? 504 : 502)
      .header('x-kiln-outcome', result.outcome)
      .header('server-timing', timing)
      .send({ error: { code: `component_${result.outcome}`, message: result.message ?? `the component ended with outcome ${result.outcome}` } });
  }
  reply.status(response.status).headers(responseHeaders(response.headers)).header('server-timing', timing);
  if (result.outcome !== 'ok') reply.header('x-kiln-outcome', result.outcome);
  return reply.send(Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength));
}

/** A module's response headers for Node: repeated names folded into arrays; hop-by-hop and the length (Node sets it) dropped. */
function responseHeaders(pairs: HeaderPairs): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [key, value] of pairs) {
    if (HOP_BY_HOP.has(key) || key === 'content-length') continue;
    const existing = headers[key];
    headers[key] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  return headers;
}

function sendPreview(reply: FastifyReply, result: FilterResult): FastifyReply {
  const timing = `filter;dur=${result.guestMs.toFixed(3)}`;
  const { response } = result;
  if (result.outcome !== 'ok' || !response) {
    return reply
      .status(FAILURE_STATUS[result.outcome] ?? 502)
      .header('x-kiln-outcome', result.outcome)
      .header('server-timing', timing)
      .send({ error: { code: `filter_${result.outcome}`, message: result.message ?? `the filter ended with outcome ${result.outcome}` } });
  }
  reply.status(response.status).headers(responseHeaders(response.headers)).header('server-timing', timing);
  // Fastify waits for a trailer callback or promise; a plain return value would hang the response.
  for (const [key, value] of response.trailers) reply.trailer(key, async () => value);
  return reply.send(Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength));
}

/**
 * What a version runs as, kept for `ttlMs` per owner and version: the
 * version, its latest successful build and its artifact do not change while
 * they exist, so a hot version costs no database round trip per call. The
 * key includes the owner, so another owner's lookup still reaches the
 * database (and its 404); a deleted version is served at most `ttlMs` longer.
 * An entry used in the second half of its life is looked up again in the
 * background (refresh-ahead), so a hot version never waits for the database
 * and is still never older than `ttlMs`; a failed refresh drops the entry.
 */
class TargetCache {
  private readonly entries = new Lru<string, { target: Target; until: number; refreshing: boolean }>(1000);

  constructor(
    private readonly services: Services,
    private readonly ttlMs: number,
  ) {}

  async get(ownerId: string, versionId: string, variant?: 'optimized' | 'original'): Promise<Target> {
    const key = `${ownerId}:${versionId}:${variant ?? ''}`;
    const cached = this.entries.get(key);
    const now = Date.now();
    if (cached && cached.until > now) {
      if (!cached.refreshing && cached.until - now < this.ttlMs / 2) this.refresh(key, cached, ownerId, versionId, variant);
      return cached.target;
    }
    const target = await resolveTarget(this.services, ownerId, versionId, variant);
    if (this.ttlMs > 0) this.entries.set(key, { target, until: Date.now() + this.ttlMs, refreshing: false });
    return target;
  }

  private refresh(key: string, entry: { refreshing: boolean }, ownerId: string, versionId: string, variant: 'optimized' | 'original' | undefined): void {
    entry.refreshing = true;
    resolveTarget(this.services, ownerId, versionId, variant).then(
      (target) => this.entries.set(key, { target, until: Date.now() + this.ttlMs, refreshing: false }),
      // Gone or failing: the next call looks it up itself and gets the answer (a 404, say).
      () => this.entries.delete(key),
    );
  }
}

/** Fair-share refusals carry Retry-After (the error handler writes the JSON body). */
async function withRetryAfter<T>(reply: FastifyReply, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof TestbedLimitError) void reply.header('retry-after', String(error.retryAfterSeconds));
    throw error;
  }
}

async function isWorkerToken(services: Services, token: string): Promise<boolean> {
  const record = await services.tokens.findActiveBySecret(token);
  return record?.kind === 'worker';
}

/** A build succeeded: its module is compiled (a component: transpiled and pre-warmed) on the runners before anyone calls it. */
function precompile(services: Services, testbed: RunnerTestbed, build: Build): void {
  const kind = build.kind;
  if (kind !== 'proxy-wasm' && kind !== 'wasi-command' && kind !== 'http-component') return;
  const record = build.artifacts.optimized ?? build.artifacts.original;
  if (!record) return;
  testbed.precompile({ sha256: record.sha256, load: async () => new Uint8Array((await services.objects.getBuffer(record.key)).body) }, kind);
}

/**
 * A filter's build succeeded: its version is looked up now (the cache then
 * answers the first preview request) and its warm VM started on a free slot.
 * Both only save time; a failure shows again, with its error, on first use.
 */
function warmFilter(testbed: RunnerTestbed, targets: TargetCache, build: Build): void {
  if (build.kind !== 'proxy-wasm') return;
  void targets
    .get(build.ownerId, build.versionId)
    // A version that asks for a fresh instance per request never uses a warm VM: compiling is all it needs.
    .then((target) => (target.kind === 'proxy-wasm' && !target.preview.freshInstance ? testbed.warmFilter(target.artifact, target.plugin) : false))
    .catch(() => undefined);
}
