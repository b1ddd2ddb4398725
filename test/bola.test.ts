import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { eventually, knownUser, type ApiResponse, type TestUser } from './helpers/client';
import { connect, type Frame, type WsClient } from './helpers/ws';

/**
 * Broken Object Level Authorization: an outsider who is a real, known user
 * (Carol) tries every conversation and message route, over REST and over the
 * WebSocket, on a conversation between Alice and Bob. SPEC 4: "A conversation
 * or message the caller does not take part in answers 404, the same as one
 * that does not exist, so that ids cannot be probed."
 */
const ctx = useStack();
const port = () => ctx.stack.gateway.port;

interface World {
  alice: TestUser;
  bob: TestUser;
  carol: TestUser;
  dave: TestUser;
  conv: string;
  /** Alice's two messages and Bob's one, in order sent. */
  a1: { id: string; content: string };
  a2: { id: string; content: string };
  b1: { id: string; content: string };
  /** Carol's own conversation with Dave, and a message in it. */
  carolConv: string;
  carolMsg: string;
}
let w: World;

const secret = (label: string) => `${label}-${randomBytes(6).toString('hex')}`;
/** An id shaped exactly like `id` (a UUIDv7 of the same time), that names nothing. */
const lookAlike = (id: string) => `${id.slice(0, 24)}${randomBytes(6).toString('hex')}`;
/** A UUIDv7 for "now" that names nothing. */
const freshV7 = () => {
  const ms = Date.now().toString(16).padStart(12, '0');
  const r = randomBytes(10).toString('hex');
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${r.slice(0, 3)}-${'89ab'[parseInt(r[3]!, 16) % 4]}${r.slice(4, 7)}-${r.slice(7, 19)}`;
};

/** What an error answer says, less its requestId (which differs on every call). */
function errorOf(res: ApiResponse) {
  const { requestId, ...rest } = (res.body?.error ?? {}) as Record<string, unknown>;
  expect(typeof requestId, JSON.stringify(res.body)).toBe('string');
  return { status: res.status, ...rest };
}

/** Nothing of Alice and Bob's conversation in an answer. */
function expectNoLeak(value: unknown) {
  const text = JSON.stringify(value);
  for (const s of [w.conv, w.alice.id, w.bob.id, w.alice.username, w.bob.username, w.a1.id, w.a2.id, w.b1.id, w.a1.content, w.a2.content, w.b1.content]) {
    expect(text, `the answer carries ${s}`).not.toContain(s);
  }
}

/** Asks the same route for a foreign id and for ids that name nothing: the answers must be identical. */
async function expectProbeProof(
  route: (id: string) => Promise<ApiResponse>,
  foreignId: string,
  code: 'CONVERSATION_NOT_FOUND' | 'MESSAGE_NOT_FOUND',
) {
  const foreign = await route(foreignId);
  expect(foreign.status, JSON.stringify(foreign.body)).toBe(404);
  expect(foreign.body.error.code).toBe(code);
  expect(foreign.body).not.toHaveProperty('data');
  expectNoLeak(foreign.body);
  expect(foreign.headers.get('content-type')).toMatch(/^application\/json/);
  const expected = errorOf(foreign);
  for (const other of [lookAlike(foreignId), freshV7(), randomUUID(), 'not-a-uuid', foreignId.toUpperCase()]) {
    if (other === foreignId.toUpperCase()) {
      // The same id in another spelling: still not Carol's.
      const upper = await route(other);
      expect(errorOf(upper), other).toEqual(expected);
      expectNoLeak(upper.body);
      continue;
    }
    const res = await route(other);
    expect(errorOf(res), `foreign ${foreignId} vs nonexistent ${other}`).toEqual(expected);
  }
}

/** The state a reader of Alice's and Bob's side can see; an outsider must not change any of it. */
async function snapshot() {
  const of = async (u: TestUser) => {
    const conv = await ctx.api.get(`/conversations/${w.conv}`, u.token);
    const unread = await ctx.api.get('/conversations/unread-count', u.token);
    const msgs = await ctx.api.get(`/conversations/${w.conv}/messages`, u.token);
    const events = await ctx.api.get('/events?limit=100', u.token);
    for (const r of [conv, unread, msgs, events]) expect(r.status, JSON.stringify(r.body)).toBe(200);
    return {
      unreadCount: conv.body.data.unreadCount,
      lastMessage: conv.body.data.lastMessage,
      unread: unread.body.data,
      messages: msgs.body.data,
      latestSeq: events.body.meta.latestSeq,
    };
  };
  return { alice: await of(w.alice), bob: await of(w.bob) };
}

beforeAll(async () => {
  const [alice, bob, carol, dave] = await Promise.all([
    knownUser(ctx.api, 'alice'),
    knownUser(ctx.api, 'bob'),
    knownUser(ctx.api, 'carol'),
    knownUser(ctx.api, 'dave'),
  ]);
  const opened = await ctx.api.get(`/conversations/with/${bob.username}`, alice.token);
  expect(opened.status).toBe(201);
  const conv = opened.body.data.id as string;
  const send = async (u: TestUser, c: string, content: string) => {
    const res = await ctx.api.post(`/conversations/${c}/messages`, u.token, { content, clientMessageId: `cm-${randomBytes(4).toString('hex')}` });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return { id: res.body.data.id as string, content };
  };
  const a1 = await send(alice, conv, secret('alice-first'));
  const a2 = await send(alice, conv, secret('alice-second'));
  const b1 = await send(bob, conv, secret('bob-first'));
  // Bob has read a1 only: one unread each side, read markers mid-way.
  const read = await ctx.api.post(`/conversations/${conv}/read`, bob.token, { messageId: a1.id });
  expect(read.body.data).toEqual({ markedCount: 1, unreadCount: 1 });
  const carolOpened = await ctx.api.get(`/conversations/with/${dave.username}`, carol.token);
  expect(carolOpened.status).toBe(201);
  const carolConv = carolOpened.body.data.id as string;
  const carolMsg = (await send(dave, carolConv, 'hello carol')).id;
  w = { alice, bob, carol, dave, conv, a1, a2, b1, carolConv, carolMsg };
  // Derived views settle before any baseline is taken.
  await eventually(async () => {
    expect((await ctx.api.get(`/conversations/${conv}`, alice.token)).body.data.unreadCount).toBe(1);
    expect((await ctx.api.get(`/conversations/${conv}`, bob.token)).body.data.unreadCount).toBe(1);
  });
});

describe('BOLA over REST: an outsider gets the same 404 as for an id that does not exist', () => {
  it('GET /conversations/:id', async () => {
    await expectProbeProof((id) => ctx.api.get(`/conversations/${id}`, w.carol.token), w.conv, 'CONVERSATION_NOT_FOUND');
  });

  it('GET /conversations/:id/messages (with and without a cursor taken from a participant\u2019s page)', async () => {
    await expectProbeProof((id) => ctx.api.get(`/conversations/${id}/messages`, w.carol.token), w.conv, 'CONVERSATION_NOT_FOUND');
    const page = await ctx.api.get(`/conversations/${w.conv}/messages?limit=1`, w.alice.token);
    const cursor = page.body.meta.nextCursor as string;
    expect(cursor).toEqual(expect.any(String));
    await expectProbeProof((id) => ctx.api.get(`/conversations/${id}/messages?limit=1&cursor=${encodeURIComponent(cursor)}`, w.carol.token), w.conv, 'CONVERSATION_NOT_FOUND');
    // A participant's cursor in Carol's own conversation pages Carol's conversation only.
    const own = await ctx.api.get(`/conversations/${w.carolConv}/messages?cursor=${encodeURIComponent(cursor)}`, w.carol.token);
    if (own.status === 200) {
      for (const m of own.body.data as Array<{ conversationId: string }>) expect(m.conversationId).toBe(w.carolConv);
    } else {
      expect(own.status).toBe(400);
      expect(own.body.error.code).toBe('INVALID_CURSOR');
    }
    expectNoLeak(own.body);
  });

  it('POST /conversations/:id/messages (also with a clientMessageId the participants used)', async () => {
    const before = await snapshot();
    await expectProbeProof((id) => ctx.api.post(`/conversations/${id}/messages`, w.carol.token, { content: 'intrusion' }), w.conv, 'CONVERSATION_NOT_FOUND');
    // Replaying a participant's idempotency key must not hand back their message.
    const aliceMsg = (await ctx.api.get(`/messages/${w.a1.id}`, w.alice.token)).body.data;
    expect(aliceMsg.clientMessageId).toEqual(expect.any(String));
    await expectProbeProof(
      (id) => ctx.api.post(`/conversations/${id}/messages`, w.carol.token, { content: w.a1.content, clientMessageId: aliceMsg.clientMessageId }),
      w.conv,
      'CONVERSATION_NOT_FOUND',
    );
    expect(await snapshot()).toEqual(before);
  });

  it('a request body or query naming another user as the actor is refused or ignored', async () => {
    const before = await snapshot();
    const spoofed = await ctx.api.post(`/conversations/${w.conv}/messages`, w.carol.token, { content: 'as alice', actor: w.alice.id });
    expect(spoofed.status).toBe(400);
    expect(spoofed.body.error.code).toBe('VALIDATION_FAILED');
    const viaQuery = await ctx.api.call('POST', `/conversations/${w.conv}/messages?actor=${w.alice.id}&userId=${w.alice.id}`, {
      token: w.carol.token,
      body: { content: 'as alice' },
      headers: { 'x-user-id': w.alice.id, 'x-actor': w.alice.id },
    });
    expect(viaQuery.status).toBe(404);
    expect(viaQuery.body.error.code).toBe('CONVERSATION_NOT_FOUND');
    const readSpoof = await ctx.api.post(`/conversations/${w.conv}/read`, w.carol.token, { messageId: w.a2.id, actor: w.bob.id });
    expect(readSpoof.status).toBe(400);
    expect(await snapshot()).toEqual(before);
  });

  it('POST /conversations/:id/read with and without messageId changes nobody\u2019s unread count or read marker', async () => {
    const before = await snapshot();
    expect(before.bob.unreadCount).toBe(1);
    expect(before.alice.unreadCount).toBe(1);
    await expectProbeProof((id) => ctx.api.post(`/conversations/${id}/read`, w.carol.token, {}), w.conv, 'CONVERSATION_NOT_FOUND');
    await expectProbeProof((id) => ctx.api.call('POST', `/conversations/${id}/read`, { token: w.carol.token }), w.conv, 'CONVERSATION_NOT_FOUND');
    for (const messageId of [w.a2.id, w.b1.id, w.a1.id]) {
      await expectProbeProof((id) => ctx.api.post(`/conversations/${id}/read`, w.carol.token, { messageId }), w.conv, 'CONVERSATION_NOT_FOUND');
    }
    // Give any projection time to (wrongly) move, then compare everything both participants can see.
    await new Promise((r) => setTimeout(r, 300));
    const after = await snapshot();
    expect(after).toEqual(before);
    const a2 = await ctx.api.get(`/messages/${w.a2.id}`, w.bob.token);
    const b1 = await ctx.api.get(`/messages/${w.b1.id}`, w.alice.token);
    expect(a2.body.data.readAt).toBeNull();
    expect(b1.body.data.readAt).toBeNull();
  });

  it('POST /read in Carol\u2019s own conversation naming a message of theirs: MESSAGE_NOT_FOUND, as for a message that does not exist, and no effect', async () => {
    const before = await snapshot();
    for (const foreign of [w.b1.id, w.a2.id]) {
      await expectProbeProof((id) => ctx.api.post(`/conversations/${w.carolConv}/read`, w.carol.token, { messageId: id }), foreign, 'MESSAGE_NOT_FOUND');
    }
    // Carol's own unread message is still unread: the failed reads marked nothing of hers either.
    expect((await ctx.api.get(`/conversations/${w.carolConv}`, w.carol.token)).body.data.unreadCount).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(await snapshot()).toEqual(before);
    expect((await ctx.api.get(`/messages/${w.b1.id}`, w.alice.token)).body.data.readAt).toBeNull();
  });

  it('GET /messages/:id', async () => {
    for (const m of [w.a1, w.a2, w.b1]) {
      await expectProbeProof((id) => ctx.api.get(`/messages/${id}`, w.carol.token), m.id, 'MESSAGE_NOT_FOUND');
    }
    // The participants themselves see it (the 404 above is not because the id is bad).
    expect((await ctx.api.get(`/messages/${w.a1.id}`, w.bob.token)).status).toBe(200);
    // And Carol's own message id is hers alone.
    await expectProbeProof((id) => ctx.api.get(`/messages/${id}`, w.alice.token), w.carolMsg, 'MESSAGE_NOT_FOUND');
  });

  it('Carol\u2019s own lists (conversations, unread count, events) never contain Alice and Bob\u2019s conversation', async () => {
    const list = await ctx.api.get('/conversations?limit=100', w.carol.token);
    expect(list.status).toBe(200);
    expect(list.body.data.map((c: { id: string }) => c.id)).toEqual([w.carolConv]);
    expectNoLeak(list.body);
    const unread = await ctx.api.get('/conversations/unread-count', w.carol.token);
    expect(unread.body.data).toMatchObject({ total: 1, conversations: 1 });
    expectNoLeak(unread.body);
    const events = await ctx.api.get('/events?limit=100', w.carol.token);
    expect(events.status).toBe(200);
    expectNoLeak(events.body);
    for (const e of events.body.data as Array<{ payload: { message?: { conversationId: string }; conversationId?: string } }>) {
      const conversationId = e.payload.message?.conversationId ?? e.payload.conversationId;
      expect(conversationId).toBe(w.carolConv);
    }
  });

  it('presence of a stranger: only { isOnline, lastSeenAt } per asked id, nothing more', async () => {
    const { client: a } = await connect(port(), { token: w.alice.token });
    try {
      const unknownId = `user-nobody-${randomBytes(4).toString('hex')}`;
      const res = await ctx.api.get(`/presence?userIds=${w.alice.id},${w.bob.id},${unknownId}`, w.carol.token);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(['data']);
      expect(Object.keys(res.body.data).sort()).toEqual([w.alice.id, w.bob.id, unknownId].sort());
      for (const [id, p] of Object.entries(res.body.data as Record<string, Record<string, unknown>>)) {
        expect(Object.keys(p).sort(), id).toEqual(['isOnline', 'lastSeenAt']);
        expect(typeof p.isOnline).toBe('boolean');
        expect(p.lastSeenAt === null || typeof p.lastSeenAt === 'string').toBe(true);
      }
      expect(res.body.data[unknownId]).toEqual({ isOnline: false, lastSeenAt: null });
      const text = JSON.stringify(res.body);
      for (const s of [w.conv, w.alice.username, w.bob.username, w.a1.content, w.b1.content]) expect(text).not.toContain(s);
      const tooMany = await ctx.api.get(`/presence?userIds=${Array.from({ length: 101 }, (_, i) => `u${i}`).join(',')}`, w.carol.token);
      expect(tooMany.status).toBe(400);
      expect(tooMany.body.error.code).toBe('VALIDATION_FAILED');
    } finally {
      await a.close();
    }
  });

  it('opening a conversation with Alice gives Carol a new, empty one: nothing of Alice\u2019s other conversation', async () => {
    const eve = await knownUser(ctx.api, 'eve');
    const opened = await ctx.api.get(`/conversations/with/${w.alice.username}`, eve.token);
    expect(opened.status).toBe(201);
    expect(opened.body.data.id).not.toBe(w.conv);
    expect(opened.body.data).toMatchObject({ lastMessage: null, unreadCount: 0 });
    const text = JSON.stringify(opened.body);
    for (const s of [w.conv, w.bob.id, w.bob.username, w.a1.id, w.a2.id, w.b1.id, w.a1.content, w.a2.content, w.b1.content]) expect(text).not.toContain(s);
    const msgs = await ctx.api.get(`/conversations/${opened.body.data.id}/messages`, eve.token);
    expect(msgs.body.data).toEqual([]);
  });
});

describe('BOLA over the WebSocket', () => {
  const sockets: WsClient[] = [];
  let a: WsClient;
  let b: WsClient;
  let c: WsClient;
  beforeAll(async () => {
    // Carol first: Alice and Bob coming online must not be told to her either.
    c = (await connect(port(), { token: w.carol.token })).client;
    a = (await connect(port(), { token: w.alice.token })).client;
    b = (await connect(port(), { token: w.bob.token })).client;
    sockets.push(a, b, c);
  });
  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.close()));
  });

  const ofConv = (f: Frame) => JSON.stringify(f).includes(w.conv);
  const toParticipant = (f: Frame) => ['typing', 'message.new', 'message.read', 'unread.updated'].includes(f.type);

  it('message.send, message.read (with and without messageId), typing.start, typing.stop: a 404 error frame, identical to a nonexistent conversation\u2019s, and nothing reaches Alice or Bob', async () => {
    const before = await snapshot();
    const [seenA, seenB] = [a.frames.length, b.frames.length];
    const attempts: Array<[string, (conversationId: string) => Record<string, unknown>]> = [
      ['message.send', (conversationId) => ({ conversationId, content: 'ws intrusion' })],
      ['message.send', (conversationId) => ({ conversationId, content: w.a1.content, clientMessageId: 'replayed-key' })],
      ['message.read', (conversationId) => ({ conversationId })],
      ['message.read', (conversationId) => ({ conversationId, messageId: w.a2.id })],
      ['message.read', (conversationId) => ({ conversationId, messageId: w.b1.id })],
      ['typing.start', (conversationId) => ({ conversationId })],
      ['typing.stop', (conversationId) => ({ conversationId })],
    ];
    for (const [type, payload] of attempts) {
      const foreign = await c.request(type, payload(w.conv));
      expect(foreign.type, `${type} ${JSON.stringify(foreign)}`).toBe('error');
      expect(foreign.payload.code).toBe('CONVERSATION_NOT_FOUND');
      expectNoLeak(foreign.payload);
      for (const other of [lookAlike(w.conv), freshV7(), 'not-a-uuid']) {
        const missing = await c.request(type, payload(other));
        expect(missing.type).toBe('error');
        expect(missing.payload, `${type} foreign vs ${other}`).toEqual(foreign.payload);
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(a.frames.slice(seenA).filter(toParticipant)).toEqual([]);
    expect(b.frames.slice(seenB).filter(toParticipant)).toEqual([]);
    expect(await snapshot()).toEqual(before);
    // The socket stays usable.
    expect((await c.request('ping')).type).toBe('pong');
  });

  it('a payload naming another user as the actor is VALIDATION_FAILED', async () => {
    const seenA = a.frames.length;
    for (const [type, payload] of [
      ['message.send', { conversationId: w.conv, content: 'as alice', actor: w.alice.id }],
      ['message.read', { conversationId: w.conv, actor: w.bob.id }],
      ['typing.start', { conversationId: w.conv, userId: w.alice.id }],
    ] as const) {
      const res = await c.request(type, payload);
      expect(res.type).toBe('error');
      expect(res.payload.code).toBe('VALIDATION_FAILED');
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(a.frames.slice(seenA).filter(toParticipant)).toEqual([]);
  });

  it('what Alice and Bob do in their conversation never reaches Carol\u2019s socket', async () => {
    const ack = await a.request('message.send', { conversationId: w.conv, content: secret('private-ws') });
    expect(ack.type).toBe('ack');
    await b.next((f) => f.type === 'message.new' && f.payload.message.id === ack.payload.message.id);
    await b.request('typing.start', { conversationId: w.conv });
    await a.next((f) => f.type === 'typing' && f.payload.isTyping === true);
    await b.request('message.read', { conversationId: w.conv });
    await a.next((f) => f.type === 'message.read' && f.payload.lastReadMessageId === ack.payload.message.id);
    await b.request('typing.stop', { conversationId: w.conv });
    await c.none(() => true, 500);
    // Carol got her hello, and replies to her own frames: no event of theirs, no presence of theirs.
    const unexpected = c.frames.filter((f) => !['hello', 'ack', 'error', 'pong'].includes(f.type));
    expect(unexpected).toEqual([]);
    expect(c.frames.filter(ofConv).filter((f) => f.type !== 'error')).toEqual([]);
    const text = JSON.stringify(c.frames);
    for (const s of [w.alice.id, w.bob.id, ack.payload.message.content, w.a1.content, w.b1.content]) expect(text).not.toContain(s);
    // Nor in her event log.
    const events = await ctx.api.get('/events?limit=100', w.carol.token);
    expect(JSON.stringify(events.body)).not.toContain(ack.payload.message.id);
    expectNoLeak(events.body);
  });
});
