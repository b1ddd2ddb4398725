import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { Redis } from 'ioredis';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { eventStreamName } from '@chat/contracts';
import { createLogger, deadLetterStreamName, ensureDatabase, loadConfig, natsConnectOptions, type Config, type RunningService } from '@chat/platform';
import { startGateway } from '@chat/gateway';
import { startConversationsService } from '@chat/conversations';
import { startMessagesService } from '@chat/messages';
import { startBlocksService } from '@chat/blocks';
import { startPresenceService } from '@chat/presence';
import { startNotificationsService } from '@chat/notifications';
import type { DestinationStream } from 'pino';
import { TEST_SECRET, api, type Api } from './client';

export { TEST_SECRET };

export interface Stack {
  config: Config;
  baseUrl: string;
  services: Record<'conversations' | 'messages' | 'blocks' | 'presence' | 'notifications', RunningService>;
  gateway: Awaited<ReturnType<typeof startGateway>>;
  stop(): Promise<void>;
}

/** Rate limits so high no functional test meets them. */
export const UNLIMITED = {
  RATE_LIMIT_SEND_PER_MIN: 1_000_000,
  RATE_LIMIT_CREATE_CONVERSATION_PER_MIN: 1_000_000,
  RATE_LIMIT_WS_FRAMES_PER_MIN: 1_000_000,
  AUTH_FAILURES_PER_MIN: 1_000_000,
  WS_MAX_CONNECTIONS_PER_USER: 1_000_000,
  WS_MAX_CONNECTIONS_PER_IP: 1_000_000,
  RATE_LIMIT_WS_UPGRADES_PER_MIN: 1_000_000,
  RATE_LIMIT_WS_TICKETS_PER_MIN: 1_000_000,
} as const;

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A unique suffix: this run's database, NATS prefix and Redis prefix never meet another run's. */
export const runId = () => `t${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;

/**
 * Starts every service and the gateway in this process, on the machine's
 * real PostgreSQL, NATS and Redis, isolated by a fresh database, NATS_PREFIX
 * and REDIS_PREFIX. They talk to each other only over NATS, as in production.
 */
export async function startStack(
  overrides: Partial<Record<keyof Config, unknown>> = {},
  opts: { logDestination?: DestinationStream } = {},
): Promise<Stack> {
  const id = runId();
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/chat_${id}`;
  const config = loadConfig(
    { ...process.env, CONFIG_FILE: '/nonexistent' },
    {
      NODE_ENV: 'test',
      PORT: 0,
      METRICS_PORT: 0,
      DATABASE_URL: dbUrl.toString(),
      NATS_PREFIX: id,
      REDIS_PREFIX: `${id}:`,
      JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      REQUEST_TIMEOUT_MS: 3000,
      // Limits and the auth-failure ban are off by default (every test calls from
      // 127.0.0.1 and some send hundreds of messages); the security tests set them.
      ...UNLIMITED,
      ...overrides,
    },
  );
  await ensureDatabase(config.DATABASE_URL);
  const log = (name: string) => createLogger(name, config.LOG_LEVEL, opts.logDestination);
  const started: Array<{ stop(): Promise<void> }> = [];
  try {
    const [conversations, messages, blocks, presence, notifications] = await Promise.all([
      startConversationsService(config, log('conversations')),
      startMessagesService(config, log('messages')),
      startBlocksService(config, log('blocks')),
      startPresenceService(config, log('presence')),
      startNotificationsService(config, log('notifications')),
    ]);
    started.push(conversations, messages, blocks, presence, notifications);
    const gateway = await startGateway(config, log('gateway'));
    started.push(gateway);
    return {
      config,
      baseUrl: `http://127.0.0.1:${gateway.port}`,
      services: { conversations, messages, blocks, presence, notifications },
      gateway,
      stop: async () => {
        for (const s of started.reverse()) await s.stop();
        await dropRunResources(config);
      },
    };
  } catch (err) {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    await dropRunResources(config).catch(() => undefined);
    throw err;
  }
}

export interface StackContext {
  /** The running stack; only inside tests and hooks, once `beforeAll` has started it. */
  readonly stack: Stack;
  /** A REST client on the stack's gateway. */
  readonly api: Api;
}

type Overrides = Partial<Record<keyof Config, unknown>>;

/**
 * Starts a stack for the calling test file (`beforeAll`) and stops it when the
 * file is done (`afterAll`). Read `stack` and `api` inside tests and hooks:
 * they exist only once the stack has started. `overrides` may be a function,
 * called when the stack starts: for values an earlier `beforeAll` provides
 * (the port of a server the stack must call).
 */
export function useStack(overrides: Overrides | (() => Overrides) = {}): StackContext {
  let stack: Stack | undefined;
  let client: Api | undefined;
  beforeAll(async () => {
    stack = await startStack(typeof overrides === 'function' ? overrides() : overrides);
    client = api(stack.baseUrl);
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const started = () => {
    if (!stack || !client) throw new Error('useStack: the stack has not started; use it inside tests and hooks');
    return { stack, client };
  };
  return {
    get stack() {
      return started().stack;
    },
    get api() {
      return started().client;
    },
  };
}

/**
 * One more gateway on a running stack's services, NATS prefix and Redis
 * prefix, with its own settings (already-parsed values: arrays, booleans).
 * Stopped with the caller's `stop()`.
 */
export async function extraGateway(stack: Stack, overrides: Partial<Config> = {}, logDestination?: DestinationStream) {
  const config: Config = { ...stack.config, PORT: 0, ...overrides };
  const gateway = await startGateway(config, createLogger('gateway', config.LOG_LEVEL, logDestination));
  return { ...gateway, baseUrl: `http://127.0.0.1:${gateway.port}`, api: api(`http://127.0.0.1:${gateway.port}`) };
}

/** Leaves nothing behind: the run's stream, keys and database. */
export async function dropRunResources(config: Config): Promise<void> {
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined); // a test may point REDIS_URL at nothing on purpose
  try {
    await redis.connect().catch(() => undefined);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.REDIS_PREFIX}*`, 'COUNT', 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch {
    // No Redis to clean.
  } finally {
    redis.disconnect();
  }
  // The run's own credentials: a stack on a NATS that demands them cleans up like any other.
  const nc = await connect(natsConnectOptions(config));
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(eventStreamName(config.NATS_PREFIX)).catch(() => undefined);
    await jsm.streams.delete(deadLetterStreamName(config.NATS_PREFIX)).catch(() => undefined);
  } finally {
    await nc.close();
  }
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    const name = new URL(config.DATABASE_URL).pathname.slice(1);
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
