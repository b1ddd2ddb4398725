import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { eventually, knownUser, type ApiResponse, type TestUser } from './helpers/client';
import { connect, type Frame, type WsClient } from './helpers/ws';

/**
 * A blocked user (and the blocker) trying to get around a block. SPEC 4:
 * "Blocking hides nothing already sent, but while either user blocks the
 * other: neither can send, neither sees the other online or typing, and no
 * notification is made." POST /conversations/:id/messages: "403 BLOCKED when
 * either user blocked the other".
 */
const ctx = useStack();
const port = () => ctx.stack.gateway.port;

const open: WsClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});
async function socket(user: TestUser): Promise<WsClient> {
  const { client } = await connect(port(), { token: user.token });
  open.push(client);
  return client;
}

const tag = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const send = (from: TestUser, conv: string, content: string, clientMessageId?: string) =>
  ctx.api.post(`/conversations/${conv}/messages`, from.token, { content, ...(clientMessageId ? { clientMessageId } : {}) });
const block = (by: TestUser, other: TestUser) => ctx.api.post('/blocks', by.token, { username: other.username });
const unblock = (by: TestUser, other: TestUser) => ctx.api.del(`/blocks/${other.username}`, by.token);
const messagesOf = async (u: TestUser, conv: string) => {
  const res = await ctx.api.get(`/conversations/${conv}/messages?limit=100`, u.token);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data as Array<{ id: string; content: string; senderId: string }>;
};
const isMessageNew = (f: Frame) => f.type === 'message.new';
const isTyping = (f: Frame) => f.type === 'typing';

function expectBlocked(res: ApiResponse) {
  expect(res.status, JSON.stringify(res.body)).toBe(403);
  expect(res.body.error).toMatchObject({ code: 'BLOCKED', message: expect.any(String), requestId: expect.any(String) });
  expect(res.body).not.toHaveProperty('data');
}

/** Alice and Bob with a conversation and a message each way, then Alice blocks Bob. */
async function blockedPair() {
  const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
  const opened = await ctx.api.get(`/conversations/with/${bob.username}`, alice.token);
  expect(opened.status).toBe(201);
  const conv = opened.body.data.id as string;
  const before = [(await send(alice, conv, tag('before-a'), 'pre-a')).body.data, (await send(bob, conv, tag('before-b'), 'pre-b')).body.data];
  return { alice, bob, conv, before };
}

describe('sending while blocked', () => {
  it('REST: 403 BLOCKED for the blocked user and the blocker, with or without clientMessageId; nothing stored, nothing delivered', async () => {
    const { alice, bob, conv, before } = await blockedPair();
    const [a, b] = [await socket(alice), await socket(bob)];
    expect((await block(alice, bob)).status).toBe(201);
    const [seenA, seenB] = [a.frames.length, b.frames.length];
    expectBlocked(await send(bob, conv, 'let me in'));
    expectBlocked(await send(bob, conv, 'let me in', 'fresh-key-1'));
    expectBlocked(await send(alice, conv, 'blocker speaking'));
    // Content the validator would refuse is refused first or blocked: never stored either way.
    const empty = await send(bob, conv, '   ');
    expect([400, 403]).toContain(empty.status);
    // The key of a message sent before the block: the original (200) or BLOCKED, but never a new message.
    const replay = await send(bob, conv, before[1].content, 'pre-b');
    if (replay.status === 200) expect(replay.body.data).toEqual(before[1]);
    else expectBlocked(replay);
    await sleep(500);
    expect(a.frames.slice(seenA).filter(isMessageNew)).toEqual([]);
    expect(b.frames.slice(seenB).filter(isMessageNew)).toEqual([]);
    // Blocking hides nothing already sent: both still read the history, and only it.
    for (const u of [alice, bob]) expect((await messagesOf(u, conv)).map((m) => m.id)).toEqual([before[1].id, before[0].id]);
    // A refused send did not use up its clientMessageId.
    expect((await unblock(alice, bob)).status).toBe(204);
    const after = await send(bob, conv, 'finally', 'fresh-key-1');
    expect(after.status, JSON.stringify(after.body)).toBe(201);
    expect(after.body.data.content).toBe('finally');
  });

  it('WebSocket: message.send is an error frame BLOCKED with replyTo; nothing delivered to either socket', async () => {
    const { alice, bob, conv } = await blockedPair();
    const [a, b] = [await socket(alice), await socket(bob)];
    expect((await block(alice, bob)).status).toBe(201);
    const [seenA, seenB] = [a.frames.length, b.frames.length];
    for (const [client, content] of [[b, 'ws intrusion'], [a, 'ws from the blocker']] as const) {
      const reply = await client.request('message.send', { conversationId: conv, content, clientMessageId: tag('k') });
      expect(reply).toEqual({ type: 'error', replyTo: expect.any(String), payload: { code: 'BLOCKED', message: expect.any(String) } });
    }
    // Without an id as well, and the socket stays open.
    b.send({ type: 'message.send', payload: { conversationId: conv, content: 'no id' } });
    expect((await b.nextOf('error')).payload.code).toBe('BLOCKED');
    expect((await b.request('ping')).type).toBe('pong');
    await sleep(500);
    expect(a.frames.slice(seenA).filter(isMessageNew)).toEqual([]);
    expect(b.frames.slice(seenB).filter(isMessageNew)).toEqual([]);
    expect(await messagesOf(alice, conv)).toHaveLength(2);
  });
});

