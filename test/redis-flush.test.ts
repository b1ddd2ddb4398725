import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { conversationPair, eventually } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect } from './helpers/ws';

// Gateways refresh presence every PRESENCE_TTL_MS / 3: here every second.
const ctx = useStack({ PRESENCE_TTL_MS: 3000, PRESENCE_SWEEP_MS: 250 });

/** Deletes every key of this run: for its key spaces, the same as a FLUSHALL, without touching other runs. */
async function flushRun(): Promise<number> {
  const redis = new Redis(ctx.stack.config.REDIS_URL);
  try {
    const keys = await redis.keys(`${ctx.stack.config.REDIS_PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    return keys.length;
  } finally {
    redis.disconnect();
  }
}

describe('Redis flushed in the middle of traffic', () => {
  it('loses no message, answers no 5xx, keeps unread counts true and rebuilds presence within a heartbeat', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: aliceWs } = await connect(ctx.stack.gateway.port, { token: alice.token });
    const { client: bobWs } = await connect(ctx.stack.gateway.port, { token: bob.token });
    const online = async () => (await ctx.api.get(`/presence?userIds=${alice.id},${bob.id}`, bob.token)).body.data;
    await eventually(async () => expect(await online()).toMatchObject({ [alice.id]: { isOnline: true }, [bob.id]: { isOnline: true } }));

    const statuses: number[] = [];
    let flushed = 0;
    for (let i = 0; i < 120; i++) {
      statuses.push((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `f${i}` })).status);
      statuses.push((await ctx.api.get('/conversations/unread-count', bob.token)).status);
      statuses.push((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).status);
      if (i === 60) flushed = await flushRun();
    }
    expect(flushed).toBeGreaterThan(0);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);

    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    const { rows } = await db.query('SELECT count(*)::int AS n FROM messages.messages WHERE conversation_id = $1', [conv]);
    const { rows: unread } = await db.query('SELECT unread_count FROM messages.participants WHERE conversation_id = $1 AND user_id = $2', [conv, bob.id]);
    await db.end();
    expect(rows[0].n).toBe(120);
    expect((await ctx.api.get('/conversations/unread-count', bob.token)).body.data).toEqual({ total: unread[0].unread_count, conversations: 1 });
    await bobWs.waitDurable(240);
    expect(new Set(bobWs.frames.filter((f) => f.type === 'message.new').map((f) => f.payload.message.id)).size).toBe(120);

    // Presence is whole again within one heartbeat of the gateways (about a second here).
    await flushRun();
    await eventually(async () => expect(await online()).toMatchObject({ [alice.id]: { isOnline: true }, [bob.id]: { isOnline: true } }), 2500);
    await aliceWs.close();
    await bobWs.close();
  }, 60_000);
});
