import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { newUser } from './helpers/client';

const ctx = useStack();

describe('smoke', () => {
  it('sends a message end to end', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    expect((await a.get('/conversations', bob.token)).status).toBe(200);
    const conv = await a.get(`/conversations/with/${bob.username}`, alice.token);
    expect(conv.status, JSON.stringify(conv.body)).toBe(201);
    const sent = await a.post(`/conversations/${conv.body.data.id}/messages`, alice.token, { content: ' hi ' });
    expect(sent.status, JSON.stringify(sent.body)).toBe(201);
    expect(sent.body.data.content).toBe('hi');
    expect(sent.headers.get('content-type')).toBe('application/json; charset=utf-8');
  });
});
