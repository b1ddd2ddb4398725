import { Redis } from 'ioredis';
import type { Logger } from './logger';

export type { Redis };

/**
 * One client per process with every key under the process's REDIS_PREFIX.
 * Commands fail fast while Redis is away (no unbounded offline queue), so
 * callers can fall back instead of hanging.
 */
export function createRedis(url: string, keyPrefix: string, log: Logger, name: string): Redis {
  const redis = new Redis(url, {
    keyPrefix,
    connectionName: name,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  });
  let down = false;
  redis.on('error', (err) => {
    if (!down) log.warn({ err: err.message }, `redis: ${url} does not answer`);
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info('redis: reconnected');
    down = false;
  });
  return redis;
}
