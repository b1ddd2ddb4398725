import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChatClient, isApiError, type ChatClientOptions, type DurableEvent, type Message } from '../src';
import { conversationPair, eventually, type TestUser } from '../../../test/helpers/client';
import { useStack } from '../../../test/helpers/stack';
import { TestNetwork } from './net';

/**
 * SPEC 10 through the client against the real running system: edits,
 * deletes for everyone, reactions (over the socket, and over REST when the
 * socket cannot answer), their durable events across a reconnect, and
 * search. Faults come from the network between the client and the gateway.
 */
const ctx = useStack();
const clients: ChatClient[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function makeClient(user: TestUser, opts: Partial<ChatClientOptions> & { net?: TestNetwork } = {}) {
  const net = opts.net ?? new TestNetwork();
  const client = new ChatClient({
    baseUrl: ctx.stack.baseUrl,
    getToken: () => user.token,
    WebSocket: net.factory(),
    storage: null,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    ackTimeoutMs: 2000,
    ...opts,
  });
  clients.push(client);
  const events: DurableEvent[] = [];
  const frames: string[] = [];
  client.on('event', (e) => events.push(e));
  net.loseOutgoing = (f) => (frames.push(f.type), false);
  return { client, net, events, frames };
}

async function opened(client: ChatClient) {
  if (client.state === 'idle') client.connect();
  await eventually(async () => expect(client.state).toBe('open'), 10_000);
}

function expectGapFree(events: DurableEvent[]) {
  for (let i = 1; i < events.length; i++) expect(events[i]!.seq, `event ${i}`).toBe(events[i - 1]!.seq + 1);
}

async function send(conv: string, user: TestUser, content: string): Promise<Message> {
  const res = await ctx.api.post(`/conversations/${conv}/messages`, user.token, { content });
  expect(res.status).toBe(201);
  return res.body.data as Message;
}

async function stored(messageId: string, user: TestUser): Promise<Message> {
  const res = await ctx.api.get(`/messages/${messageId}`, user.token);
  expect(res.status).toBe(200);
  return res.body.data as Message;
}

const ofType = <T extends DurableEvent['type']>(events: DurableEvent[], type: T) =>
  events.filter((e): e is Extract<DurableEvent, { type: T }> => e.type === type);

describe('changing messages through the client (SPEC 10)', () => {
  it('edit, delete and reactions go over the socket; both users get each change once as a typed durable event', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    const b = makeClient(bob);
    await Promise.all([opened(a.client), opened(b.client)]);
    const restEdit = vi.spyOn(a.client.rest, 'editMessage');
    const restDelete = vi.spyOn(a.client.rest, 'deleteMessage');
    const restReact = vi.spyOn(b.client.rest, 'addReaction');
    const m1 = await send(conv, alice, 'see you at 5');
    const m2 = await send(conv, alice, 'my password is hunter2');
    await eventually(async () => expect(ofType(b.events, 'message.new')).toHaveLength(2));

    const edited = await a.client.editMessage(conv, m1.id, '  see you at 6  ');
    expect(edited).toMatchObject({ id: m1.id, content: 'see you at 6', deletedAt: null, reactions: [] });
    expect(edited.editedAt! > m1.createdAt).toBe(true);
    await eventually(async () => expect(ofType(b.events, 'message.updated').map((e) => e.payload.message)).toEqual([edited]));
    expect(ofType(a.events, 'message.updated').map((e) => e.payload.message.content)).toEqual(['see you at 6']);

    const reacted = await b.client.addReaction(conv, m1.id, '👍');
    expect(reacted.reactions).toEqual([{ emoji: '👍', userIds: [bob.id] }]);
    await eventually(async () =>
      expect(ofType(a.events, 'reaction.updated').map((e) => e.payload)).toEqual([{ conversationId: conv, messageId: m1.id, reactions: reacted.reactions }]),
    );

    const tombstone = await a.client.deleteMessage(conv, m2.id);
    expect(tombstone).toMatchObject({ id: m2.id, content: '', reactions: [], createdAt: m2.createdAt, senderId: alice.id });
    expect(tombstone.deletedAt).not.toBeNull();
    await eventually(async () =>
      expect(ofType(b.events, 'message.deleted').map((e) => e.payload)).toEqual([{ conversationId: conv, messageId: m2.id, deletedAt: tombstone.deletedAt }]),
    );
    // The unread message Bob never read is no longer unread.
    await eventually(async () => expect(ofType(b.events, 'unread.updated').at(-1)!.payload).toMatchObject({ conversationId: conv, conversationUnread: 1 }));
    expect(JSON.stringify(b.events.slice(-3))).not.toContain('hunter2');

    expect(a.frames.filter((t) => t !== 'ping')).toEqual(['message.edit', 'message.delete']);
    expect(b.frames.filter((t) => t !== 'ping')).toEqual(['reaction.add']);
    expect(restEdit).not.toHaveBeenCalled();
    expect(restDelete).not.toHaveBeenCalled();
    expect(restReact).not.toHaveBeenCalled();
    expectGapFree(a.events);
    expectGapFree(b.events);
    expect(await stored(m1.id, bob)).toEqual({ ...edited, reactions: reacted.reactions });
  });

  it('refusals are ChatApiErrors typed by their SPEC code, over the socket and over REST alike', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    const b = makeClient(bob);
    await Promise.all([opened(a.client), opened(b.client)]);
    const m = await send(conv, alice, 'mine');

    const notSender = await b.client.editMessage(conv, m.id, 'not yours').catch((e: unknown) => e);
    expect(isApiError(notSender, 'NOT_SENDER')).toBe(true);
    await expect(b.client.rest.deleteMessage(conv, m.id)).rejects.toMatchObject({ name: 'ChatApiError', code: 'NOT_SENDER', status: 403 });
    await expect(b.client.rest.addReaction(conv, m.id, 'ok')).rejects.toMatchObject({ code: 'VALIDATION_FAILED', status: 400 });

    // Ten different emoji per user and message, not eleven.
    const emoji = ['😀', '😁', '😂', '🤣', '😃', '😄', '😅', '😆', '😉', '😊'];
    for (const e of emoji) await b.client.addReaction(conv, m.id, e);
    const tooMany = await b.client.addReaction(conv, m.id, '😋').catch((e: unknown) => e);
    expect(tooMany).toMatchObject({ name: 'ChatApiError', code: 'TOO_MANY_REACTIONS' });
    await expect(b.client.rest.addReaction(conv, m.id, '😋')).rejects.toMatchObject({ code: 'TOO_MANY_REACTIONS', status: 409 });

    // Past the edit window (the message made old in the database that judges it).
    const old = await send(conv, alice, 'written long ago');
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    try {
      await db.query(`UPDATE messages.messages SET created_at = created_at - interval '1 day' WHERE id = $1`, [old.id]);
    } finally {
      await db.end();
    }
    await expect(a.client.editMessage(conv, old.id, 'too late')).rejects.toMatchObject({ code: 'EDIT_WINDOW_PASSED' });
    await expect(a.client.rest.editMessage(conv, old.id, 'too late')).rejects.toMatchObject({ code: 'EDIT_WINDOW_PASSED', status: 403 });
    // Deleting has no window.
    await a.client.deleteMessage(conv, old.id);
    await expect(a.client.editMessage(conv, old.id, 'after delete')).rejects.toMatchObject({ code: 'MESSAGE_DELETED' });
    await expect(b.client.rest.addReaction(conv, old.id, '👍')).rejects.toMatchObject({ code: 'MESSAGE_DELETED', status: 409 });
    // Deleting again answers the same tombstone.
    expect((await a.client.deleteMessage(conv, old.id)).content).toBe('');
  });

  it('a change whose answer is lost, or whose socket goes, is asked again over REST and applied once', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const net = new TestNetwork();
    const a = makeClient(alice, { net, ackTimeoutMs: 300 });
    const b = makeClient(bob);
    await Promise.all([opened(a.client), opened(b.client)]);
    const m = await send(conv, alice, 'typo hre');

    // The edit reaches the server, its ack never reaches the client.
    let lostAcks = 0;
    net.loseIncoming = (f) => f.type === 'ack' && lostAcks++ === 0;
    const restEdit = vi.spyOn(a.client.rest, 'editMessage');
    const edited = await a.client.editMessage(conv, m.id, 'typo here');
    expect(edited.content).toBe('typo here');
    expect(a.frames.filter((t) => t === 'message.edit')).toHaveLength(1);
    expect(restEdit).toHaveBeenCalledTimes(1);
    net.loseIncoming = () => false;

    // The reaction frame never leaves, and the socket drops: REST at once, not after the ack timeout.
    net.loseOutgoing = (f) => (a.frames.push(f.type), f.type === 'reaction.add');
    const restReact = vi.spyOn(a.client.rest, 'addReaction');
    const reacting = a.client.addReaction(conv, m.id, '🎉');
    await eventually(async () => expect(a.frames).toContain('reaction.add'));
    net.cutAll();
    expect((await reacting).reactions).toEqual([{ emoji: '🎉', userIds: [alice.id] }]);
    expect(restReact).toHaveBeenCalledTimes(1);

    // Bob saw each change once: the repeat over REST changed nothing and made no event.
    await send(conv, alice, 'marker');
    await eventually(async () => expect(ofType(b.events, 'message.new').map((e) => e.payload.message.content)).toEqual(['typo hre', 'marker']));
    expect(ofType(b.events, 'message.updated').map((e) => e.payload.message.content)).toEqual(['typo here']);
    expect(ofType(b.events, 'reaction.updated')).toHaveLength(1);
    expectGapFree(b.events);

    a.client.close();
    await expect(a.client.editMessage(conv, m.id, 'after close')).rejects.toThrow(/closed/);
  });

  it("one message's changes are applied in the order they were made, even fired all at once", async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const b = makeClient(bob);
    await opened(b.client);
    const m = await send(conv, alice, 'react to this');
    const answers = await Promise.all([
      b.client.addReaction(conv, m.id, '👍'),
      b.client.removeReaction(conv, m.id, '👍'),
      b.client.addReaction(conv, m.id, '❤️'),
      b.client.addReaction(conv, m.id, '😂'),
      b.client.removeReaction(conv, m.id, '❤️'),
    ]);
    expect(answers.map((x) => x.reactions.map((r) => r.emoji))).toEqual([['👍'], [], ['❤️'], ['❤️', '😂'], ['😂']]);
    expect((await stored(m.id, alice)).reactions).toEqual([{ emoji: '😂', userIds: [bob.id] }]);
  });

  it('changes made while a client was away arrive when it resumes, once, in order, as the message is now', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const net = new TestNetwork();
    const b = makeClient(bob, { net });
    await opened(b.client);
    const keep = await send(conv, alice, 'meet at the cafe');
    const gone = await send(conv, alice, 'wrong chat, sorry');
    await eventually(async () => expect(ofType(b.events, 'message.new')).toHaveLength(2));
    const seqBefore = b.client.lastSeq!;

    net.down = true;
    net.cutAll();
    await eventually(async () => expect(b.client.state).toBe('reconnecting'));
    const edited = (await ctx.api.call('PATCH', `/conversations/${conv}/messages/${keep.id}`, { token: alice.token, body: { content: 'meet at the station' } })).body.data as Message;
    expect((await ctx.api.del(`/conversations/${conv}/messages/${gone.id}`, alice.token)).status).toBe(200);
    expect((await ctx.api.put(`/conversations/${conv}/messages/${keep.id}/reactions/${encodeURIComponent('👋')}`, alice.token)).status).toBe(200);
    net.down = false;

    await eventually(async () => expect(ofType(b.events, 'reaction.updated')).toHaveLength(1), 10_000);
    const since = b.events.filter((e) => e.seq > seqBefore);
    expect(since.map((e) => e.type)).toEqual(['message.updated', 'message.deleted', 'unread.updated', 'reaction.updated']);
    expect(ofType(since, 'message.updated')[0]!.payload.message).toMatchObject({ id: keep.id, content: 'meet at the station', editedAt: edited.editedAt });
    expect(ofType(since, 'message.deleted')[0]!.payload).toMatchObject({ conversationId: conv, messageId: gone.id });
    expect(ofType(since, 'reaction.updated')[0]!.payload.reactions).toEqual([{ emoji: '👋', userIds: [alice.id] }]);
    expect(net.urls.at(-1)).toContain(`since=${seqBefore}`);
    expect(JSON.stringify(since)).not.toContain('wrong chat');
    expectGapFree(b.events);
  });
});

