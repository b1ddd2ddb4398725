import { afterEach, describe, expect, it } from 'vitest';
import { ISO_MS, UUID_V7, eventually, knownUser, newUser, signToken, type TestUser, conversationPair } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, tryUpgrade, type Frame, type WsClient } from './helpers/ws';

const ALLOWED = 'https://chat.example.com';
const HEARTBEAT_MS = 500; // the server's protocol-level ping, short here so that a dead peer is dropped quickly
const ctx = useStack({ CORS_ORIGINS: `${ALLOWED},http://localhost:3000`, WS_HEARTBEAT_MS: HEARTBEAT_MS });
const port = () => ctx.stack.gateway.port;

const open: WsClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});
async function socket(user: TestUser) {
  const { client, hello } = await connect(port(), { token: user.token });
  open.push(client);
  return { client, hello };
}

/** Alice and Bob, a conversation between them and a socket each. */
async function pair() {
  const { alice, bob, conv } = await conversationPair(ctx.api);
  const [a, b] = [(await socket(alice)).client, (await socket(bob)).client];
  return { alice, bob, conv, a, b };
}
const MESSAGE_KEYS = ['clientMessageId', 'content', 'conversationId', 'createdAt', 'deletedAt', 'editedAt', 'id', 'reactions', 'readAt', 'senderId'];
const isTyping = (f: Frame) => f.type === 'typing';

describe('WebSocket: hello', () => {
  it('hello is the first frame: userId, latest seq, nothing replayed, heartbeat 25 s, typing timeout 5 s', async () => {
    const carol = await newUser('carol'); // the socket alone makes her known
    const { client, hello } = await socket(carol);
    expect(client.frames[0]).toBe(hello);
    expect(client.ws.extensions).toBe(''); // the client offered permessage-deflate; the server declines it
    // hello states the ping interval in force: WS_HEARTBEAT_MS here, 25000 by default (ws-resume checks that).
    expect(hello).toEqual({
      type: 'hello',
      payload: { userId: carol.id, seq: 0, replayed: 0, resync: false, heartbeatMs: HEARTBEAT_MS, typingTimeoutMs: 5000 },
    });
    expect((await ctx.api.get('/conversations', carol.token)).status).toBe(200);
  });

  it('a later hello carries the user\u2019s latest seq', async () => {
    const { alice, conv, b } = await pair();
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'hi' });
    await b.nextOf('unread.updated');
    const { hello } = await socket(alice);
    expect(hello.payload.seq).toBe(1);
  });
});

