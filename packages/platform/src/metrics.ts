import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** Buckets for operations measured in milliseconds (0.5 ms .. 5 s). */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * One registry per service (never the global one), so several services can
 * share a process in tests without mixing their numbers.
 */
export function createMetrics(service: string, has: { handlers?: boolean; database?: boolean } = {}) {
  const { handlers = true, database = true } = has;
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    natsHandler: new Histogram({
      name: 'chat_nats_handler_duration_seconds',
      help: 'Time to handle one NATS request, by endpoint and outcome',
      labelNames: ['endpoint', 'outcome'] as const,
      buckets: LATENCY_BUCKETS,
      // Exposed only where they can have samples: a process without NATS
      // handlers or without a database does not list an empty family.
      registers: handlers ? [registry] : [],
    }),
    dbQuery: new Histogram({
      name: 'chat_db_query_duration_seconds',
      help: 'Time of one SQL statement, by statement kind',
      labelNames: ['statement'] as const,
      buckets: LATENCY_BUCKETS,
      registers: database ? [registry] : [],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

/** Serves GET /metrics of one registry; port 0 picks a free port. */
export async function serveMetrics(registry: Registry, port: number, host = '0.0.0.0'): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url === '/metrics' || req.url?.startsWith('/metrics?')) {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch(() => {
          res.writeHead(500).end();
        });
      return;
    }
    res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'text/plain' }).end(req.url === '/healthz' ? 'ok' : 'not found');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : port };
}
