import type { Presence } from '@chat/contracts';
import type { Redis } from '@chat/platform';

/**
 * The presence key space (under REDIS_PREFIX + "presence:"):
 *   online:<userId>    exists while the user holds at least one connection (TTL-refreshed by heartbeats)
 *   lastseen:<userId>  ISO time the user was last seen online
 */
export class PresenceRepository {
  constructor(private readonly redis: Redis) {}

  async query(userIds: readonly string[]): Promise<Record<string, Presence>> {
    if (userIds.length === 0) return {};
    const pipeline = this.redis.pipeline();
    for (const id of userIds) {
      pipeline.exists(`online:${id}`);
      pipeline.get(`lastseen:${id}`);
    }
    const results = (await pipeline.exec()) ?? [];
    const out: Record<string, Presence> = {};
    userIds.forEach((id, i) => {
      const [onlineErr, online] = results[i * 2] ?? [];
      const [seenErr, seen] = results[i * 2 + 1] ?? [];
      if (onlineErr) throw onlineErr;
      if (seenErr) throw seenErr;
      out[id] = { isOnline: online === 1, lastSeenAt: typeof seen === 'string' ? seen : null };
    });
    return out;
  }
}
