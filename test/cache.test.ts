import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationPair, type TestUser } from './helpers/client';
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

async function cacheCounts() {
  const metric = await ctx.stack.services.messages.metrics.registry.getSingleMetric('chat_cache_requests_total')?.get();
  const count = (result: string) => metric?.values.filter((v) => v.labels.cache === 'unread' && v.labels.result === result).reduce((n, v) => n + v.value, 0) ?? 0;
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
