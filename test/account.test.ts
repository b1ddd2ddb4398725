import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUser } from './helpers/client';
import { useStack } from './helpers/stack';

const ctx = useStack();
let redis: Redis;
beforeAll(() => {
  const { config } = ctx.stack;
  redis = new Redis(config.REDIS_URL, { keyPrefix: `${config.REDIS_PREFIX}presence:` });
});
afterAll(() => {
  redis?.disconnect();
});

describe('GET /presence', () => {
  it('answers isOnline and lastSeenAt per id from the presence key space', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    await redis.set('online:bob-1', '1');
    await redis.set('lastseen:carol-1', '2026-01-02T03:04:05.678Z');
    const res = await a.get('/presence?userIds=bob-1,carol-1,dave-1', alice.token);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({
      'bob-1': { isOnline: true, lastSeenAt: null },
      'carol-1': { isOnline: false, lastSeenAt: '2026-01-02T03:04:05.678Z' },
      'dave-1': { isOnline: false, lastSeenAt: null },
    });
  });

  it('shows a user in a block with the caller, either way, offline with no last-seen time', async () => {
    const a = ctx.api;
    const alice = await newUser('alice');
    const bob = await newUser('bob');
    const carol = await newUser('carol');
    for (const u of [bob, carol]) {
      await a.get('/conversations', u.token);
      await redis.set(`online:${u.id}`, '1');
      await redis.set(`lastseen:${u.id}`, new Date().toISOString());
    }
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
