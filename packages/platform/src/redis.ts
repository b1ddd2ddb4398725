import type { Redis } from 'ioredis';
import { redisDriver } from './drivers';
import { redactUrl } from './preflight';
import type { Logger } from './logger';

export type { Redis };

/**
 * One client per process with every key under the process's REDIS_PREFIX.
 * Commands fail fast while Redis is away (no unbounded offline queue), so
 * callers can fall back instead of hanging.
 */
export function createRedis(url: string, keyPrefix: string, log: Logger, name: string, opts: { failFast?: boolean } = {}): Redis {
  const redis = new (redisDriver().Redis)(url, {
    keyPrefix,
    connectionName: name,
    maxRetriesPerRequest: 1,
    // A cache must not make a request wait for Redis: while it is away, commands fail at once (a miss).
    enableOfflineQueue: !opts.failFast,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    // Commands issued in the same tick (every send's rate-limit check and
    // cache invalidation under load) go out as one write and one read.
    enableAutoPipelining: true,
  });
  let down = false;
  redis.on('error', (err) => {
    if (!down) log.warn({ err: err.message }, `redis: ${redactUrl(url)} does not answer`);
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info('redis: reconnected');
    down = false;
  });
  return redis;
}

/**
 * Deletes every key matching `pattern` under the client's prefix whenever the
 * connection comes back after an outage: an invalidation that failed while
 * Redis was unreachable must not leave a stale cache entry behind.
 */
export function dropKeysOnReconnect(redis: Redis, keyPrefix: string, pattern: string, log: Logger): void {
  let lost = false;
  redis.on('error', () => (lost = true));
  redis.on('ready', () => {
    if (!lost) return;
    lost = false;
    void (async () => {
      let cursor = '0';
      let dropped = 0;
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}${pattern}`, 'COUNT', 500);
        // scan returns full names; del adds the prefix again, so strip it.
        if (keys.length) dropped += await redis.del(...keys.map((k) => k.slice(keyPrefix.length)));
        cursor = next;
      } while (cursor !== '0');
      log.info({ dropped, pattern }, 'redis back: dropped cache entries that may have missed invalidations');
    })().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not drop cache entries after an outage'));
  });
}

/**
 * Waits (at most `ms`) for a fail-fast client's first connection: its
 * commands fail while it is still connecting, so a process that needs Redis
 * from its first request waits here. Resolves false when Redis is down; the
 * caller goes on degraded rather than refusing to start.
 */
export async function redisReady(redis: Redis, ms = 2000): Promise<boolean> {
  if (redis.status === 'ready') return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    redis.once('ready', onReady);
  });
}
