import { pgDriver, redisDriver } from './drivers';
import { connect } from '@nats-io/transport-node';
import type { Config } from './config';

export interface BackingServerFailure {
  server: 'PostgreSQL' | 'NATS' | 'Redis';
  url: string;
  reason: string;
  howToStart: string;
}

/** A URL fit for a log line or an error message: its password replaced. */
export const redactUrl = (url: string): string => {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
};

const HOW_TO_START = {
  PostgreSQL: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start  (or: docker compose up -d postgres)",
  NATS: 'nats-server -js  (or: docker compose up -d nats)',
  Redis: 'redis-server --daemonize yes  (or: docker compose up -d redis)',
} as const;

async function checkPostgres(url: string): Promise<string | undefined> {
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new (pgDriver().Client)({ connectionString: admin.toString(), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkNats(url: string): Promise<string | undefined> {
  try {
    const nc = await connect({ servers: url.split(','), timeout: 3000, reconnect: false });
    const jsInfo = await nc.request('$JS.API.INFO', undefined, { timeout: 3000 }).catch(() => undefined);
    await nc.close();
    if (!jsInfo) return 'JetStream is not enabled (start nats-server with -js)';
    return undefined;
  } catch (err) {
    return (err as Error).message || String(err);
  }
}

async function checkRedis(url: string): Promise<string | undefined> {
  const redis = new (redisDriver().Redis)(url, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
    return undefined;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    redis.disconnect();
  }
}

/** Asks each backing server once; returns one failure per server that does not answer. */
export async function checkBackingServers(config: Pick<Config, 'DATABASE_URL' | 'NATS_URL' | 'REDIS_URL'>, which: Array<BackingServerFailure['server']> = ['PostgreSQL', 'NATS', 'Redis']): Promise<BackingServerFailure[]> {
  const checks = {
    PostgreSQL: () => checkPostgres(config.DATABASE_URL).then((r) => [config.DATABASE_URL, r] as const),
    NATS: () => checkNats(config.NATS_URL).then((r) => [config.NATS_URL, r] as const),
    Redis: () => checkRedis(config.REDIS_URL).then((r) => [config.REDIS_URL, r] as const),
  };
  const results = await Promise.all(which.map(async (server) => ({ server, result: await checks[server]() })));
  return results
    .filter(({ result }) => result[1] !== undefined)
    .map(({ server, result }) => ({ server, url: redactUrl(result[0]), reason: result[1] ?? '', howToStart: HOW_TO_START[server] }));
}

export const describeFailure = (f: BackingServerFailure) =>
  `${f.server} does not answer at ${f.url} (${f.reason || 'no answer'}). Start it with: ${f.howToStart}`;
