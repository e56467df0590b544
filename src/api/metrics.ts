import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  buildsFinished: Counter<'state'>;
  buildsQueued: Counter;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kiln_' });
  return {
    registry,
    httpRequests: new Counter({ name: 'kiln_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    httpDuration: new Histogram({
      name: 'kiln_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    buildsFinished: new Counter({ name: 'kiln_builds_finished_total', help: 'Builds that reached a terminal state', labelNames: ['state'], registers: [registry] }),
    buildsQueued: new Counter({ name: 'kiln_builds_queued_total', help: 'Builds queued (uploads and rebuilds)', registers: [registry] }),
  };
}
