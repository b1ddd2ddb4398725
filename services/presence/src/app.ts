import { BlockStatusSchema, PresenceQueryForRequest, PresenceQueryRequest, type Presence } from '@chat/contracts';
import { createRedis, endpoint, startService, type Config, type Logger } from '@chat/platform';
import { z } from 'zod';
import { PresenceRepository } from './presence.repository';

const StatusMap = z.record(z.string(), BlockStatusSchema);
const HIDDEN: Presence = { isOnline: false, lastSeenAt: null };

/** Composition root of the presence service: who is online, in its own Redis key space. */
export function startPresenceService(config: Config, log: Logger) {
  return startService<undefined>(config, log, {
    name: 'presence',
    description: 'who is online and when they were last seen',
    setup: async ({ subjects, teardown, bus }) => {
      const redis = createRedis(config.REDIS_URL, `${config.REDIS_PREFIX}presence:`, log, 'presence');
      teardown.add('redis', () => redis.quit());
      const repo = new PresenceRepository(redis);
      return [
        endpoint(subjects.presence.query, PresenceQueryRequest, (req) => repo.query(req.userIds)),
        endpoint(subjects.presence.queryFor, PresenceQueryForRequest, async (req, ctx) => {
          const ids = [...new Set(req.userIds)];
          const [presence, blocks] = await Promise.all([
            repo.query(ids),
            bus.request(subjects.blocks.statusMany, { userId: req.actor, otherIds: ids }, StatusMap, { requestId: ctx.requestId }),
          ]);
          const out: Record<string, Presence> = {};
          for (const id of ids) {
            const b = blocks[id];
            out[id] = b && (b.blockedByMe || b.blockedByThem) ? HIDDEN : (presence[id] ?? HIDDEN);
          }
          return out;
        }),
      ];
    },
  });
}