describe('WebSocket: frames and replies', () => {
  it('message.send: ack { message } with replyTo, message.new on the sending socket, message.new + unread.updated to the recipient', async () => {
    const { alice, bob, conv, a, b } = await pair();
    const ack = await a.request('message.send', { conversationId: conv, content: '  hello over ws  ', clientMessageId: 'c-1' });
    expect(ack).toEqual({ type: 'ack', replyTo: expect.any(String), payload: { message: expect.any(Object) } });
    const message = ack.payload.message;
    expect(message).toEqual({ id: expect.stringMatching(UUID_V7), conversationId: conv, senderId: alice.id, content: 'hello over ws', clientMessageId: 'c-1', createdAt: expect.stringMatching(ISO_MS), readAt: null, editedAt: null, deletedAt: null, reactions: [] });
    expect(await a.nextOf('message.new')).toEqual({ seq: 1, type: 'message.new', payload: { message } });
    expect(await b.nextOf('message.new')).toEqual({ seq: 1, type: 'message.new', payload: { message } });
    expect(await b.nextOf('unread.updated')).toEqual({ seq: 2, type: 'unread.updated', payload: { total: 1, conversationId: conv, conversationUnread: 1 } });
    expect((await ctx.api.get(`/messages/${message.id}`, bob.token)).body.data).toEqual(message);
    // The same clientMessageId again: the original, and nothing delivered again.
    const again = await a.request('message.send', { conversationId: conv, content: 'hello over ws', clientMessageId: 'c-1' });
    expect(again.payload).toEqual({ message });
    await Promise.all([a.none((f) => f.seq !== undefined && f.seq > 1, 300), b.none((f) => f.seq !== undefined && f.seq > 2, 300)]);
  });

  it('message.read: ack { markedCount, unreadCount } and message.read on both participants\u2019 sockets', async () => {
    const { alice, bob, conv, a, b } = await pair();
    const m1 = (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'one' })).body.data;
    const m2 = (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'two' })).body.data;
    const ack = await b.request('message.read', { conversationId: conv, messageId: m1.id });
    expect(ack.payload).toEqual({ markedCount: 1, unreadCount: 1 });
    const expected = { conversationId: conv, readerId: bob.id, lastReadMessageId: m1.id, readAt: expect.stringMatching(ISO_MS) };
    const [onA, onB] = [await a.nextOf('message.read'), await b.nextOf('message.read')];
    expect(onA).toEqual({ seq: 3, type: 'message.read', payload: expected });
    expect(onB).toEqual({ seq: 5, type: 'message.read', payload: expected });
    expect(onA.payload.readAt).toBe(onB.payload.readAt);
    expect(await b.next((f) => f.type === 'unread.updated' && f.seq === 6)).toMatchObject({ payload: { total: 1, conversationId: conv, conversationUnread: 1 } });
    expect((await b.request('message.read', { conversationId: conv })).payload).toEqual({ markedCount: 1, unreadCount: 0 });
    expect((await a.next((f) => f.type === 'message.read' && f.seq === 4)).payload.lastReadMessageId).toBe(m2.id);
    // The marker only moves forward: an older messageId marks nothing and pushes nothing.
    expect((await b.request('message.read', { conversationId: conv, messageId: m1.id })).payload).toEqual({ markedCount: 0, unreadCount: 0 });
    await Promise.all([a.none((f) => f.seq !== undefined && f.seq > 4, 300), b.none((f) => f.seq !== undefined && f.seq > 8, 300)]);
  });

  it('ping gets pong with replyTo; frames without id get replies without replyTo', async () => {
    const { conv, a } = await pair();
    expect(await a.request('ping')).toEqual({ type: 'pong', replyTo: expect.stringMatching(/^req-/) });
    a.send({ type: 'ping' });
    expect(await a.nextOf('pong')).toEqual({ type: 'pong' });
    a.send({ type: 'message.send', payload: { conversationId: conv, content: 'no id' } });
    const ack = await a.nextOf('ack');
    expect(Object.keys(ack).sort()).toEqual(['payload', 'type']);
    a.send({ type: 'message.send', payload: { conversationId: conv } });
    const err = await a.nextOf('error');
    expect(err).not.toHaveProperty('replyTo');
    expect(err.payload.code).toBe('VALIDATION_FAILED');
  });

  it('invalid JSON gets INVALID_FRAME and the socket stays open', async () => {
    const { a } = await pair();
    a.send('{"type": "ping", ');
    expect(await a.nextOf('error')).toEqual({ type: 'error', payload: { code: 'INVALID_FRAME', message: expect.any(String) } });
    a.ws.send(Buffer.from('{"type":"ping"}'), { binary: true });
    expect((await a.nextOf('error')).payload.code).toBe('INVALID_FRAME');
    expect((await a.request('ping')).type).toBe('pong');
  });

  it('an unknown type or a bad payload gets VALIDATION_FAILED with details and the socket stays open', async () => {
    const { conv, a } = await pair();
    const unknown = await a.request('message.unsend', { conversationId: conv });
    expect(unknown).toMatchObject({ type: 'error', payload: { code: 'VALIDATION_FAILED' } });
    expect(unknown.payload.details).toEqual([expect.objectContaining({ path: 'type' })]);
    a.send('42');
    expect((await a.nextOf('error')).payload).toMatchObject({ code: 'VALIDATION_FAILED', details: expect.any(Array) });
    const bad = await a.request('message.send', { conversationId: conv, content: '   ', extra: 1 });
    expect(bad.payload.code).toBe('VALIDATION_FAILED');
    expect(bad.payload.details.map((d: { path: string }) => d.path).sort()).toEqual(['payload', 'payload.content']);
    const tooLong = await a.request('message.send', { conversationId: conv, content: 'x'.repeat(5001) });
    expect(tooLong.payload.details).toEqual([expect.objectContaining({ path: 'payload.content' })]);
    expect((await a.request('ping')).type).toBe('pong');
  });

  it('message.send to a conversation the user is not in is CONVERSATION_NOT_FOUND; while blocked it is BLOCKED', async () => {
    const { alice, bob, conv, a } = await pair();
    const mallory = await knownUser(ctx.api, 'mallory');
    const { client: m } = await socket(mallory);
    expect((await m.request('message.send', { conversationId: conv, content: 'sneaky' })).payload.code).toBe('CONVERSATION_NOT_FOUND');
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    const blocked = await a.request('message.send', { conversationId: conv, content: 'still there?' });
    expect(blocked).toMatchObject({ type: 'error', payload: { code: 'BLOCKED' } });
    expect((await ctx.api.get(`/conversations/${conv}/messages`, alice.token)).body.data).toHaveLength(0);
  });

  it('a frame over 16 KiB closes the socket with 1009', async () => {
    const { conv, a } = await pair();
    a.send({ type: 'message.send', payload: { conversationId: conv, content: 'y'.repeat(17 * 1024) } });
    expect((await a.closed).code).toBe(1009);
  });

  it('a REST send and a WS send give the same message.new shape', async () => {
    const { alice, conv, a, b } = await pair();
    const rest = (await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'by rest' })).body.data;
    const ws = (await a.request('message.send', { conversationId: conv, content: 'by ws' })).payload.message;
    const [e1, e2] = [await b.next((f) => f.type === 'message.new' && f.payload.message.id === rest.id), await b.next((f) => f.type === 'message.new' && f.payload.message.id === ws.id)];
    expect(e1.payload.message).toEqual(rest);
    expect(e2.payload.message).toEqual(ws);
    for (const e of [e1, e2]) {
      expect(Object.keys(e).sort()).toEqual(['payload', 'seq', 'type']);
      expect(Object.keys(e.payload.message).sort()).toEqual(MESSAGE_KEYS);
    }
  });
});

