import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { ISO_MS, UUID_V7, eventually, knownUser, newUser, type TestUser } from './helpers/client';

const ctx = useStack();

async function block(by: TestUser, username: string) {
  return ctx.api.post('/blocks', by.token, { username });
}
async function status(of: TestUser, username: string) {
  const res = await ctx.api.get(`/blocks/status/${username}`, of.token);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data;
}
async function openConversation(from: TestUser, to: TestUser): Promise<string> {
  const res = await ctx.api.get(`/conversations/with/${to.username}`, from.token);
  expect([200, 201]).toContain(res.status);
  return res.body.data.id;
}
const send = (from: TestUser, conv: string, content: string) => ctx.api.post(`/conversations/${conv}/messages`, from.token, { content });

const FREE = { blockedByMe: false, blockedByThem: false, canMessage: true };

describe('POST /blocks', () => {
  it('201 with a Block { id, user, createdAt } carrying the blocked user\u2019s profile', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const bob = await knownUser(ctx.api, 'bob', { name: 'Bob Builder', picture: 'https://img.example/bob.png' });
    const res = await block(alice, bob.username);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(Object.keys(res.body.data).sort()).toEqual(['createdAt', 'id', 'user']);
    expect(res.body.data.id).toMatch(UUID_V7);
    expect(res.body.data.createdAt).toMatch(ISO_MS);
    expect(res.body.data.user).toEqual({ id: bob.id, username: bob.username, displayName: 'Bob Builder', avatarUrl: 'https://img.example/bob.png' });
  });

  it('usernames match case-insensitively', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const res = await block(alice, bob.username.toUpperCase());
    expect(res.status).toBe(201);
    expect(res.body.data.user.id).toBe(bob.id);
  });

  it('blocking twice is 409 ALREADY_BLOCKED', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    expect((await block(alice, bob.username)).status).toBe(201);
    const again = await block(alice, bob.username);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('ALREADY_BLOCKED');
    expect((await ctx.api.get('/blocks', alice.token)).body.data).toHaveLength(1);
  });

  it('an unknown user is 404 USER_NOT_FOUND, oneself is 400 CANNOT_BLOCK_SELF, a missing username is 400', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const stranger = await newUser('never_seen'); // has a token but never called the API
    const unknown = await block(alice, stranger.username);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('USER_NOT_FOUND');
    const self = await block(alice, alice.username);
    expect(self.status).toBe(400);
    expect(self.body.error.code).toBe('CANNOT_BLOCK_SELF');
    const missing = await ctx.api.post('/blocks', alice.token, {});
    expect(missing.status).toBe(400);
    expect(missing.body.error.code).toBe('VALIDATION_FAILED');
    expect(missing.body.error.details).toEqual([expect.objectContaining({ path: 'username' })]);
  });
});

describe('GET /blocks', () => {
  it('lists the users the caller blocked, newest first, in a list envelope; others\u2019 blocks are not shown', async () => {
    const [alice, b1, b2, b3] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'b1'), knownUser(ctx.api, 'b2'), knownUser(ctx.api, 'b3')]);
    const ids: string[] = [];
    for (const u of [b1, b2, b3]) ids.push((await block(alice, u.username)).body.data.id);
    await block(b1, alice.username);
    const res = await ctx.api.get('/blocks', alice.token);
    expect(res.status).toBe(200);
    expect(res.body.meta).toEqual({ nextCursor: null, hasMore: false });
    expect(res.body.data.map((b: { id: string }) => b.id)).toEqual([...ids].reverse());
    expect(res.body.data.map((b: { user: { id: string } }) => b.user.id)).toEqual([b3.id, b2.id, b1.id]);

    const page1 = await ctx.api.get('/blocks?limit=2', alice.token);
    expect(page1.body.meta.hasMore).toBe(true);
    const page2 = await ctx.api.get(`/blocks?limit=2&cursor=${page1.body.meta.nextCursor}`, alice.token);
    expect(page2.body.data.map((b: { user: { id: string } }) => b.user.id)).toEqual([b1.id]);
    expect(page2.body.meta).toEqual({ nextCursor: null, hasMore: false });

    const garbage = await ctx.api.get('/blocks?cursor=%%%garbage', alice.token);
    expect(garbage.status).toBe(400);
    expect(garbage.body.error.code).toBe('INVALID_CURSOR');
  });
});

