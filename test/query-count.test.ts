import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { newUser, type TestUser } from './helpers/client';

const ctx = useStack();

/** SQL statements the conversations service has run so far (the count of its dbQuery histogram). */
async function conversationsQueries(): Promise<number> {
  const { values } = await ctx.stack.services.conversations.metrics.dbQuery.get();
  return values.filter((v) => v.metricName?.endsWith('_count')).reduce((sum, v) => sum + v.value, 0);
}

/** Runs `fn` over `items`, `width` at a time. */
async function inBatches<T>(items: T[], width: number, fn: (item: T) => Promise<void>) {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

describe('conversation list query count', () => {
  it('GET /conversations for a user with 100 conversations runs a constant number of SQL queries whatever the page size', async () => {
    const owner = await newUser('owner');
    const others: TestUser[] = await Promise.all(Array.from({ length: 100 }, () => newUser('peer')));
    // One authenticated request registers each user.
    await inBatches([owner, ...others], 20, async (u) => {
      expect((await ctx.api.get('/conversations', u.token)).status).toBe(200);
    });
    await inBatches(others, 10, async (u) => {
      const res = await ctx.api.get(`/conversations/with/${u.username}`, owner.token);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    });

    // Warm-up: the gateway has synced the owner, pools are open.
    expect((await ctx.api.get('/conversations', owner.token)).body.data).toHaveLength(20);

    // Measured with the list cache cold (its key dropped), so every page is read from PostgreSQL.
    const redis = new Redis(ctx.stack.config.REDIS_URL);
    const measure = async (query: string, cold = true) => {
      if (cold) await redis.del(`${ctx.stack.config.REDIS_PREFIX}conversations:list:${owner.id}`);
      const before = await conversationsQueries();
      const res = await ctx.api.get(`/conversations?${query}`, owner.token);
      const after = await conversationsQueries();
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return { delta: after - before, body: res.body };
    };

    const one = await measure('limit=1');
    expect(one.body.data).toHaveLength(1);
    expect(one.body.meta.hasMore).toBe(true);

    const twenty = await measure('limit=20');
    expect(twenty.body.data).toHaveLength(20);
    expect(twenty.body.meta.hasMore).toBe(true);

    const hundred = await measure('limit=100');
    expect(hundred.body.data).toHaveLength(100);
    expect(hundred.body.meta).toEqual({ nextCursor: null, hasMore: false });
    expect(new Set(hundred.body.data.map((c: { participant: { id: string } }) => c.participant.id))).toEqual(new Set(others.map((u) => u.id)));

    const second = await measure(`limit=20&cursor=${encodeURIComponent(twenty.body.meta.nextCursor)}`);
    expect(second.body.data).toHaveLength(20);
    expect(second.body.data.map((c: { id: string }) => c.id)).toEqual(hundred.body.data.slice(20, 40).map((c: { id: string }) => c.id));

    const deltas = [one.delta, twenty.delta, hundred.delta, second.delta];
    expect(deltas[0]).toBeGreaterThan(0);
    expect(new Set(deltas).size, `queries per page: ${deltas.join(', ')}`).toBe(1);
    expect(one.delta).toBeLessThanOrEqual(2);

    // A first page from the warm cache runs no SQL at all, and is the same page.
    await measure('limit=20');
    const cached = await measure('limit=20', false);
    expect(cached.delta).toBe(0);
    expect(cached.body.data.map((c: { id: string }) => c.id)).toEqual(twenty.body.data.map((c: { id: string }) => c.id));
    redis.disconnect();
  });
});
