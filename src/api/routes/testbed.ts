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
 * The routes parse, authorize, call one method of TryVersion
 * (src/use-cases/try-version.ts: look-ups, per-kind rules, runners) and
 * render; fair-share refusals get Retry-After here.
 */
import { Type } from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ComponentResultSchema, FilterResultSchema, FunctionResultSchema, InvokeBody, RunnerListingSchema } from '../../testbed/api-schemas.ts';
import type { ComponentResult } from '../../testbed/component/index.ts';
import type { TestbedConfig } from '../../testbed/config.ts';
import type { HttpRequestData } from '../../testbed/http-message.ts';
import type { HeaderPairs } from '../../testbed/proxy-wasm/header-map.ts';
import { RunnerTestbed } from '../../testbed/runner/client.ts';
import { acceptRunnerUpgrades } from '../../testbed/runner/remote.ts';
import { TestbedLimitError } from '../../testbed/runner/scheduler.ts';
import type { FilterResult } from '../../testbed/testbed.ts';
import { HOP_BY_HOP } from '../../testbed/upstream.ts';
import { TryVersion } from '../../use-cases/try-version.ts';
import { ownerOf } from '../auth.ts';
import { errorResponses, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';

const VersionParams = Type.Object({ versionId: Uuid });

/** Each result kind's own schema: the 200 union's serializer would try every branch (the largest single cost of an invoke in a profile). */
const RESULT_SCHEMAS = { 'wasi-command': FunctionResultSchema, 'proxy-wasm': FilterResultSchema, 'http-component': ComponentResultSchema } as const;

export interface TestbedRouteOptions {
  /** Default: the server's `config.testbed` (loaded once at start, src/config.ts). */
  config?: TestbedConfig;
}

export function testbedRoutes(services: Services, options: TestbedRouteOptions = {}): FastifyPluginAsync {
  return async (plugin) => {
    const config = options.config ?? services.config.testbed;
    const testbed = new RunnerTestbed(config);
    const tryVersion = new TryVersion(services, testbed, config);
    const stopAccepting = acceptRunnerUpgrades(plugin.server, (token) => isWorkerToken(services, token), (socket, address) => testbed.hub.attach(socket, 'remote', address));
    // Ready before the build is seen succeeded (bounded by readyWaitMs), then its target cached (decision 0040).
    const stopReadying = services.buildEvents.onSucceeding((candidate) => tryVersion.buildSucceeding(candidate), { withinMs: config.readyWaitMs });
    const stopWarming = services.buildEvents.onSucceeded((build) => tryVersion.buildSucceeded(build));
    plugin.addHook('onClose', async () => {
      stopAccepting();
      stopReadying();
      stopWarming();
      await testbed.close();
    });
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.get(
      '/v1/testbed/runners',
      { config: { auth: 'admin' }, schema: { tags: ['testbed'], summary: 'Test bed runner processes, their slots and the calls each owner holds', response: { 200: RunnerListingSchema, ...errorResponses } } },
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
        const caller = { host: request.headers.host ?? 'localhost', sourceAddress: request.ip, sourcePort: request.socket.remotePort ?? 0, destinationAddress: request.socket.localAddress ?? '127.0.0.1', destinationPort: request.socket.localPort ?? 0 };
        const result = await withRetryAfter(reply, () => tryVersion.invoke(ownerOf(request), request.params.versionId, request.body, caller));
        // Set only once the result is there: an error's body goes through the error handler's serializer.
        const schema: TSchema = RESULT_SCHEMAS[result.kind];
        return reply.type('application/json; charset=utf-8').serializer(reply.compileSerializationSchema(schema)).send(result.json);
      },
    );

    await app.register(previewRoutes(tryVersion, config));
  };
}

/**
 * The preview routes live in their own plugin: they take any body as raw
 * bytes (the filter decides what it means), where the rest of the API
 * parses JSON and multipart.
 */
function previewRoutes(tryVersion: TryVersion, config: TestbedConfig): FastifyPluginAsync {
  return async (plugin) => {
    plugin.removeAllContentTypeParsers();
    plugin.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.maxBodyBytes }, (_request, body, done) => done(null, body));
    const options = {
      config: { auth: 'owner' as const },
      schema: { tags: ['testbed'], summary: 'Real HTTP through the filter to its upstream (Authorization: Bearer <owner token>)', params: Type.Object({ versionId: Uuid }) },
    };
    const handler = async (request: FastifyRequest<{ Params: { versionId: string } }>, reply: FastifyReply) => {
      const connection = { sourceAddress: request.socket.remoteAddress ?? '127.0.0.1', sourcePort: request.socket.remotePort ?? 0, destinationAddress: request.socket.localAddress ?? '127.0.0.1', destinationPort: request.socket.localPort ?? 0, requestId: request.id };
      const outcome = await withRetryAfter(reply, () => tryVersion.preview(ownerOf(request), request.params.versionId, previewRequest(request), connection));
      return outcome.kind === 'http-component' ? sendComponentPreview(reply, outcome.result) : sendPreview(reply, outcome.result);
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
