import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../services.ts';

export function operationsRoutes(services: Services): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', { schema: { tags: ['operations'], summary: 'Liveness: the process answers' } }, async () => ({ status: 'ok' }));

    app.get('/readyz', { schema: { tags: ['operations'], summary: 'Readiness: the database and the object store answer' } }, async (_request, reply) => {
      const checks = await Promise.allSettled([services.database.ping(), services.objects.ping()]);
      const [database, objects] = checks.map((check) => (check.status === 'fulfilled' ? 'ok' : `failing: ${String(check.reason)}`));
      const ready = checks.every((check) => check.status === 'fulfilled');
      return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', database, objects });
    });

    // Metrics name routes, owners' traffic and process internals: an admin
    // token reads them (Prometheus: `authorization: { credentials: <token> }`).
    app.get('/metrics', { config: { auth: 'admin' }, schema: { tags: ['operations'], summary: 'Prometheus metrics (admin token)' } }, async (_request, reply) => {
      const body = await services.metrics.registry.metrics();
      return reply.type(services.metrics.registry.contentType).send(body);
    });

    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  };
}