describe('typing while blocked', () => {
  it('reaches the other side before the block, and never after it, in either direction', async () => {
    const { alice, bob, conv } = await blockedPair();
    const [a, b] = [await socket(alice), await socket(bob)];
    // Control: typing works before the block.
    await b.request('typing.start', { conversationId: conv });
    expect((await a.next(isTyping)).payload).toEqual({ conversationId: conv, userId: bob.id, isTyping: true });
    await b.request('typing.stop', { conversationId: conv });
    expect((await a.next(isTyping)).payload.isTyping).toBe(false);

    expect((await block(alice, bob)).status).toBe(201);
    const [seenA, seenB] = [a.frames.length, b.frames.length];
    for (const type of ['typing.start', 'typing.stop', 'typing.start']) {
      expect((await b.request(type, { conversationId: conv })).type).toBe('ack');
      expect((await a.request(type, { conversationId: conv })).type).toBe('ack');
    }
    await sleep(700);
    expect(a.frames.slice(seenA).filter(isTyping)).toEqual([]);
    expect(b.frames.slice(seenB).filter(isTyping)).toEqual([]);
  });
});

describe('opening conversations while blocked', () => {
  it('the existing conversation is still returned (200, created: false) to both, with canMessage false and presence hidden', async () => {
    const { alice, bob, conv, before } = await blockedPair();
    // Both online, so hidden presence is the block's doing.
    await socket(alice);
    await socket(bob);
    expect((await block(alice, bob)).status).toBe(201);
    await eventually(async () => {
      const byBob = await ctx.api.get(`/conversations/with/${alice.username}`, bob.token);
      expect(byBob.status, JSON.stringify(byBob.body)).toBe(200);
      expect(byBob.body.meta).toEqual({ created: false });
      expect(byBob.body.data.id).toBe(conv);
      expect(byBob.body.data.blockStatus).toEqual({ blockedByMe: false, blockedByThem: true, canMessage: false });
      expect(byBob.body.data.participant).toMatchObject({ id: alice.id, isOnline: false, lastSeenAt: null });
      expect(byBob.body.data.lastMessage?.id).toBe(before[1].id); // nothing already sent is hidden
      const byAlice = await ctx.api.get(`/conversations/with/${bob.username.toUpperCase()}`, alice.token);
      expect(byAlice.status).toBe(200);
      expect(byAlice.body.data.id).toBe(conv);
      expect(byAlice.body.data.blockStatus).toEqual({ blockedByMe: true, blockedByThem: false, canMessage: false });
      expect(byAlice.body.data.participant).toMatchObject({ id: bob.id, isOnline: false, lastSeenAt: null });
    });
    expectBlocked(await send(bob, conv, 'after reopening'));
  });

  it('a new conversation with the blocker: whatever the answer, it is sane and nobody can send in it', async () => {
    const [carol, dave] = await Promise.all([knownUser(ctx.api, 'carol'), knownUser(ctx.api, 'dave')]);
    expect((await block(carol, dave)).status).toBe(201);
    const res = await ctx.api.get(`/conversations/with/${carol.username}`, dave.token);
    expect(res.status, JSON.stringify(res.body)).not.toBe(500);
    if (res.status === 201 || res.status === 200) {
      // Created (or returned) but unusable.
      expect(res.body.meta).toEqual({ created: res.status === 201 });
      expect(res.body.data.blockStatus).toEqual({ blockedByMe: false, blockedByThem: true, canMessage: false });
      expect(res.body.data.participant).toMatchObject({ id: carol.id, isOnline: false, lastSeenAt: null });
      const conv = res.body.data.id as string;
      expectBlocked(await send(dave, conv, 'hi'));
      expectBlocked(await send(carol, conv, 'hi'));
      // The blocker opening it gets the same one, not a second.
      const byCarol = await ctx.api.get(`/conversations/with/${dave.username}`, carol.token);
      expect(byCarol.status).toBe(200);
      expect(byCarol.body.data.id).toBe(conv);
      expect(byCarol.body.data.blockStatus).toEqual({ blockedByMe: true, blockedByThem: false, canMessage: false });
      expect(await messagesOf(carol, conv)).toEqual([]);
    } else {
      // Refused: the SPEC envelope.
      expect(res.body.error).toMatchObject({ code: expect.stringMatching(/^[A-Z_]+$/), message: expect.any(String), requestId: expect.any(String) });
      expect([403, 404]).toContain(res.status);
    }
  });
});

