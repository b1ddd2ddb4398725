import { pgDriver, redisDriver } from './drivers';
import { connect } from '@nats-io/transport-node';
import type { Config } from './config';
import { natsConnectOptions, type NatsSettings } from './nats-auth';

export interface BackingServerFailure {
  server: 'PostgreSQL' | 'NATS' | 'Redis';
  url: string;
  reason: string;
  howToStart: string;
  /** Set when the server answered but refused us (credentials, TLS): what to fix instead of how to start it. */
  fix?: string;
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

async function checkNats(settings: NatsSettings): Promise<string | undefined> {
  try {
    const nc = await connect({ ...natsConnectOptions(settings), timeout: 3000, reconnect: false });
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
export async function checkBackingServers(config: Pick<Config, 'DATABASE_URL' | 'REDIS_URL'> & NatsSettings, which: Array<BackingServerFailure['server']> = ['PostgreSQL', 'NATS', 'Redis']): Promise<BackingServerFailure[]> {
  const checks = {
    PostgreSQL: () => checkPostgres(config.DATABASE_URL).then((r) => [config.DATABASE_URL, r] as const),
    NATS: () => checkNats(config).then((r) => [config.NATS_URL, r] as const),
    Redis: () => checkRedis(config.REDIS_URL).then((r) => [config.REDIS_URL, r] as const),
  };
  const results = await Promise.all(which.map(async (server) => ({ server, result: await checks[server]() })));
  return results
    .filter(({ result }) => result[1] !== undefined)
    .map(({ server, result }) => {
      const fix = server === 'NATS' ? natsFix(result[1] ?? '') : undefined;
      return { server, url: redactUrl(result[0]), reason: result[1] ?? '', howToStart: HOW_TO_START[server], ...(fix ? { fix } : {}) };
    });
}

/**
 * A NATS failure that starting a server would not cure: the server is up but
 * refused our credentials or our TLS. Told apart so the line points at the
 * settings rather than at "start it".
 */
function natsFix(reason: string): string | undefined {
  if (/authoriz|authenticat|permissions? violation/i.test(reason))
    return 'Check the NATS credentials: NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE or NATS_CREDS_FILE';
  if (/certificate|self[- ]signed|\btls\b|ssl|handshake/i.test(reason))
    return 'Check NATS TLS: NATS_TLS_CA_FILE must name the CA that signed the server certificate (NATS_TLS_CERT_FILE/NATS_TLS_KEY_FILE when it verifies clients)';
  return undefined;
}

export const describeFailure = (f: BackingServerFailure) =>
  f.fix
    ? `${f.server} refused the connection at ${f.url} (${f.reason}). ${f.fix}`
    : `${f.server} does not answer at ${f.url} (${f.reason || 'no answer'}). Start it with: ${f.howToStart}`;
