import { createRedis, startService, type Config, type Logger } from '@chat/platform';
import { presenceEndpoints } from './handlers';
import { PresenceNotifier } from './presence.notifier';
import { PresenceRepository } from './presence.repository';
import { startSweeper } from './sweeper';

export { PresenceRepository } from './presence.repository';
export { sweepOnce } from './sweeper';

/**
 * Composition root of the presence service: who is online, in its own Redis
 * key space; tells a user's contacts when they come and go.
 */
export function startPresenceService(config: Config, log: Logger) {
  return startService<undefined>(config, log, {
    name: 'presence',
    description: 'who is online and when they were last seen',
    setup: async ({ nc, subjects, teardown, bus }) => {
      const redis = createRedis(config.REDIS_URL, `${config.REDIS_PREFIX}presence:`, log, 'presence');
      teardown.add('redis', () => redis.quit());
      const repo = new PresenceRepository(redis, config.PRESENCE_TTL_MS);
      const notifier = new PresenceNotifier(nc, bus, subjects, log);
      teardown.add('presence notifications', () => notifier.idle());
      const sweeper = startSweeper(repo, (userId, lastSeenAt) => notifier.offline(userId, lastSeenAt), config.PRESENCE_SWEEP_MS, log);
      teardown.add('presence sweeper', () => sweeper.stop());
      return presenceEndpoints(subjects, repo, notifier, bus);
    },
  });
}