describe('presence while blocked', () => {
  it('the blocker shows offline with lastSeenAt null to the blocked user, and the other way round; no online/offline events cross the block', async () => {
    const { alice, bob } = await blockedPair();
    const carol = await knownUser(ctx.api, 'carol');
    expect((await ctx.api.get(`/conversations/with/${alice.username}`, carol.token)).status).toBe(201);
    const b = await socket(bob);
    const c = await socket(carol);
    const a1 = await socket(alice);
    // Control: before the block Bob sees Alice online.
    await b.next((f) => f.type === 'user.online' && f.payload.userId === alice.id);
    await eventually(async () => {
      const p = await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token);
      expect(p.body.data[alice.id].isOnline).toBe(true);
    });

    expect((await block(alice, bob)).status).toBe(201);
    const hidden = { isOnline: false, lastSeenAt: null };
    await eventually(async () => {
      expect((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body.data).toEqual({ [alice.id]: hidden });
      expect((await ctx.api.get(`/presence?userIds=${bob.id}`, alice.token)).body.data).toEqual({ [bob.id]: hidden });
      const listed = (await ctx.api.get('/conversations', bob.token)).body.data.find((x: { participant: { id: string } }) => x.participant.id === alice.id);
      expect(listed.participant).toMatchObject(hidden);
    }, 1500);
    // Carol, not in the block, still sees Alice online.
    expect((await ctx.api.get(`/presence?userIds=${alice.id}`, carol.token)).body.data[alice.id].isOnline).toBe(true);

    const seenB = b.frames.length;
    await a1.close();
    await c.next((f) => f.type === 'user.offline' && f.payload.userId === alice.id);
    await socket(alice);
    await c.next((f) => f.type === 'user.online' && f.payload.userId === alice.id);
    await sleep(300);
    const crossed = b.frames.slice(seenB).filter((f) => (f.type === 'user.online' || f.type === 'user.offline') && f.payload.userId === alice.id);
    expect(crossed).toEqual([]);
    // lastSeenAt stays hidden after Alice went offline and came back.
    expect((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body.data[alice.id]).toEqual(hidden);
  });
});

describe('a block racing sends', () => {
  it('20 concurrent sends while the block lands: each is 201 (stored and delivered) or 403 BLOCKED; every send started after the block answered is 403', async () => {
    const [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
    const conv = (await ctx.api.get(`/conversations/with/${bob.username}`, alice.token)).body.data.id as string;
    const a = await socket(alice);
    let blockDoneAt = Infinity;
    let blockDoneWall = Infinity;
    const blocking = (async () => {
      await sleep(15);
      const res = await block(alice, bob);
      blockDoneAt = performance.now();
      blockDoneWall = Date.now();
      return res;
    })();
    const sends = Array.from({ length: 20 }, async (_, i) => {
      await sleep(i * 2);
      const startedAt = performance.now();
      const content = `race-${i}-${randomBytes(3).toString('hex')}`;
      const res = await send(bob, conv, content, `race-${i}`);
      return { i, content, startedAt, res };
    });
    const [blockRes, results] = await Promise.all([blocking, Promise.all(sends)]);
    expect(blockRes.status, JSON.stringify(blockRes.body)).toBe(201);
    // A few more, strictly after the block's 201.
    const later = [];
    for (let i = 0; i < 5; i++) {
      const startedAt = performance.now();
      later.push({ i: 100 + i, content: `later-${i}`, startedAt, res: await send(bob, conv, `later-${i}`) });
    }
    const all = [...results, ...later];

    const accepted = all.filter((r) => r.res.status === 201);
    for (const r of all) {
      if (r.res.status !== 201) expectBlocked(r.res);
      if (r.startedAt > blockDoneAt) expect(r.res.status, `send ${r.i} started ${(r.startedAt - blockDoneAt).toFixed(1)} ms after the block answered`).toBe(403);
    }
    for (const r of later) expect(r.res.status).toBe(403);
    const ws = await wsSendAttempt(bob, conv);
    expect(ws.payload.code).toBe('BLOCKED');

    // Every accepted send is in the list and reached Alice's socket; nothing else did.
    const listed = await messagesOf(alice, conv);
    expect(listed.map((m) => m.id).sort()).toEqual(accepted.map((r) => r.res.body.data.id).sort());
    for (const r of accepted) await a.next((f) => isMessageNew(f) && f.payload.message.id === r.res.body.data.id, 5000);
    await sleep(300);
    const delivered = a.frames.filter(isMessageNew).map((f) => f.payload.message.content as string);
    expect(delivered.sort()).toEqual(accepted.map((r) => r.content).sort());
    // Linearizable: a send that got in committed before the block did (the
    // pair's lock orders them), so no accepted message is stamped after the
    // block's 201 reached the client.
    const stamps = accepted.map((r) => Date.parse(r.res.body.data.createdAt));
    expect(stamps.filter((t) => t > blockDoneWall)).toEqual([]);
  });
});

async function wsSendAttempt(user: TestUser, conv: string): Promise<Frame> {
  const s = await socket(user);
  return s.request('message.send', { conversationId: conv, content: 'after the block, over ws' });
}

describe('unblocking', () => {
  it('restores sending (REST and WebSocket, delivered), typing and presence', async () => {
    const { alice, bob, conv } = await blockedPair();
    const [a, b] = [await socket(alice), await socket(bob)];
    expect((await block(alice, bob)).status).toBe(201);
    expectBlocked(await send(bob, conv, 'blocked'));
    expect((await unblock(alice, bob)).status).toBe(204);

    const rest = await send(bob, conv, 'back again');
    expect(rest.status).toBe(201);
    await a.next((f) => isMessageNew(f) && f.payload.message.id === rest.body.data.id);
    const ack = await a.request('message.send', { conversationId: conv, content: 'welcome back' });
    expect(ack.type).toBe('ack');
    await b.next((f) => isMessageNew(f) && f.payload.message.id === ack.payload.message.id);
    await b.request('typing.start', { conversationId: conv });
    expect((await a.next(isTyping)).payload).toEqual({ conversationId: conv, userId: bob.id, isTyping: true });
    await eventually(async () => {
      expect((await ctx.api.get(`/presence?userIds=${alice.id}`, bob.token)).body.data[alice.id].isOnline).toBe(true);
      expect((await ctx.api.get(`/conversations/${conv}`, bob.token)).body.data.blockStatus).toEqual({ blockedByMe: false, blockedByThem: false, canMessage: true });
    });
    // A blocked user cannot lift the block the other set.
    expect((await block(alice, bob)).status).toBe(201);
    const lift = await unblock(bob, alice);
    expect(lift.status).toBe(404);
    expect(lift.body.error.code).toBe('NOT_BLOCKED');
    expectBlocked(await send(bob, conv, 'still blocked'));
  });
});
