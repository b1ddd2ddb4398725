import { ChatError, idMap, type Presence } from '@chat/contracts';
import type { Redis } from '@chat/platform';
import { presenceScripts } from './presence.scripts';

/** Connections refreshed by one heartbeat script call; a heartbeat's list is cut into these, pipelined. */
const HEARTBEAT_CHUNK = 500;

const INDEX = 'index';
const conns = (userId: string) => `conns:${userId}`;
const lastseen = (userId: string) => `lastseen:${userId}`;
const iso = (ms: number) => new Date(ms).toISOString();

export interface Connection {
  userId: string;
  connectionId: string;
}

/**
 * The presence key space (under REDIS_PREFIX + "presence:"; see
 * presence.scripts.ts): `conns:<userId>` (connection id → expiry),
 * `index` (user → latest expiry, while announced online), `lastseen:<userId>`.
 * Every write is one Lua script, so replicas never disagree on a transition.
 * Times are passed in (`now`, ms) so a caller decides the clock once per call.
 */
export class PresenceRepository {
  constructor(
    private readonly redis: Redis,
    private readonly ttlMs: number,
  ) {
    for (const [name, def] of Object.entries(presenceScripts)) redis.defineCommand(name, def);
  }

  /** Adds or refreshes a connection; true when its user went from offline to online. */
  async connect(c: Connection, now: number): Promise<boolean> {
    return (await this.redis.presenceConnect(conns(c.userId), INDEX, c.userId, c.connectionId, now, now + this.ttlMs)) === 1;
  }

  /** Removes a connection; `lastSeenAt` is set when it was the user's last one (they went offline). */
  async disconnect(c: Connection, now: number): Promise<{ wentOffline: boolean; lastSeenAt: string | null }> {
    const at = iso(now);
    const went = await this.redis.presenceDisconnect(conns(c.userId), INDEX, lastseen(c.userId), c.userId, c.connectionId, now, at);
    return went === 1 ? { wentOffline: true, lastSeenAt: at } : { wentOffline: false, lastSeenAt: null };
  }

  /** Pushes the expiry of each listed connection that still exists to now + TTL; returns how many did. */
  async heartbeat(connections: readonly Connection[], now: number): Promise<number> {
    if (connections.length === 0) return 0;
    const pipeline = this.redis.pipeline();
    for (let i = 0; i < connections.length; i += HEARTBEAT_CHUNK) {
      const chunk = connections.slice(i, i + HEARTBEAT_CHUNK);
      const keys = [INDEX, ...chunk.map((c) => conns(c.userId))];
      const args = chunk.flatMap((c) => [c.userId, c.connectionId]);
      pipeline.presenceHeartbeat(keys.length, ...keys, now + this.ttlMs, now, ...args);
    }
    let refreshed = 0;
    for (const [err, n] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      refreshed += Number(n);
    }
    return refreshed;
  }

  /** Users announced online whose latest connection expiry is not after `now`, with that expiry: the sweeper's candidates. */
  async expiredUsers(now: number, limit: number): Promise<Array<{ userId: string; expiry: number }>> {
    const flat = await this.redis.zrangebyscore(INDEX, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit);
    const out: Array<{ userId: string; expiry: number }> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push({ userId: flat[i]!, expiry: Number(flat[i + 1]) });
    return out;
  }

  /**
   * Drops the user's expired connections; `wentOffline` when none is left and
   * the user's latest expiry is still `expiry` (as expiredUsers saw it). Atomic:
   * of several replicas sweeping the same user at once, exactly one gets true.
   * lastSeenAt is when the last connection was last refreshed, whoever sweeps and whenever.
   */
  async expire(userId: string, expiry: number, now: number): Promise<{ wentOffline: boolean; lastSeenAt: string }> {
    const seen = this.lastRefresh(expiry);
    const went = await this.redis.presenceExpire(conns(userId), INDEX, lastseen(userId), userId, now, expiry, seen);
    return { wentOffline: went === 1, lastSeenAt: seen };
  }

  /**
   * Online = at least one connection whose expiry is after `now`. lastSeenAt
   * from `lastseen:`, or, for a user whose connections expired but whom no
   * sweep has taken offline yet, what that sweep will write.
   */
  async query(userIds: readonly string[], now: number): Promise<Record<string, Presence>> {
    if (userIds.length === 0) return {};
    // A read never waits out a reconnect (the offline queue is there for the
    // writes): with Redis away it is a 503 at once, not a timeout, however the
    // command would be queued (seen to take ~3 s about one time in two).
    if (this.redis.status !== 'ready') throw new ChatError('SERVICE_UNAVAILABLE', 'presence: its data store is unavailable');
    const keys = [INDEX, ...userIds.flatMap((id) => [conns(id), lastseen(id)])];
    // Through an explicit pipeline: while Redis is away it fails at once (an auto-pipelined script call was seen to wait instead).
    const [reply] = (await this.redis.pipeline().presenceQuery(keys.length, ...keys, now, ...userIds).exec()) ?? [];
    if (!reply) throw new Error('presence query: no reply');
    if (reply[0]) throw reply[0];
    const results = reply[1] as Array<number | string | null>;
    const out = idMap<Presence>();
    userIds.forEach((id, i) => {
      const [count, seen, expiry] = [results[i * 3], results[i * 3 + 1], results[i * 3 + 2]];
      const isOnline = Number(count) > 0;
      const pending = !isOnline && typeof expiry === 'string' ? this.lastRefresh(Number(expiry)) : undefined;
      out[id] = { isOnline, lastSeenAt: pending ?? (typeof seen === 'string' ? seen : null) };
    });
    return out;
  }

  private lastRefresh(expiry: number): string {
    return iso(expiry - this.ttlMs);
  }
}