describe('WebSocket: typing', () => {
  it('typing.start acks {} and the other participant sees isTyping true, then false by itself ~5 s later', async () => {
    const { alice, conv, a, b } = await pair();
    expect(await a.request('typing.start', { conversationId: conv })).toEqual({ type: 'ack', replyTo: expect.any(String), payload: {} });
    const started = Date.now();
    expect(await b.next(isTyping)).toEqual({ type: 'typing', payload: { conversationId: conv, userId: alice.id, isTyping: true } });
    const stopped = await b.next(isTyping, 8000);
    const elapsed = Date.now() - started;
    expect(stopped.payload).toEqual({ conversationId: conv, userId: alice.id, isTyping: false });
    expect(elapsed).toBeGreaterThanOrEqual(4500);
    expect(elapsed).toBeLessThanOrEqual(7000);
    expect(a.frames.filter(isTyping)).toEqual([]);
  }, 15_000);

  it('a new typing.start restarts the 5 s', async () => {
    const { conv, a, b } = await pair();
    await a.request('typing.start', { conversationId: conv });
    await new Promise((r) => setTimeout(r, 3000));
    await a.request('typing.start', { conversationId: conv });
    const restarted = Date.now();
    const falls = await b.next((f) => isTyping(f) && !f.payload.isTyping, 8000);
    expect(Date.now() - restarted).toBeGreaterThanOrEqual(4500);
    expect(b.frames.filter(isTyping).map((f) => f.payload.isTyping)).toEqual([true, true, false]);
    expect(falls.payload.conversationId).toBe(conv);
  }, 15_000);

  it('typing.stop gives isTyping false at once', async () => {
    const { bob, conv, a, b } = await pair();
    await b.request('typing.start', { conversationId: conv });
    expect((await a.next(isTyping)).payload.isTyping).toBe(true);
    expect((await b.request('typing.stop', { conversationId: conv })).payload).toEqual({});
    expect((await a.next(isTyping, 1000)).payload).toEqual({ conversationId: conv, userId: bob.id, isTyping: false });
    await a.none(isTyping, 5500); // the stopped indicator does not fall again by itself
  }, 15_000);

  it('typing across a block reaches nobody', async () => {
    const { alice, bob, conv, a, b } = await pair();
    await ctx.api.post('/blocks', alice.token, { username: bob.username });
    expect((await a.request('typing.start', { conversationId: conv })).payload).toEqual({});
    expect((await b.request('typing.start', { conversationId: conv })).payload).toEqual({});
    await Promise.all([a.none(isTyping, 1000), b.none(isTyping, 1000)]);
  });
});