describe('searching messages through the client (SPEC 10)', () => {
  it('finds messages by words and word starts, ignoring case and accents, with the conversation it is in; page by page', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    const hit = await send(conv, bob, 'Meet me at the Café Zürich');
    await send(conv, bob, 'something else entirely');
    const found = await a.client.rest.searchMessages({ q: '  cafe zur ' });
    expect(found.data).toEqual([{ message: hit, conversation: { id: conv, participant: expect.objectContaining({ id: bob.id, username: bob.username }) } }]);
    expect(found.meta).toEqual({ nextCursor: null, hasMore: false });

    const many = [];
    for (let i = 0; i < 3; i++) many.push(await send(conv, alice, `lunchbox number ${i}`));
    const first = await a.client.rest.searchMessages({ q: 'LUNCH', conversationId: conv, limit: 2 });
    expect(first.data.map((h) => h.message.id)).toEqual([many[2]!.id, many[1]!.id]);
    expect(first.meta.hasMore).toBe(true);
    const second = await a.client.rest.searchMessages({ q: 'lunch', conversationId: conv, limit: 2, cursor: first.meta.nextCursor });
    expect(second.data.map((h) => h.message.id)).toEqual([many[0]!.id]);
    await expect(a.client.rest.searchMessages({ q: '   ' })).rejects.toMatchObject({ code: 'VALIDATION_FAILED', status: 400 });
  });

  it('an edited message is found by its new content only; a deleted one never', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    await opened(a.client);
    const m = await send(conv, alice, 'the meeting is on tuesday');
    await a.client.editMessage(conv, m.id, 'the meeting is on wednesday');
    expect((await a.client.rest.searchMessages({ q: 'tuesday' })).data).toEqual([]);
    expect((await a.client.rest.searchMessages({ q: 'wednes' })).data.map((h) => h.message.id)).toEqual([m.id]);
    await a.client.deleteMessage(conv, m.id);
    const bobClient = makeClient(bob);
    expect((await bobClient.client.rest.searchMessages({ q: 'meeting' })).data).toEqual([]);
  });
});
