import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ObjectIntegrityError, ObjectNotFoundError } from '../store/objects/object-store.ts';
import { PlatformError, UserError } from '../errors.ts';
import { isDatabaseUnavailable } from '../store/metadata/errors.ts';
import { LeaseLostError } from '../queue/jobs.ts';
import { authHook, refuseUnreadBody, TokenAuthenticator } from './auth.ts';
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
  return record ? undefined : new UserError(401, 'unauthorized', 'missing, malformed, unknown or revoked credentials');
}

// JSON bodies are validated as sent (42 is not a name); query strings,
// params and headers are text on the wire, so they are coerced to the types
// their schemas declare.
const strictAjv = addFormats.default(new Ajv.default({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false }));
const coercingAjv = addFormats.default(new Ajv.default({ coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: false }));

function validatorFor({ schema, httpPart }: { schema: object; httpPart?: string }) {
  return (httpPart === 'body' ? strictAjv : coercingAjv).compile(schema);
}

interface DescribedError {
  status: number;
  code: string;
  message: string;
}

/** Maps every error to a status the caller can act on; only our faults are 5xx. */
export function describeError(error: unknown): DescribedError {
  if (error instanceof UserError) return { status: error.status, code: error.code, message: error.message };
  if (error instanceof LeaseLostError) return { status: 409, code: error.code, message: error.message };
  if (error instanceof ObjectNotFoundError) return { status: 404, code: 'object_missing', message: 'the stored object is missing' };
  if (error instanceof PlatformError) return { status: 503, code: error.code, message: 'Kiln could not complete this because a service it depends on failed; try again shortly' };
  if (isDatabaseUnavailable(error)) return { status: 503, code: 'database_unavailable', message: 'the database is unavailable; try again shortly' };
  if (error instanceof ObjectIntegrityError) return { status: 500, code: 'integrity_error', message: 'a stored object failed its integrity check; the operator has been told' };
  const fastifyError = error as Partial<FastifyError> & { part?: unknown };
  if (fastifyError.validation) {
    const context = fastifyError.validationContext ?? 'request';
    return { status: 400, code: 'invalid_request', message: `${context}${fastifyError.message?.replace(/^(body|querystring|params|headers)/, '') ?? ' is invalid'}` };
  }
  const statusCode = fastifyError.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, code: codeFor(fastifyError.code, statusCode), message: fastifyError.message ?? 'bad request' };
  }
  return { status: 500, code: 'internal_error', message: 'Kiln failed to handle this request; the error was logged' };
}

function codeFor(fastifyCode: string | undefined, status: number): string {
  if (status === 413) return 'payload_too_large';
  if (status === 414) return 'uri_too_long';
  if (status === 415) return 'unsupported_media_type';
  if (fastifyCode === 'FST_ERR_CTP_INVALID_JSON_BODY' || fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'invalid_json';
  return 'bad_request';
}
