import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { ISO_MS, UUID_V7, eventually, knownUser, newUser, signToken, type TestUser } from './helpers/client';

const ctx = useStack();

async function open(from: TestUser, to: TestUser): Promise<string> {
  const res = await ctx.api.get(`/conversations/with/${to.username}`, from.token);
  expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
  return res.body.data.id;
}

async function send(from: TestUser, conversationId: string, content: string) {
  const res = await ctx.api.post(`/conversations/${conversationId}/messages`, from.token, { content });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.data as { id: string; content: string; createdAt: string };
}

const listIds = async (user: TestUser) => {
  const res = await ctx.api.get('/conversations', user.token);
  expect(res.status).toBe(200);
  return (res.body.data as Array<{ id: string }>).map((c) => c.id);
};

describe('GET /conversations', () => {
  it('a user with no conversations gets an empty list envelope', async () => {
    const user = await newUser('empty');
    const res = await ctx.api.get('/conversations', user.token);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: [], meta: { nextCursor: null, hasMore: false } });
  });

  it('lists conversations by most recent activity: a send moves an older conversation to the top', async () => {
    const [me, older, newer] = await Promise.all([knownUser(ctx.api, 'me'), knownUser(ctx.api, 'old'), knownUser(ctx.api, 'new')]);
    const first = await open(me, older);
    const second = await open(me, newer);
    expect(await listIds(me)).toEqual([second, first]);
    const msg = await send(older, first, 'bump');
    await eventually(async () => expect(await listIds(me)).toEqual([first, second]));
    const top = (await ctx.api.get('/conversations', me.token)).body.data[0];
    expect(top.updatedAt).toBe(msg.createdAt);
    expect(top.lastMessage).toMatchObject({ id: msg.id, content: 'bump', senderId: older.id });
  });
});

describe('GET /conversations/with/:username', () => {
  it('creates once (201, created true), then returns the same conversation (200, created false) from both sides', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const first = await ctx.api.get(`/conversations/with/${bob.username}`, alice.token);
    expect(first.status).toBe(201);
    expect(first.body.meta).toEqual({ created: true });
    expect(first.body.data.id).toMatch(UUID_V7);
    expect(first.body.data.participant.id).toBe(bob.id);
    const again = await ctx.api.get(`/conversations/with/${bob.username}`, alice.token);
    expect(again.status).toBe(200);
    expect(again.body.meta).toEqual({ created: false });
    expect(again.body.data.id).toBe(first.body.data.id);
    const reverse = await ctx.api.get(`/conversations/with/${alice.username}`, bob.token);
    expect(reverse.status).toBe(200);
    expect(reverse.body.meta).toEqual({ created: false });
    expect(reverse.body.data.id).toBe(first.body.data.id);
    expect(reverse.body.data.participant.id).toBe(alice.id);
  });

  it('an unknown username is 404 USER_NOT_FOUND', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const res = await ctx.api.get('/conversations/with/nobody_such_user_x', alice.token);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('USER_NOT_FOUND');
    expect(typeof res.body.error.requestId).toBe('string');
  });

  it('a conversation with yourself is 400 CANNOT_CHAT_WITH_SELF, whatever the case of the name', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    for (const name of [alice.username, alice.username.toUpperCase()]) {
      const res = await ctx.api.get(`/conversations/with/${name}`, alice.token);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('CANNOT_CHAT_WITH_SELF');
    }
  });

  it('usernames match case-insensitively, and the participant keeps the case of the token', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'BoB.Mixed')]);
    const upper = await ctx.api.get(`/conversations/with/${bob.username.toUpperCase()}`, alice.token);
    expect(upper.status).toBe(201);
    expect(upper.body.data.participant.username).toBe(bob.username);
    for (const name of [bob.username, bob.username.toLowerCase()]) {
      const again = await ctx.api.get(`/conversations/with/${name}`, alice.token);
      expect(again.status, name).toBe(200);
      expect(again.body.data.id).toBe(upper.body.data.id);
    }
  });

  it('ten concurrent calls from both users create exactly one conversation', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        i % 2 === 0 ? ctx.api.get(`/conversations/with/${bob.username}`, alice.token) : ctx.api.get(`/conversations/with/${alice.username}`, bob.token),
      ),
    );
    for (const r of results) expect([200, 201], JSON.stringify(r.body)).toContain(r.status);
    expect(new Set(results.map((r) => r.body.data.id)).size).toBe(1);
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.body.meta.created === true)).toHaveLength(1);
    expect(await listIds(alice)).toEqual([results[0]!.body.data.id]);
    expect(await listIds(bob)).toEqual([results[0]!.body.data.id]);
  });
});

describe('GET /conversations/:id', () => {
  it('a participant gets the conversation with the other user as participant', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob', { name: 'Bob B', picture: 'https://img.example/bob.png' })]);
    const id = await open(alice, bob);
    const res = await ctx.api.get(`/conversations/${id}`, alice.token);
    expect(res.status).toBe(200);
    const c = res.body.data;
    expect(c).toMatchObject({
      id,
      participant: { id: bob.id, username: bob.username, displayName: 'Bob B', avatarUrl: 'https://img.example/bob.png', isOnline: false, lastSeenAt: null },
      lastMessage: null,
      unreadCount: 0,
      blockStatus: { blockedByMe: false, blockedByThem: false, canMessage: true },
    });
    expect(c.createdAt).toMatch(ISO_MS);
    expect(c.updatedAt).toBe(c.createdAt);
    const other = await ctx.api.get(`/conversations/${id}`, bob.token);
    expect(other.body.data.participant).toMatchObject({ id: alice.id, username: alice.username, displayName: null, avatarUrl: null });
  });

  it('blockStatus shows a block from either side', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const id = await open(alice, bob);
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    expect((await ctx.api.get(`/conversations/${id}`, alice.token)).body.data.blockStatus).toEqual({ blockedByMe: false, blockedByThem: true, canMessage: false });
    expect((await ctx.api.get(`/conversations/${id}`, bob.token)).body.data.blockStatus).toEqual({ blockedByMe: true, blockedByThem: false, canMessage: false });
  });

  it('a non-participant gets 404 CONVERSATION_NOT_FOUND, the same as for an id that does not exist', async () => {
    const [alice, bob, eve] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob'), knownUser(ctx.api, 'eve')]);
    const id = await open(alice, bob);
    for (const path of [id, randomUUID(), 'not-a-uuid']) {
      const res = await ctx.api.get(`/conversations/${path}`, eve.token);
      expect(res.status, path).toBe(404);
      expect(res.body.error.code, path).toBe('CONVERSATION_NOT_FOUND');
    }
  });
});

