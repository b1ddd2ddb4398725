import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '@chat/contracts';
import { ISO_MS, newUser } from './helpers/client';
import { useStack } from './helpers/stack';

const ctx = useStack();
let nc: NatsConnection;
beforeAll(async () => {
  nc = await connect({ servers: ctx.stack.config.NATS_URL });
});
afterAll(async () => {
  await nc?.close();
});

/** A gateway's presence call: a WebSocket of `userId` opened or closed. */
async function presence(verb: 'connect' | 'disconnect', userId: string, connectionId: string): Promise<any> {
  const reply = await nc.request(subjects(ctx.stack.config.NATS_PREFIX).presence[verb], JSON.stringify({ userId, connectionId }), { timeout: 3000 });
  const envelope = reply.json<any>();
  expect(envelope.ok, JSON.stringify(envelope)).toBe(true);
  return envelope.data;
}

describe('GET /presence', () => {
  it('answers isOnline and lastSeenAt per id from the presence service', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    const [bob, carol, dave] = ['bob', 'carol', 'dave'].map((n) => `${n}-${alice.id}`);
    await presence('connect', bob!, 'c1');
    await presence('connect', carol!, 'c1');
    const { lastSeenAt } = await presence('disconnect', carol!, 'c1');
    expect(lastSeenAt).toMatch(ISO_MS);
    const res = await a.get(`/presence?userIds=${bob},${carol},${dave}`, alice.token);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({
      [bob!]: { isOnline: true, lastSeenAt: null },
      [carol!]: { isOnline: false, lastSeenAt },
      [dave!]: { isOnline: false, lastSeenAt: null },
    });
  });

  it('shows a user in a block with the caller, either way, offline with no last-seen time', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    const carol = await newUser('carol');
    for (const u of [bob, carol]) {
      await a.get('/conversations', u.token);
      // Online now, and seen before: both are hidden from alice.
      await presence('connect', u.id, 'c1');
      await presence('disconnect', u.id, 'c1');
      await presence('connect', u.id, 'c2');
    }
    expect((await a.get(`/presence?userIds=${bob.id}`, carol.token)).body.data[bob.id]).toEqual({ isOnline: true, lastSeenAt: expect.stringMatching(ISO_MS) });
    expect((await a.post('/blocks', alice.token, { username: bob.username })).status).toBe(201);
    expect((await a.post('/blocks', carol.token, { username: alice.username })).status).toBe(201);
    const res = await a.get(`/presence?userIds=${bob.id},${carol.id}`, alice.token);
    expect(res.body.data[bob.id]).toEqual({ isOnline: false, lastSeenAt: null });
    expect(res.body.data[carol.id]).toEqual({ isOnline: false, lastSeenAt: null });
    expect((await a.get(`/presence?userIds=${alice.id}`, bob.token)).body.data[alice.id].lastSeenAt).toBeNull();
  });

  it('needs 1-100 ids: none or 101 is 400 VALIDATION_FAILED', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    for (const q of ['', '?userIds=', `?userIds=${Array.from({ length: 101 }, (_, i) => `u${i}`).join(',')}`]) {
      const res = await a.get(`/presence${q}`, alice.token);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
    }
  });
});

describe('notification preferences', () => {
  it('default to enabled with nothing muted, and PUT stores and returns the new value', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    expect((await a.get('/notifications/preferences', alice.token)).body.data).toEqual({ enabled: true, mutedConversationIds: [] });
    const put = await a.put('/notifications/preferences', alice.token, { enabled: false, mutedConversationIds: ['c1', 'c2', 'c1'] });
    expect(put.status).toBe(200);
    expect(put.body.data).toEqual({ enabled: false, mutedConversationIds: ['c1', 'c2'] });
    expect((await a.get('/notifications/preferences', alice.token)).body.data).toEqual(put.body.data);
    const other = await newUser('bob');
    expect((await a.get('/notifications/preferences', other.token)).body.data.enabled).toBe(true);
  });

  it('refuses a body of another shape with 400 VALIDATION_FAILED', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    const res = await a.put('/notifications/preferences', alice.token, { enabled: 'yes' });
    expect(res.status).toBe(400);
    expect(res.body.error.details.map((d: { path: string }) => d.path)).toEqual(expect.arrayContaining(['enabled', 'mutedConversationIds']));
  });
});