describe('GET /blocks/status/:username', () => {
  it('tells each side who blocked whom, and canMessage is false while any block stands', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    expect(await status(alice, bob.username)).toEqual(FREE);
    await block(alice, bob.username);
    expect(await status(alice, bob.username)).toEqual({ blockedByMe: true, blockedByThem: false, canMessage: false });
    expect(await status(bob, alice.username)).toEqual({ blockedByMe: false, blockedByThem: true, canMessage: false });
    await block(bob, alice.username);
    expect(await status(alice, bob.username)).toEqual({ blockedByMe: true, blockedByThem: true, canMessage: false });
    expect(await status(bob, alice.username)).toEqual({ blockedByMe: true, blockedByThem: true, canMessage: false });
  });

  it('an unknown username, or one no user can have (too long, bad characters), is 404 USER_NOT_FOUND', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    for (const name of ['nobody_here_123', 'x'.repeat(65), 'has%20space']) {
      const res = await ctx.api.get(`/blocks/status/${name}`, alice.token);
      expect(res.status, name).toBe(404);
      expect(res.body.error.code).toBe('USER_NOT_FOUND');
    }
  });
});

describe('sending while blocked', () => {
  it('403 BLOCKED for the blocker and for the blocked user; nothing is stored', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const conv = await openConversation(alice, bob);
    expect((await send(alice, conv, 'before')).status).toBe(201);
    await block(alice, bob.username);
    for (const sender of [alice, bob]) {
      const res = await send(sender, conv, 'after');
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('BLOCKED');
    }
    // Blocking hides nothing already sent.
    const msgs = await ctx.api.get(`/conversations/${conv}/messages`, bob.token);
    expect(msgs.body.data.map((m: { content: string }) => m.content)).toEqual(['before']);
  });

  it('a block by the other side stops both directions as well', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const conv = await openConversation(alice, bob);
    await block(bob, alice.username);
    expect((await send(alice, conv, 'x')).body.error.code).toBe('BLOCKED');
    expect((await send(bob, conv, 'y')).body.error.code).toBe('BLOCKED');
  });
});

describe('DELETE /blocks/:username', () => {
  it('204 with no body, then sending works again and the list is empty', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const conv = await openConversation(alice, bob);
    await block(alice, bob.username);
    const res = await ctx.api.del(`/blocks/${bob.username}`, alice.token);
    expect(res.status).toBe(204);
    expect(res.body).toBeNull();
    expect(await status(alice, bob.username)).toEqual(FREE);
    expect((await send(alice, conv, 'again')).status).toBe(201);
    expect((await send(bob, conv, 'welcome back')).status).toBe(201);
    expect((await ctx.api.get('/blocks', alice.token)).body.data).toEqual([]);
  });

  it('404 NOT_BLOCKED when no block stands, including the other side\u2019s block; 404 USER_NOT_FOUND for an unknown user', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const none = await ctx.api.del(`/blocks/${bob.username}`, alice.token);
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe('NOT_BLOCKED');
    await block(bob, alice.username);
    const theirs = await ctx.api.del(`/blocks/${bob.username}`, alice.token);
    expect(theirs.status).toBe(404);
    expect(theirs.body.error.code).toBe('NOT_BLOCKED');
    expect(await status(alice, bob.username)).toMatchObject({ blockedByThem: true });
    for (const name of ['nobody_here_123', 'x'.repeat(65)]) {
      const unknown = await ctx.api.del(`/blocks/${name}`, alice.token);
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('USER_NOT_FOUND');
    }
  });
});

describe('conversation blockStatus', () => {
  it('reflects a block on both sides, in the conversation and in the list, and clears on unblock', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const conv = await openConversation(alice, bob);
    const blockStatusOf = async (u: TestUser) => {
      const one = await ctx.api.get(`/conversations/${conv}`, u.token);
      const listed = (await ctx.api.get('/conversations', u.token)).body.data.find((c: { id: string }) => c.id === conv);
      expect(listed.blockStatus).toEqual(one.body.data.blockStatus);
      return one.body.data.blockStatus;
    };
    expect(await blockStatusOf(alice)).toEqual(FREE);
    await block(bob, alice.username);
    await eventually(async () => {
      expect(await blockStatusOf(alice)).toEqual({ blockedByMe: false, blockedByThem: true, canMessage: false });
      expect(await blockStatusOf(bob)).toEqual({ blockedByMe: true, blockedByThem: false, canMessage: false });
    });
    expect((await ctx.api.del(`/blocks/${alice.username}`, bob.token)).status).toBe(204);
    await eventually(async () => {
      expect(await blockStatusOf(alice)).toEqual(FREE);
      expect(await blockStatusOf(bob)).toEqual(FREE);
    });
  });
});
