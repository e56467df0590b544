import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { LogController, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { UserError } from '../errors.ts';
import { authHook, refuseUnreadBody, TokenAuthenticator } from './auth.ts';
import { describeError } from './http-errors.ts';
import { ErrorBody } from './schemas.ts';
import type { Services } from './services.ts';
import { applicationRoutes } from './routes/applications.ts';
import { buildRoutes } from './routes/builds.ts';
import { deploymentRoutes } from './routes/deployments.ts';
import { edgeRoutes } from './routes/edge.ts';
import { internalRoutes } from './routes/internal.ts';
import { operationsRoutes } from './routes/operations.ts';
import { ownerRoutes } from './routes/owners.ts';
import { testbedRoutes } from './routes/testbed.ts';
import { uiRoutes } from './routes/ui.ts';
import { versionRoutes } from './routes/versions.ts';

export type App = Awaited<ReturnType<typeof buildApp>>;

/** JSON bodies and worker log batches (≤ 256 KiB); uploads and artifacts set their own. */
export const JSON_BODY_LIMIT_BYTES = 1024 * 1024;

export interface AppOptions {
  /** When false, requests are not logged (benchmarks, tests). */
  logRequests?: boolean;
}

export async function buildApp(services: Services, options: AppOptions = {}) {
  const authenticator = new TokenAuthenticator(services.tokens);
  const app = Fastify({
    loggerInstance: services.logger,
    // Worker calls (log appends several times a second, long polls) would
    // drown the request log; their effects are logged where they matter.
    logController: new LogController({ disableRequestLogging: (request) => options.logRequests === false || request.url.startsWith('/internal/') }),
    bodyLimit: JSON_BODY_LIMIT_BYTES,
    return503OnClosing: true,
    // Errors raised by the router itself (a path parameter too long, a
    // malformed URL) get the same error shape as everything else.
    // Such a path matched no route, so its auth is unknown: under the
    // authenticated prefixes a caller without a valid token learns nothing
    // but 401 (never how we parse paths), and its body is left unread.
    frameworkErrors: (error, request, reply: FastifyReply) => {
      void (async () => {
        const refusal = await refusalForUnroutedPath(authenticator, request);
        if (refusal) refuseUnreadBody(request, reply);
        const { status, code, message } = describeError(refusal ?? error);
        void reply.status(status).send({ error: { code, message } });
      })();
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.setValidatorCompiler(validatorFor);
  app.addSchema(ErrorBody);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Kiln API', version: '1.0.0', description: 'Build pipeline and test bed for edge WebAssembly applications' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    hideUntagged: false,
    transform: ({ schema, url }) => ({ schema: url.startsWith('/internal/') ? { ...schema, hide: true } : schema, url }),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(multipart, {
    limits: { files: 1, fields: 4, parts: 6, fieldSize: 256 * 1024, fileSize: services.config.archiveLimits.maxCompressedBytes, headerPairs: 100 },
  });
  // Raw bodies get the small default limit; the one route that takes big
  // ones (artifact upload) raises it for itself, so no other route can be
  // made to buffer an artifact-sized body.
  app.addContentTypeParser(['application/octet-stream', 'application/wasm', 'text/plain'], { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.setErrorHandler((error, request, reply) => {
    const { status, code, message } = describeError(error);
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    if (status === 503) void reply.header('retry-after', '5');
    void reply.status(status).send({ error: { code, message } });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({ error: { code: 'route_not_found', message: `no route ${request.method} ${request.url.split('?')[0]}; see /docs` } });
  });

  app.addHook('onRequest', authHook(authenticator));
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    services.metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    services.metrics.httpDuration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });

  await app.register(operationsRoutes(services));
  await app.register(ownerRoutes(services, authenticator));
  await app.register(applicationRoutes(services));
  await app.register(versionRoutes(services));
  await app.register(buildRoutes(services));
  await app.register(deploymentRoutes(services));
  await app.register(edgeRoutes(services, authenticator));
  await app.register(internalRoutes(services));
  await app.register(testbedRoutes(services));
  await app.register(uiRoutes());
  return app;
}

const AUTHENTICATED_PREFIXES = ['/v1/', '/internal/', '/preview/'];

async function refusalForUnroutedPath(authenticator: TokenAuthenticator, request: FastifyRequest): Promise<UserError | undefined> {
  if (!AUTHENTICATED_PREFIXES.some((prefix) => request.url.startsWith(prefix))) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
  const record = match?.[1] ? await authenticator.authenticate(match[1]).catch(() => undefined) : undefined;
  return record ? undefined : new UserError('unauthenticated', 'unauthorized', 'missing, malformed, unknown or revoked credentials');
}

// JSON bodies are validated as sent (42 is not a name); query strings,
// params and headers are text on the wire, so they are coerced to the types
// their schemas declare.
const strictAjv = addFormats.default(new Ajv.default({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false }));
const coercingAjv = addFormats.default(new Ajv.default({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: false }));

function validatorFor({ schema, httpPart }: { schema: object; httpPart?: string }) {
  return (httpPart === 'body' ? strictAjv : coercingAjv).compile(schema);
}
