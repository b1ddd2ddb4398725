import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationPair, eventually, signToken, type TestUser } from './helpers/client';
import { useStack } from './helpers/stack';

const ctx = useStack();
let db: pg.Pool;
beforeAll(() => {
  db = new pg.Pool({ connectionString: ctx.stack.config.DATABASE_URL, max: 2 });
});
afterAll(async () => {
  await db?.end();
});

async function truth(user: TestUser) {
  const { rows } = await db.query<{ total: string | null; conversations: string }>(
    'SELECT sum(unread_count) AS total, count(*) AS conversations FROM messages.participants WHERE user_id = $1 AND unread_count > 0',
    [user.id],
  );
  return { total: Number(rows[0]?.total ?? 0), conversations: Number(rows[0]?.conversations ?? 0) };
}

async function cacheCounts(service: 'messages' | 'conversations' = 'messages', cache = 'unread') {
  const metric = await ctx.stack.services[service].metrics.registry.getSingleMetric('chat_cache_requests_total')?.get();
  const count = (result: string) => metric?.values.filter((v) => v.labels.cache === cache && v.labels.result === result).reduce((n, v) => n + v.value, 0) ?? 0;
  return { hit: count('hit'), miss: count('miss') };
}

describe('the unread-count cache', () => {
  it('never answers a count older than the last send or read, through interleaved writes and reads', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const second = await conversationPair(ctx.api);
    const unread = async (u: TestUser) => (await ctx.api.get('/conversations/unread-count', u.token)).body.data;
    for (let round = 0; round < 12; round++) {
      await ctx.api.post(`/conversations/${conv}/messages`, round % 3 ? alice.token : bob.token, { content: `r${round}` });
      expect(await unread(bob)).toEqual(await truth(bob));
      expect(await unread(alice)).toEqual(await truth(alice));
      expect(await unread(bob)).toEqual(await truth(bob)); // the cached answer, still right
      if (round % 4 === 3) {
        await ctx.api.post(`/conversations/${conv}/read`, bob.token, {});
        expect(await unread(bob)).toEqual(await truth(bob));
        expect(await unread(bob)).toEqual({ total: 0, conversations: 0 });
      }
    }
    await ctx.api.post(`/conversations/${second.conv}/messages`, second.alice.token, { content: 'elsewhere' });
    expect(await unread(second.bob)).toEqual({ total: 1, conversations: 1 });
  });

  it('concurrent sends and reads leave the cached count equal to PostgreSQL', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await Promise.all([
      ...Array.from({ length: 15 }, (_, i) => ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `c${i}` })),
      ...Array.from({ length: 15 }, () => ctx.api.get('/conversations/unread-count', bob.token)),
      ...Array.from({ length: 3 }, () => ctx.api.post(`/conversations/${conv}/read`, bob.token, {})),
    ]);
    expect((await ctx.api.get('/conversations/unread-count', bob.token)).body.data).toEqual(await truth(bob));
  });

  it('serves repeated reads from Redis: hit rate above 80% for a read-heavy caller', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const before = await cacheCounts();
    for (let i = 0; i < 50; i++) {
      if (i % 10 === 0) await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `h${i}` });
      await ctx.api.get('/conversations/unread-count', bob.token);
    }
    const after = await cacheCounts();
    const hits = after.hit - before.hit;
    const misses = after.miss - before.miss;
    expect(hits + misses).toBe(50);
    expect(hits / (hits + misses)).toBeGreaterThan(0.8);
  });
});

