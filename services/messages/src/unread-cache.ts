import type { UnreadCount } from '@chat/contracts';
import type { Logger, Redis } from '@chat/platform';
import type { Counter } from 'prom-client';

/**
 * Unread totals per user in Redis (key `unread:<userId>` under the service's
 * prefix), versioned by the user's event seq so a slow reader can never put
 * back an older value:
 * - after a commit that changed a user's counts, `invalidate(user, seq)`
 *   leaves a marker at that seq (a miss for every reader);
 * - a reader that missed reads PostgreSQL (totals and seq in one snapshot)
 *   and `offer`s the result, which is kept only if no newer seq is there.
 * Redis failing is a miss: reads fall back to PostgreSQL.
 */
const OFFER = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local seq = tonumber(cjson.decode(cur).seq)
  local incoming = tonumber(ARGV[1])
  if seq > incoming then return 0 end
  if seq == incoming and ARGV[3] == 'value' and cjson.decode(cur).stale == nil then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
return 1`;

const TTL_MS = 60 * 60 * 1000;

export class UnreadCache {
  constructor(
    private readonly redis: Redis,
    private readonly requests: Counter<'cache' | 'result'>,
    private readonly log: Logger,
  ) {
    redis.defineCommand('unreadOffer', { numberOfKeys: 1, lua: OFFER });
  }

  async get(userId: string): Promise<UnreadCount | undefined> {
    try {
      const raw = await this.redis.get(`unread:${userId}`);
      const value = raw ? (JSON.parse(raw) as { stale?: true; total: number; conversations: number }) : undefined;
      const hit = value !== undefined && !value.stale;
      this.requests.inc({ cache: 'unread', result: hit ? 'hit' : 'miss' });
      return hit ? { total: value.total, conversations: value.conversations } : undefined;
    } catch (err) {
      this.requests.inc({ cache: 'unread', result: 'error' });
      this.log.warn({ err: (err as Error).message }, 'unread cache unavailable: reading PostgreSQL');
      return undefined;
    }
  }

  offer(userId: string, seq: number, totals: UnreadCount): Promise<void> {
    return this.run(userId, seq, JSON.stringify({ seq, ...totals }), 'value');
  }

  invalidate(userId: string, seq: number): Promise<void> {
    return this.run(userId, seq, JSON.stringify({ seq, stale: true }), 'marker');
  }

  private async run(userId: string, seq: number, value: string, kind: 'value' | 'marker'): Promise<void> {
    try {
      await (this.redis as unknown as { unreadOffer(key: string, ...args: Array<string | number>): Promise<number> }).unreadOffer(
        `unread:${userId}`,
        seq,
        value,
        kind,
        TTL_MS,
      );
    } catch (err) {
      // A marker that could not be written would leave a stale value: drop the key instead, or fail loudly.
      if (kind === 'marker') await this.redis.del(`unread:${userId}`).catch(() => this.log.error({ userId }, 'unread cache: could not invalidate'));
      this.log.warn({ err: (err as Error).message }, 'unread cache write failed');
    }
  }
}
