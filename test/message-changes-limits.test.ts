import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { conversationPair } from './helpers/client';
import { connect } from './helpers/ws';

/** SPEC 10's limits and configuration: an edit counts as a send; reactions have a limit of their own; MESSAGE_EDIT_WINDOW_S=0 is no window. */
const ctx = useStack({ RATE_LIMIT_SEND_PER_MIN: 3, RATE_LIMIT_REACTIONS_PER_MIN: 3, MESSAGE_EDIT_WINDOW_S: 0 });

describe('SPEC 10 limits', () => {
  it('an edit counts as a send (REST and WebSocket together): the fourth of sends and edits is 429 RATE_LIMITED', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const m = (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'one' })).body.data;
    const first = await ctx.api.call('PATCH', `/conversations/${conv}/messages/${m.id}`, { token: alice.token, body: { content: 'two' } });
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-remaining')).toBe('1');
    const { client } = await connect(ctx.stack.gateway.port, { token: alice.token });
    expect(await client.request('message.edit', { conversationId: conv, messageId: m.id, content: 'three' })).toMatchObject({ type: 'ack' });
    const refused = await ctx.api.call('PATCH', `/conversations/${conv}/messages/${m.id}`, { token: alice.token, body: { content: 'four' } });
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    await client.close();
  });

  it('reactions have their own limit, adding and removing, REST and WebSocket together; it leaves the send quota alone', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'react' })).body.data;
    const path = (e: string) => `/conversations/${conv}/messages/${m.id}/reactions/${encodeURIComponent(e)}`;
    expect((await ctx.api.put(path('👍'), bob.token)).status).toBe(200);
    expect((await ctx.api.del(path('👍'), bob.token)).status).toBe(200);
    const { client } = await connect(ctx.stack.gateway.port, { token: bob.token });
    expect(await client.request('reaction.add', { conversationId: conv, messageId: m.id, emoji: '🎉' })).toMatchObject({ type: 'ack' });
    expect(await client.request('reaction.add', { conversationId: conv, messageId: m.id, emoji: '🙂' })).toMatchObject({ type: 'error', payload: { code: 'RATE_LIMITED' } });
    const refused = await ctx.api.put(path('👍'), bob.token);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('RATE_LIMITED');
    // Bob has sent nothing: his sends are untouched by his reactions.
    expect((await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'still sending' })).status).toBe(201);
    await client.close();
  });

  it('MESSAGE_EDIT_WINDOW_S=0: no window, a message of long ago is still editable', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const m = (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'ancient' })).body.data;
    const pg = (await import('pg')).default;
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL, options: '-c search_path=messages' });
    await db.connect();
    try {
      await db.query("UPDATE messages SET created_at = created_at - interval '10 years' WHERE id = $1", [m.id]);
    } finally {
      await db.end();
    }
    const res = await ctx.api.call('PATCH', `/conversations/${conv}/messages/${m.id}`, { token: alice.token, body: { content: 'ancient, revised' } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });
});
