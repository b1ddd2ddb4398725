import type { Logger, Redis } from '@chat/platform';
import type { Counter } from 'prom-client';
import type { MembershipRow } from './conversations.repository';

/** Rows kept per user: enough for a first page of any allowed size, plus one to know hasMore. */
export const LIST_CACHE_ROWS = 101;
const TTL_MS = 10 * 60 * 1000;

/**
 * The first page of each user's conversation list, in the conversations
 * service's Redis key space:
 *   listver:<userId>  a counter, bumped after every committed change to that user's list
 *   list:<userId>     { version, rows } read from PostgreSQL when the counter was `version`
 * A reader notes the counter before it reads PostgreSQL and stores its rows
 * only if the counter has not moved since (an atomic Lua compare), so rows
 * read before a change can never be stored after it. Redis failing is a miss.
 */
const STORE = `
local v = redis.call('GET', KEYS[1]) or '0'
if v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1`;

type StoreCommand = { conversationsListStore(ver: string, list: string, version: string, value: string, ttl: number): Promise<number> };

export class ListCache {
  constructor(
    private readonly redis: Redis,
    private readonly requests: Counter<'cache' | 'result'>,
    private readonly log: Logger,
  ) {
    redis.defineCommand('conversationsListStore', { numberOfKeys: 2, lua: STORE });
  }

  /** The cached rows when current; otherwise the version to store fresh rows under (undefined: do not store). */
  async read(userId: string): Promise<{ rows: MembershipRow[] } | { version: string | undefined }> {
    try {
      const [ver, raw] = await this.redis.mget(`listver:${userId}`, `list:${userId}`);
      const version = ver ?? '0';
      const cached = raw ? (JSON.parse(raw) as { version: string; rows: MembershipRow[] }) : undefined;
      if (cached && cached.version === version) {
        this.requests.inc({ cache: 'conversations', result: 'hit' });
        return { rows: cached.rows };
      }
      this.requests.inc({ cache: 'conversations', result: 'miss' });
      return { version };
    } catch (err) {
      this.requests.inc({ cache: 'conversations', result: 'error' });
      this.log.warn({ err: (err as Error).message }, 'conversation list cache unavailable: reading PostgreSQL');
      return { version: undefined };
    }
  }

  async store(userId: string, version: string, rows: MembershipRow[]): Promise<void> {
    try {
      await (this.redis as unknown as StoreCommand).conversationsListStore(`listver:${userId}`, `list:${userId}`, version, JSON.stringify({ version, rows }), TTL_MS);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'conversation list cache write failed');
    }
  }

  /** After a commit that changed these users' lists: every cached copy is now out of date. */
  async invalidate(userIds: readonly string[]): Promise<void> {
    if (userIds.length === 0) return;
    try {
      const pipeline = this.redis.pipeline();
      for (const id of new Set(userIds)) pipeline.incr(`listver:${id}`).pexpire(`listver:${id}`, 24 * TTL_MS).del(`list:${id}`);
      await pipeline.exec();
    } catch (err) {
      // The cached copies expire within TTL_MS; until then they may be stale, so say so loudly.
      this.log.error({ err: (err as Error).message, users: userIds.length }, 'conversation list cache: invalidation failed');
    }
  }
}