describe('lastMessage and unread counts follow sends and reads', () => {
  it('the conversation shows the last message and the unread count of each side', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const id = await open(alice, bob);
    await send(alice, id, 'one');
    const last = await send(alice, id, 'two');
    await eventually(async () => {
      const b = (await ctx.api.get(`/conversations/${id}`, bob.token)).body.data;
      expect(b.unreadCount).toBe(2);
      expect(b.lastMessage).toMatchObject({ id: last.id, content: 'two', senderId: alice.id, readAt: null });
    });
    const mine = (await ctx.api.get(`/conversations/${id}`, alice.token)).body.data;
    expect(mine.unreadCount).toBe(0);
    expect(mine.lastMessage.id).toBe(last.id);

    const read = await ctx.api.post(`/conversations/${id}/read`, bob.token, {});
    expect(read.body.data).toEqual({ markedCount: 2, unreadCount: 0 });
    await eventually(async () => {
      const [b] = (await ctx.api.get('/conversations', bob.token)).body.data;
      expect(b.unreadCount).toBe(0);
      expect(b.lastMessage.id).toBe(last.id);
      expect(b.lastMessage.readAt).toMatch(ISO_MS);
    });
    const reply = await send(bob, id, 'three');
    await eventually(async () => {
      const [c] = (await ctx.api.get('/conversations', alice.token)).body.data;
      expect(c).toMatchObject({ id, unreadCount: 1, lastMessage: { id: reply.id, content: 'three' } });
    });
  });

  it('GET /conversations/unread-count gives unread messages and conversations with any unread', async () => {
    const [me, x, y] = await Promise.all([knownUser(ctx.api, 'me'), knownUser(ctx.api, 'x'), knownUser(ctx.api, 'y')]);
    const unread = async () => (await ctx.api.get('/conversations/unread-count', me.token)).body.data;
    expect(await unread()).toEqual({ total: 0, conversations: 0 });
    const cx = await open(x, me);
    const cy = await open(y, me);
    await send(x, cx, 'x1');
    const x2 = await send(x, cx, 'x2');
    await send(x, cx, 'x3');
    await send(y, cy, 'y1');
    await send(me, cy, 'mine does not count');
    await eventually(async () => expect(await unread()).toEqual({ total: 4, conversations: 2 }));
    const partial = await ctx.api.post(`/conversations/${cx}/read`, me.token, { messageId: x2.id });
    expect(partial.body.data).toEqual({ markedCount: 2, unreadCount: 1 });
    await eventually(async () => expect(await unread()).toEqual({ total: 2, conversations: 2 }));
    await ctx.api.post(`/conversations/${cy}/read`, me.token, {});
    await eventually(async () => expect(await unread()).toEqual({ total: 1, conversations: 1 }));
    await eventually(async () => {
      const list = (await ctx.api.get('/conversations', me.token)).body.data as Array<{ id: string; unreadCount: number }>;
      expect(Object.fromEntries(list.map((c) => [c.id, c.unreadCount]))).toEqual({ [cx]: 1, [cy]: 0 });
    });
  });
});

describe('profile refresh from token claims', () => {
  it('a new token with the same sub and a new name changes the displayName the other user sees', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob', { name: 'Bob Old' })]);
    const id = await open(alice, bob);
    expect((await ctx.api.get(`/conversations/${id}`, alice.token)).body.data.participant.displayName).toBe('Bob Old');
    const renamed = await signToken({ sub: bob.id, username: bob.username, name: 'Bob New', picture: 'https://img.example/new.png' });
    expect((await ctx.api.get('/conversations', renamed)).status).toBe(200);
    const seen = (await ctx.api.get(`/conversations/${id}`, alice.token)).body.data.participant;
    expect(seen).toMatchObject({ id: bob.id, username: bob.username, displayName: 'Bob New', avatarUrl: 'https://img.example/new.png' });
    const [listed] = (await ctx.api.get('/conversations', alice.token)).body.data;
    expect(listed.participant.displayName).toBe('Bob New');
  });

  it('a new username claim for the same sub renames the user: the new name finds them, the old one does not', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const id = await open(alice, bob);
    const newName = `${bob.username}_r`;
    expect((await ctx.api.get('/conversations', await signToken({ sub: bob.id, username: newName }))).status).toBe(200);
    expect((await ctx.api.get(`/conversations/${id}`, alice.token)).body.data.participant.username).toBe(newName);
    const byNew = await ctx.api.get(`/conversations/with/${newName.toUpperCase()}`, alice.token);
    expect(byNew.status).toBe(200);
    expect(byNew.body.data.id).toBe(id);
    const byOld = await ctx.api.get(`/conversations/with/${bob.username}`, alice.token);
    expect(byOld.status).toBe(404);
    expect(byOld.body.error.code).toBe('USER_NOT_FOUND');
  });
});
