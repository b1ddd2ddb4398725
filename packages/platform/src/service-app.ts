import { microServiceName, subjects, type ServiceName, type Subjects } from '@chat/contracts';
import { Counter } from 'prom-client';
import type { Config } from './config';
import { createRedis, dropKeysOnReconnect } from './redis';
import { defaultMetricsPort } from './config';
import { createDatabase, ensureDatabase, migrate, type Database } from './db';
import { Teardown } from './lifecycle';
import type { Logger } from './logger';
import { createMetrics, serveMetrics, type Metrics } from './metrics';
import { BusClient, connectNats, type NatsConnection } from './nats';
import { startMicroService, type EndpointDef } from './service-host';

export interface ServiceContext {
  config: Config;
  log: Logger;
  nc: NatsConnection;
  bus: BusClient;
  subjects: Subjects;
  metrics: Metrics;
  /** Register a stop step; steps run in reverse order of registration. */
  teardown: Teardown;
}

/**
 * A service's cache: a fail-fast Redis client under `<REDIS_PREFIX><service>:`
 * whose `pattern` keys are dropped when Redis returns from an outage, and the
 * `chat_cache_requests_total{cache,result}` counter in the service's registry.
 */
export function openCache(ctx: Pick<ServiceContext, 'config' | 'log' | 'metrics' | 'teardown'>, service: ServiceName, pattern: string) {
  const prefix = `${ctx.config.REDIS_PREFIX}${service}:`;
  const redis = createRedis(ctx.config.REDIS_URL, prefix, ctx.log, service, { failFast: true });
  dropKeysOnReconnect(redis, prefix, pattern, ctx.log);
  ctx.teardown.add('redis', () => redis.quit());
  const requests = new Counter({
    name: 'chat_cache_requests_total',
    help: 'Cache lookups by cache and result (hit, miss, error)',
    labelNames: ['cache', 'result'] as const,
    registers: [ctx.metrics.registry],
  });
  return { redis, requests };
}

export interface ServiceSpec<D> {
  name: ServiceName;
  description: string;
  /** The PostgreSQL schema this service owns, with its migrations folder; omitted for services without a database. */
  database?: { schema: string; migrations: URL };
  /** Builds repositories, domain and background workers; returns the request/reply endpoints. */
  setup: (ctx: ServiceContext & { db: D }) => Promise<EndpointDef[]>;
}

export interface RunningService {
  stop(): Promise<void>;
  metrics: Metrics;
  metricsPort: number;
}

/**
 * The shared shape of every non-gateway composition root: database and
 * migrations (when it has one) → NATS → the service's own wiring → its
 * endpoints in the services API → metrics. Stops in reverse order.
 */
export async function startService<D extends Database | undefined>(config: Config, log: Logger, spec: ServiceSpec<D>): Promise<RunningService> {
  const teardown = new Teardown(log);
  const metrics = createMetrics(spec.name, { database: Boolean(spec.database) });
  try {
    let db: Database | undefined;
    if (spec.database) {
      await ensureDatabase(config.DATABASE_URL);
      await migrate(config.DATABASE_URL, spec.database.schema, spec.database.migrations, log);
      const opened = createDatabase(config.DATABASE_URL, spec.database.schema, { max: config.DB_POOL_MAX, metrics, log, name: spec.name });
      teardown.add('postgres pool', () => opened.end());
      db = opened;
    }
    const nc = await connectNats(config, spec.name, log);
    teardown.add('nats drain', () => nc.drain());

    const s = subjects(config.NATS_PREFIX);
    const bus = new BusClient(nc, config.REQUEST_TIMEOUT_MS);
    const endpoints = await spec.setup({ config, log, nc, bus, subjects: s, metrics, teardown, db: db as D });

    const svc = await startMicroService(
      nc,
      { name: microServiceName(config.NATS_PREFIX, spec.name), version: '0.1.0', description: spec.description },
      endpoints,
      log,
      metrics,
    );
    teardown.add('nats service', () => svc.stop());

    const http = await serveMetrics(metrics.registry, config.METRICS_PORT ?? defaultMetricsPort[spec.name]);
    teardown.add('metrics server', () => new Promise((resolve) => http.server.close(() => resolve(undefined))));

    log.info({ metricsPort: http.port }, `${spec.name} ready`);
    return { stop: () => teardown.stop(), metrics, metricsPort: http.port };
  } catch (err) {
    await teardown.stop();
    throw err;
  }
}
