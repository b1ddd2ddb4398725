import { describe, expect, it } from 'vitest';
import { conversationPair } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect } from './helpers/ws';

// Nothing listens on port 1: this stack's presence service has no Redis at all.
const ctx = useStack({ REDIS_URL: 'redis://127.0.0.1:1' });

describe('Redis down', () => {
  it('sends, lists and sockets keep working; presence shows offline; GET /presence is a quick 503, never a 500', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: bobWs } = await connect(ctx.stack.gateway.port, { token: bob.token });
    const sent = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'still here' });
    expect(sent.status).toBe(201);
    await bobWs.next((f) => f.type === 'message.new' && f.payload.message.id === sent.body.data.id);

    const list = await ctx.api.get('/conversations', alice.token);
    expect(list.status).toBe(200);
    expect(list.body.data[0].participant).toMatchObject({ id: bob.id, isOnline: false });

    const started = Date.now();
    const presence = await ctx.api.get(`/presence?userIds=${bob.id}`, alice.token);
    expect(presence.status).toBe(503);
    expect(presence.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(3000);
    await bobWs.close();
  });
});