describe('the conversation-list cache', () => {
  it('once the projection has processed a send or read, the cached first page shows it: never a stale unread count or last message', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const lastOf = async () => {
      const { rows } = await db.query<{ id: string }>('SELECT id FROM messages.messages WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1', [conv]);
      return rows[0]?.id ?? null;
    };
    const unreadOf = async (u: TestUser) => {
      const { rows } = await db.query<{ unread_count: number }>('SELECT unread_count FROM messages.participants WHERE conversation_id = $1 AND user_id = $2', [conv, u.id]);
      return rows[0]?.unread_count ?? 0;
    };
    for (let round = 0; round < 8; round++) {
      await ctx.api.post(`/conversations/${conv}/messages`, round % 2 ? alice.token : bob.token, { content: `l${round}` });
      if (round % 3 === 2) await ctx.api.post(`/conversations/${conv}/read`, bob.token, {});
      for (const u of [alice, bob]) {
        const [lastId, unread] = [await lastOf(), await unreadOf(u)];
        await eventually(async () => {
          const item = (await ctx.api.get('/conversations', u.token)).body.data[0];
          expect(item.lastMessage?.id).toBe(lastId);
          expect(item.unreadCount).toBe(unread);
        });
        // Asked again, from the cache: still the same.
        const again = (await ctx.api.get('/conversations', u.token)).body.data[0];
        expect([again.lastMessage?.id, again.unreadCount]).toEqual([lastId, unread]);
      }
    }
  });

  it("a profile change shows in the other user's cached list", async () => {
    const { alice, bob } = await conversationPair(ctx.api);
    expect((await ctx.api.get('/conversations', bob.token)).body.data[0].participant.displayName).toBeNull();
    const renamed = await signToken({ sub: alice.id, username: alice.username, name: 'Alice Renamed' });
    await ctx.api.get('/conversations', renamed);
    expect((await ctx.api.get('/conversations', bob.token)).body.data[0].participant.displayName).toBe('Alice Renamed');
  });

  it('serves a read-heavy caller from Redis: hit rate above 80%', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await ctx.api.get('/conversations', bob.token);
    const before = await cacheCounts('conversations', 'conversations');
    for (let i = 0; i < 50; i++) {
      if (i % 10 === 0) await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `x${i}` });
      await ctx.api.get('/conversations', bob.token);
    }
    const after = await cacheCounts('conversations', 'conversations');
    const hits = after.hit - before.hit;
    const misses = after.miss - before.miss;
    expect(hits / (hits + misses)).toBeGreaterThan(0.8);
  });
});

describe('cache warm-up', () => {
  it('a restarted service fills the list and unread caches of active users before they ask', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'warm me' });
    await eventually(async () => expect((await ctx.api.get('/conversations', bob.token)).body.data[0].lastMessage?.content).toBe('warm me'));

    const { startConversationsService } = await import('@chat/conversations');
    const { startMessagesService } = await import('@chat/messages');
    const { createLogger } = await import('@chat/platform');
    const { Redis } = await import('ioredis');
    const c = ctx.stack.config;
    await ctx.stack.services.conversations.stop();
    await ctx.stack.services.messages.stop();
    const redis = new Redis(c.REDIS_URL);
    await redis.del(`${c.REDIS_PREFIX}conversations:list:${bob.id}`, `${c.REDIS_PREFIX}messages:unread:${bob.id}`);
    ctx.stack.services.conversations = await startConversationsService(c, createLogger('conversations', 'silent'));
    ctx.stack.services.messages = await startMessagesService(c, createLogger('messages', 'silent'));
    await eventually(async () => {
      expect(await redis.exists(`${c.REDIS_PREFIX}conversations:list:${bob.id}`)).toBe(1);
      expect(await redis.exists(`${c.REDIS_PREFIX}messages:unread:${bob.id}`)).toBe(1);
    }, 5000);
    redis.disconnect();

    const lists = await cacheCounts('conversations', 'conversations');
    const badges = await cacheCounts('messages', 'unread');
    expect((await ctx.api.get('/conversations', bob.token)).body.data[0].lastMessage.content).toBe('warm me');
    expect((await ctx.api.get('/conversations/unread-count', bob.token)).body.data).toEqual({ total: 1, conversations: 1 });
    expect((await cacheCounts('conversations', 'conversations')).hit).toBe(lists.hit + 1);
    expect((await cacheCounts('messages', 'unread')).hit).toBe(badges.hit + 1);
  });
});