describe('WebSocket: upgrade checks before the 101', () => {
  it('bad or missing token 401, foreign or look-alike Origin 403, since=abc 400; an allowed Origin or none is accepted', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const p = port();
    const forged = await signToken({ sub: alice.id, username: alice.username }, { secret: 'another-secret-0123456789-0123456789-xyz' });
    const expired = await signToken({ sub: alice.id, username: alice.username, exp: Math.floor(Date.now() / 1000) - 120 });
    for (const [opts, status, code] of [
      [{ token: 'not.a.jwt' }, 401, 'UNAUTHORIZED'],
      [{ token: expired }, 401, 'UNAUTHORIZED'],
      [{ token: forged }, 401, 'UNAUTHORIZED'],
      [{}, 401, 'UNAUTHORIZED'],
      [{ token: alice.token, origin: 'https://evil.example' }, 403, 'ORIGIN_NOT_ALLOWED'],
      [{ token: alice.token, origin: 'http://localhost:3000.evil.com' }, 403, 'ORIGIN_NOT_ALLOWED'],
      [{ token: alice.token, origin: `${ALLOWED}/` }, 403, 'ORIGIN_NOT_ALLOWED'],
      [{ token: alice.token, since: 'abc' }, 400, 'VALIDATION_FAILED'],
      [{ token: alice.token, since: '-1' }, 400, 'VALIDATION_FAILED'],
    ] as const) {
      const res = await tryUpgrade(p, opts);
      expect(res.status, JSON.stringify(opts)).toBe(status);
      expect(res.body.error).toMatchObject({ code, requestId: expect.any(String) });
    }
    expect((await tryUpgrade(p, { token: alice.token, origin: ALLOWED })).status).toBe(101);
    expect((await tryUpgrade(p, { token: alice.token, origin: 'http://localhost:3000' })).status).toBe(101);
    expect((await tryUpgrade(p, { token: alice.token })).status).toBe(101);
    expect((await tryUpgrade(p, { headers: { authorization: `Bearer ${alice.token}` } })).status).toBe(101);
  });

  it('the server pings at the heartbeat and drops a peer that misses two pings', async () => {
    const gw = ctx.stack.gateway;
    const erin = await knownUser(ctx.api, 'erin');
    const { client: live } = await socket(erin);
    let pings = 0;
    live.ws.on('ping', () => pings++);
    const { client: dead } = await socket(erin);
    const size = gw.hub.size;
    (dead.ws as unknown as { _socket: { pause(): void } })._socket.pause(); // reads nothing, so it answers no ping
    await eventually(async () => expect(gw.hub.size).toBe(size - 1), 5 * HEARTBEAT_MS + 2000);
    expect(pings).toBeGreaterThanOrEqual(2);
    expect(live.ws.readyState).toBe(live.ws.OPEN);
    expect((await live.request('ping')).type).toBe('pong');
    dead.ws.terminate(); // its own close handshake could never finish
  });

  it('a socket whose token expires is closed with 1008', async () => {
    const dave = await newUser('dave');
    const token = await signToken({ sub: dave.id, username: dave.username, exp: Math.floor(Date.now() / 1000) + 2 });
    const { client } = await connect(port(), { token });
    open.push(client);
    const opened = Date.now();
    expect((await client.request('ping')).type).toBe('pong');
    const closed = await client.closed;
    expect(closed.code).toBe(1008);
    expect(Date.now() - opened).toBeLessThan(4000);
  }, 10_000);
});
