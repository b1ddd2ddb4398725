import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeliverySchema, MessageSchema } from '@chat/contracts';
import { useStack } from './helpers/stack';
import { ISO_MS, conversationPair, eventually, knownUser, type Api, type TestUser } from './helpers/client';
import { connect, type WsClient } from './helpers/ws';
import { createDatabase, createLogger, createMetrics } from '@chat/platform';
import { NotificationsRepository, WebhookDelivery, createNotificationMetrics } from '@chat/notifications';
import { notificationsOf, openNotificationsDb } from './helpers/notifications';
import { startWebhookReceiver } from './helpers/webhook-receiver';
import { streamEvents } from './helpers/streams';

/** SPEC 10 through the gateway on the real stack: edit, delete for everyone, reactions, and what each leaves in the event log. */
const ctx = useStack();
let messagesDb: pg.Client;
beforeAll(async () => {
  messagesDb = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL, options: '-c search_path=messages' });
  await messagesDb.connect();
});
afterAll(async () => {
  await messagesDb?.end();
});

const port = () => ctx.stack.gateway.port;
const msgPath = (conv: string, id: string) => `/conversations/${conv}/messages/${id}`;
const reactionPath = (conv: string, id: string, emoji: string) => `${msgPath(conv, id)}/reactions/${encodeURIComponent(emoji)}`;
const patch = (a: Api, u: TestUser, conv: string, id: string, body: unknown) => a.call('PATCH', msgPath(conv, id), { token: u.token, body });

async function send(u: TestUser, conv: string, content: string) {
  const res = await ctx.api.post(`/conversations/${conv}/messages`, u.token, { content });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.data as { id: string; content: string; createdAt: string };
}
function expectError(res: { status: number; body: any }, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.error.code).toBe(code);
}
/** Every durable frame a socket got after `from`, checked against the contract. */
function durableAfter(ws: WsClient, from: number) {
  return ws.durable().slice(from).map((f) => DeliverySchema.parse(f) as { seq: number; type: string; payload: any });
}
const unreadTotal = async (u: TestUser) => (await ctx.api.get('/conversations/unread-count', u.token)).body.data.total as number;
async function listRow(u: TestUser, conv: string) {
  const res = await ctx.api.get('/conversations?limit=100', u.token);
  expect(res.status).toBe(200);
  return (res.body.data as Array<{ id: string; lastMessage: any; unreadCount: number }>).find((c) => c.id === conv)!;
}

describe('PATCH /conversations/:cid/messages/:mid (edit)', () => {
  it('the sender edits: 200 with the new content and editedAt; both users get message.updated; the list and GET follow', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: aliceWs } = await connect(port(), { token: alice.token });
    const { client: bobWs } = await connect(port(), { token: bob.token });
    const m = await send(alice, conv, 'teh typo');
    await bobWs.waitDurable(2);
    const [a0, b0] = [aliceWs.durable().length, bobWs.durable().length];

    const res = await patch(ctx.api, alice, conv, m.id, { content: '  the typo, fixed  ' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const edited = MessageSchema.parse(res.body.data);
    expect(edited).toMatchObject({ id: m.id, content: 'the typo, fixed', createdAt: m.createdAt, deletedAt: null, reactions: [] });
    expect(edited.editedAt).toMatch(ISO_MS);
    expect(Date.parse(edited.editedAt!)).toBeGreaterThanOrEqual(Date.parse(m.createdAt));

    for (const [ws, from] of [[aliceWs, a0], [bobWs, b0]] as const) {
      await ws.waitDurable(from + 1);
      const [e] = durableAfter(ws, from);
      expect(e).toMatchObject({ type: 'message.updated', payload: { message: edited } });
    }
    expect((await ctx.api.get(`/messages/${m.id}`, bob.token)).body.data).toEqual(edited);
    expect((await ctx.api.get(`/conversations/${conv}/messages`, bob.token)).body.data[0]).toEqual(edited);
    await eventually(async () => expect((await listRow(bob, conv)).lastMessage).toEqual(edited));

    // The same content again: 200, nothing changes, no event.
    const again = await patch(ctx.api, alice, conv, m.id, { content: 'the typo, fixed' });
    expect(again.status).toBe(200);
    expect(again.body.data).toEqual(edited);
    await bobWs.none(() => true, 300);
    expect(bobWs.durable()).toHaveLength(b0 + 1);
    await Promise.all([aliceWs.close(), bobWs.close()]);
  });

  it('only the sender (403 NOT_SENDER); only their conversation (404); a message of another conversation is 404 MESSAGE_NOT_FOUND', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'mine');
    expectError(await patch(ctx.api, bob, conv, m.id, { content: 'yours now' }), 403, 'NOT_SENDER');
    const eve = await knownUser(ctx.api, 'eve');
    expectError(await patch(ctx.api, eve, conv, m.id, { content: 'x' }), 404, 'CONVERSATION_NOT_FOUND');
    const other = await conversationPair(ctx.api);
    const theirs = await send(other.alice, other.conv, 'elsewhere');
    expectError(await patch(ctx.api, alice, conv, theirs.id, { content: 'x' }), 404, 'MESSAGE_NOT_FOUND');
    expectError(await patch(ctx.api, alice, conv, 'not-an-id', { content: 'x' }), 404, 'MESSAGE_NOT_FOUND');
    expectError(await patch(ctx.api, alice, conv, crypto.randomUUID(), { content: 'x' }), 404, 'MESSAGE_NOT_FOUND');
    expect((await ctx.api.get(`/messages/${m.id}`, alice.token)).body.data).toMatchObject({ content: 'mine', editedAt: null });
  });

  it("content follows section 4's rules: 400 VALIDATION_FAILED for empty, too long, unknown fields", async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'hello');
    for (const body of [{ content: '   ' }, { content: 'x'.repeat(5001) }, { content: 'ok', extra: 1 }, {}, { content: 5 }]) {
      expectError(await patch(ctx.api, alice, conv, m.id, body), 400, 'VALIDATION_FAILED');
    }
  });

  it('past MESSAGE_EDIT_WINDOW_S of createdAt: 403 EDIT_WINDOW_PASSED, and the message stays as it was', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'old news');
    // Age the message past the default 900 s window.
    await messagesDb.query("UPDATE messages SET created_at = created_at - interval '901 seconds' WHERE id = $1", [m.id]);
    expectError(await patch(ctx.api, alice, conv, m.id, { content: 'new news' }), 403, 'EDIT_WINDOW_PASSED');
    expect((await ctx.api.get(`/messages/${m.id}`, alice.token)).body.data).toMatchObject({ content: 'old news', editedAt: null });
    // A message within the window is still editable.
    const fresh = await send(alice, conv, 'fresh');
    await messagesDb.query("UPDATE messages SET created_at = created_at - interval '890 seconds' WHERE id = $1", [fresh.id]);
    expect((await patch(ctx.api, alice, conv, fresh.id, { content: 'still fresh' })).status).toBe(200);
  });

  it('while either user blocks the other: 403 BLOCKED; a deleted message: 409 MESSAGE_DELETED', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'before the block');
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    expectError(await patch(ctx.api, alice, conv, m.id, { content: 'after the block' }), 403, 'BLOCKED');
    expect((await ctx.api.del(`/blocks/${alice.username}`, bob.token)).status).toBe(204);
    expect((await patch(ctx.api, alice, conv, m.id, { content: 'after the block' })).status).toBe(200);
    expect((await ctx.api.del(msgPath(conv, m.id), alice.token)).status).toBe(200);
    expectError(await patch(ctx.api, alice, conv, m.id, { content: 'resurrected' }), 409, 'MESSAGE_DELETED');
  });
});

describe('DELETE /conversations/:cid/messages/:mid (delete for everyone)', () => {
  it('a tombstone for both users: message.deleted to both, the unread count drops with unread.updated, the list shows the tombstone', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: aliceWs } = await connect(port(), { token: alice.token });
    const { client: bobWs } = await connect(port(), { token: bob.token });
    await send(alice, conv, 'first');
    const m = await send(alice, conv, 'regrettable');
    await bobWs.waitDurable(4);
    expect(await unreadTotal(bob)).toBe(2);
    const [a0, b0] = [aliceWs.durable().length, bobWs.durable().length];

    const res = await ctx.api.del(msgPath(conv, m.id), alice.token);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const tomb = MessageSchema.parse(res.body.data);
    expect(tomb).toMatchObject({ id: m.id, conversationId: conv, senderId: alice.id, content: '', createdAt: m.createdAt, editedAt: null, reactions: [] });
    expect(tomb.deletedAt).toMatch(ISO_MS);

    await aliceWs.waitDurable(a0 + 1);
    expect(durableAfter(aliceWs, a0)).toMatchObject([{ type: 'message.deleted', payload: { conversationId: conv, messageId: m.id, deletedAt: tomb.deletedAt } }]);
    await bobWs.waitDurable(b0 + 2);
    const bobEvents = durableAfter(bobWs, b0);
    expect(bobEvents).toMatchObject([
      { type: 'message.deleted', payload: { conversationId: conv, messageId: m.id, deletedAt: tomb.deletedAt } },
      { type: 'unread.updated', payload: { total: 1, conversationId: conv, conversationUnread: 1 } },
    ]);
    expect(bobEvents[1]!.seq).toBe(bobEvents[0]!.seq + 1);
    expect(await unreadTotal(bob)).toBe(1);
    await eventually(async () => expect(await listRow(bob, conv)).toMatchObject({ lastMessage: tomb, unreadCount: 1 }));
    expect((await ctx.api.get(`/messages/${m.id}`, bob.token)).body.data).toEqual(tomb);

    // Again: the same tombstone, no event.
    const again = await ctx.api.del(msgPath(conv, m.id), alice.token);
    expect(again.status).toBe(200);
    expect(again.body.data).toEqual(tomb);
    await bobWs.none(() => true, 300);
    expect(bobWs.durable()).toHaveLength(b0 + 2);
    await Promise.all([aliceWs.close(), bobWs.close()]);
  });

  it('a message the recipient had read: no unread change and no unread.updated', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'seen it');
    expect((await ctx.api.post(`/conversations/${conv}/read`, bob.token, {})).status).toBe(200);
    const { client: bobWs, hello } = await connect(port(), { token: bob.token });
    expect((await ctx.api.del(msgPath(conv, m.id), alice.token)).status).toBe(200);
    await bobWs.waitDurable(1);
    await bobWs.none((f) => f.type === 'unread.updated', 300);
    expect(durableAfter(bobWs, 0)).toMatchObject([{ seq: hello.payload.seq + 1, type: 'message.deleted' }]);
    expect(await unreadTotal(bob)).toBe(0);
    await bobWs.close();
  });

  it('only the sender (403 NOT_SENDER), at any time, blocked or not', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'keep or not');
    expectError(await ctx.api.del(msgPath(conv, m.id), bob.token), 403, 'NOT_SENDER');
    await messagesDb.query("UPDATE messages SET created_at = created_at - interval '30 days' WHERE id = $1", [m.id]);
    expect((await ctx.api.post('/blocks', alice.token, { username: bob.username })).status).toBe(201);
    const res = await ctx.api.del(msgPath(conv, m.id), alice.token);
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ content: '', deletedAt: expect.stringMatching(ISO_MS) });
  });

  it('no trace of the content in any answer, replay or table: message list, GET, the conversation list, GET /events, a resume with since=0, and the messages, conversations and notifications schemas', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const secret = `s3cr3t-${crypto.randomUUID()}`;
    const m = await send(alice, conv, `the code is ${secret}`);
    // An edit and a reaction, so every kind of copy exists: message.new, message.updated, reaction.updated and their snapshots.
    expect((await patch(ctx.api, alice, conv, m.id, { content: `really, the code is ${secret}` })).status).toBe(200);
    expect((await ctx.api.put(reactionPath(conv, m.id, '👀'), bob.token)).status).toBe(200);
    expect((await ctx.api.post(`/conversations/${conv}/read`, bob.token, {})).status).toBe(200);
    await eventually(async () => expect(JSON.stringify(await listRow(bob, conv))).toContain(secret));

    expect((await ctx.api.del(msgPath(conv, m.id), alice.token)).status).toBe(200);

    for (const u of [alice, bob]) {
      const answers = await Promise.all([
        ctx.api.get(`/conversations/${conv}/messages`, u.token),
        ctx.api.get(`/messages/${m.id}`, u.token),
        ctx.api.get(`/conversations/${conv}`, u.token),
        ctx.api.get('/events?since=0&limit=100', u.token),
      ]);
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(JSON.stringify(a.body)).not.toContain(secret);
      }
      // The list too, at once: the delete answers only once the conversations service shows the tombstone.
      expect(JSON.stringify((await ctx.api.get('/conversations?limit=100', u.token)).body)).not.toContain(secret);
      const events = answers[3]!.body.data as Array<{ type: string; payload: any }>;
      // Replayed message.new and message.updated carry the message as it is now: the tombstone.
      const carried = events.filter((e) => e.type === 'message.new' || e.type === 'message.updated').map((e) => e.payload.message);
      expect(carried.length).toBeGreaterThanOrEqual(2);
      for (const c of carried) expect(c).toMatchObject({ id: m.id, content: '', deletedAt: expect.stringMatching(ISO_MS), reactions: [] });
      const { client, hello } = await connect(port(), { token: u.token, since: 0 });
      expect(hello.payload.replayed).toBe(events.length);
      expect(JSON.stringify(client.frames)).not.toContain(secret);
      await client.close();
    }

    // The event stream: every message event that held the content is purged (the published copies included).
    // The delete's own event stays (it carries no content), for the consumers that act on it.
    const inStream = await eventually(async () => {
      const events = await streamEvents(ctx.stack.config.NATS_URL, ctx.stack.config.NATS_PREFIX, 'message.>');
      expect(events.filter((e) => e.conversationId === conv)).toEqual([expect.objectContaining({ messageId: m.id, deletedAt: expect.stringMatching(ISO_MS) })]);
      return events;
    });
    expect(JSON.stringify(inStream)).not.toContain(secret);

    // Storage: not hidden, gone. Every row of every table of the three schemas that hold messages, as text.
    await eventually(async () => {
      for (const schema of ['messages', 'conversations', 'notifications']) {
        const { rows: tables } = await messagesDb.query<{ table_name: string }>(
          "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
          [schema],
        );
        for (const { table_name } of tables) {
          const { rows } = await messagesDb.query(`SELECT count(*)::int AS n FROM ${schema}."${table_name}" t WHERE t::text LIKE $1`, [`%${secret}%`]);
          expect(rows[0].n, `${schema}.${table_name}`).toBe(0);
        }
      }
    }, 5000, 100);
  });
});

describe('a notification of a deleted message', () => {
  it('is not delivered once the message is deleted: the pending row is withdrawn and keeps no preview; the delivery worker never posts it', async () => {
    const notificationsDb = await openNotificationsDb(ctx.stack);
    const pool = createDatabase(ctx.stack.config.DATABASE_URL, 'notifications', { max: 2 });
    const hook = await startWebhookReceiver();
    try {
      const { alice, bob, conv } = await conversationPair(ctx.api);
      const m = await send(alice, conv, 'call me at 555-0100');
      // Bob has no socket: the notification is stored (this stack has no webhook URL, so it waits there).
      const [row] = await eventually(async () => {
        const rows = await notificationsOf(notificationsDb, bob.id);
        expect(rows).toHaveLength(1);
        return rows;
      }, 15_000, 100);
      expect(row).toMatchObject({ message_id: m.id, delivered_at: null, gave_up_at: null, withdrawn_at: null, payload: { preview: 'call me at 555-0100' } });

      expect((await ctx.api.del(msgPath(conv, m.id), alice.token)).status).toBe(200);
      await eventually(async () =>
        expect(await notificationsOf(notificationsDb, bob.id)).toMatchObject([
          { id: row.id, delivered_at: null, withdrawn_at: expect.any(Date), gave_up_at: expect.any(Date), payload: { preview: '', messageId: m.id } },
        ]),
      15_000, 100);

      // A delivery worker (as NOTIFICATION_WEBHOOK_URL would start) finds nothing of it to post.
      const metrics = createNotificationMetrics(createMetrics('notifications').registry);
      const worker = new WebhookDelivery(pool, { url: hook.url, timeoutMs: 2000, retryBaseMs: 50, retryMaxMs: 200, giveUpAfterMs: 60_000 }, metrics, createLogger('delivery', 'silent'));
      await worker.deliverBatch();
      expect(hook.arrivedFor(bob.id)).toBe(0);

      // Its message.created coming round again (a redelivery after the delete) makes no new notification.
      const again = await new NotificationsRepository(pool).insertMany([{ ...row.payload, notificationId: crypto.randomUUID(), preview: 'call me at 555-0100' }]);
      expect(again.size).toBe(0);
    } finally {
      await hook.close();
      await pool.end();
      await notificationsDb.end();
    }
  });
});

describe('erasing a deleted message from the event stream', () => {
  it('leaves every consumer where it was: the events published around the erase are all projected and notified', async () => {
    const notificationsDb = await openNotificationsDb(ctx.stack);
    try {
      const { alice, bob, conv } = await conversationPair(ctx.api);
      // Bob is offline: each send is a notification, and each must reach the list's unread count.
      const first = await send(alice, conv, 'erase me');
      const rest = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `keep ${n}` })));
      expect((await ctx.api.del(msgPath(conv, first.id), alice.token)).status).toBe(200);
      const more = await Promise.all([7, 8].map((n) => ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `keep ${n}` })));
      const kept = [...rest, ...more].map((r) => r.body.data.id as string);
      await eventually(async () => {
        const rows = await notificationsOf(notificationsDb, bob.id);
        expect(rows.filter((r) => r.withdrawn_at === null).map((r) => r.message_id).sort()).toEqual([...kept].sort());
        expect(rows.filter((r) => r.message_id === first.id)).toMatchObject([{ withdrawn_at: expect.any(Date), payload: { preview: '' } }]);
      }, 15_000, 100);
      const row = await listRow(bob, conv);
      expect(row.unreadCount).toBe(8);
      // Sent concurrently: the last is whichever committed last, as the message list says.
      expect(row.lastMessage.id).toBe((await ctx.api.get(`/conversations/${conv}/messages?limit=1`, bob.token)).body.data[0].id);
    } finally {
      await notificationsDb.end();
    }
  });
});

describe('reactions', () => {
  it('PUT adds, both users get reaction.updated; a repeat is 200 with no event; DELETE removes; DELETE of none is 200 with no event', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: aliceWs } = await connect(port(), { token: alice.token });
    const m = await send(alice, conv, 'react to me');
    await aliceWs.waitDurable(1);

    const put = await ctx.api.put(reactionPath(conv, m.id, '👍'), bob.token);
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    expect(MessageSchema.parse(put.body.data).reactions).toEqual([{ emoji: '👍', userIds: [bob.id] }]);
    await aliceWs.waitDurable(2);
    expect(durableAfter(aliceWs, 1)).toMatchObject([{ type: 'reaction.updated', payload: { conversationId: conv, messageId: m.id, reactions: [{ emoji: '👍', userIds: [bob.id] }] } }]);

    expect((await ctx.api.put(reactionPath(conv, m.id, '👍'), bob.token)).body.data.reactions).toEqual([{ emoji: '👍', userIds: [bob.id] }]);
    // Emoji in order of first reaction, users in order of reacting.
    await ctx.api.put(reactionPath(conv, m.id, '❤️'), alice.token);
    const both = await ctx.api.put(reactionPath(conv, m.id, '👍'), alice.token);
    expect(both.body.data.reactions).toEqual([
      { emoji: '👍', userIds: [bob.id, alice.id] },
      { emoji: '❤️', userIds: [alice.id] },
    ]);
    await aliceWs.waitDurable(4);
    await aliceWs.none(() => true, 200);
    expect(aliceWs.durable()).toHaveLength(4); // the repeat made none

    const del = await ctx.api.del(reactionPath(conv, m.id, '👍'), bob.token);
    expect(del.status).toBe(200);
    // The order is that of the reactions there now: 👍's first one is now Alice's, after her ❤️.
    expect(del.body.data.reactions).toEqual([{ emoji: '❤️', userIds: [alice.id] }, { emoji: '👍', userIds: [alice.id] }]);
    await aliceWs.waitDurable(5);
    const none = await ctx.api.del(reactionPath(conv, m.id, '👍'), bob.token);
    expect(none.status).toBe(200);
    await aliceWs.none(() => true, 300);
    expect(aliceWs.durable()).toHaveLength(5);
    expect((await ctx.api.get(`/conversations/${conv}/messages`, bob.token)).body.data[0].reactions).toEqual(del.body.data.reactions);
    await aliceWs.close();
  });

  it('one emoji grapheme each (skin tones, ZWJ sequences, flags and keycaps count as one); anything else is 400 VALIDATION_FAILED', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'emoji test');
    for (const ok of ['👍🏽', '👩‍👩‍👧', '🇫🇷', '1️⃣', '❤️']) {
      const res = await ctx.api.put(reactionPath(conv, m.id, ok), alice.token);
      expect(res.status, `${ok}: ${JSON.stringify(res.body)}`).toBe(200);
    }
    for (const bad of ['a', 'ok', '👍👍', '👍 ', '\u200d', '👍\u200d', '1', '%']) {
      expectError(await ctx.api.put(reactionPath(conv, m.id, bad), alice.token), 400, 'VALIDATION_FAILED');
    }
  });

  it('at most 10 different emoji per user per message (409 TOO_MANY_REACTIONS); the other user has their own 10', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'so many feelings');
    const ten = ['😀', '😂', '😍', '😎', '😭', '😡', '👍', '👎', '🎉', '🔥'];
    for (const e of ten) expect((await ctx.api.put(reactionPath(conv, m.id, e), bob.token)).status).toBe(200);
    expectError(await ctx.api.put(reactionPath(conv, m.id, '🙏'), bob.token), 409, 'TOO_MANY_REACTIONS');
    // A repeat of one already there is still fine, and removing one makes room.
    expect((await ctx.api.put(reactionPath(conv, m.id, '🔥'), bob.token)).status).toBe(200);
    expect((await ctx.api.del(reactionPath(conv, m.id, '🔥'), bob.token)).status).toBe(200);
    expect((await ctx.api.put(reactionPath(conv, m.id, '🙏'), bob.token)).status).toBe(200);
    expect((await ctx.api.put(reactionPath(conv, m.id, '🙏'), alice.token)).status).toBe(200);
  });

  it('a deleted message: PUT 409 MESSAGE_DELETED; while blocked: PUT 403 BLOCKED, DELETE still takes one back; a stranger: 404', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'to be blocked');
    expect((await ctx.api.put(reactionPath(conv, m.id, '😮'), bob.token)).status).toBe(200);
    expect((await ctx.api.post('/blocks', alice.token, { username: bob.username })).status).toBe(201);
    expectError(await ctx.api.put(reactionPath(conv, m.id, '👍'), bob.token), 403, 'BLOCKED');
    const del = await ctx.api.del(reactionPath(conv, m.id, '😮'), bob.token);
    expect(del.status).toBe(200);
    expect(del.body.data.reactions).toEqual([]);
    const eve = await knownUser(ctx.api, 'eve');
    expectError(await ctx.api.put(reactionPath(conv, m.id, '👍'), eve.token), 404, 'CONVERSATION_NOT_FOUND');

    const other = await conversationPair(ctx.api);
    const gone = await send(other.alice, other.conv, 'gone soon');
    expect((await ctx.api.put(reactionPath(other.conv, gone.id, '👍'), other.bob.token)).status).toBe(200);
    const tomb = await ctx.api.del(msgPath(other.conv, gone.id), other.alice.token);
    expect(tomb.body.data.reactions).toEqual([]);
    expectError(await ctx.api.put(reactionPath(other.conv, gone.id, '👍'), other.bob.token), 409, 'MESSAGE_DELETED');
    expect((await ctx.api.del(reactionPath(other.conv, gone.id, '👍'), other.bob.token)).body.data).toEqual(tomb.body.data);
  });
});

describe('WebSocket frames', () => {
  it('message.edit, reaction.add, reaction.remove and message.delete are acked with { message }; refusals are error frames with the code', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: ws } = await connect(port(), { token: alice.token });
    const { client: bobWs } = await connect(port(), { token: bob.token });
    const sent = await ws.request('message.send', { conversationId: conv, content: 'over the socket' });
    const id = sent.payload.message.id;

    const edit = await ws.request('message.edit', { conversationId: conv, messageId: id, content: 'over the socket, edited' });
    expect(edit).toMatchObject({ type: 'ack', payload: { message: { id, content: 'over the socket, edited', editedAt: expect.stringMatching(ISO_MS) } } });
    const add = await bobWs.request('reaction.add', { conversationId: conv, messageId: id, emoji: '🎉' });
    expect(add).toMatchObject({ type: 'ack', payload: { message: { reactions: [{ emoji: '🎉', userIds: [bob.id] }] } } });
    const remove = await bobWs.request('reaction.remove', { conversationId: conv, messageId: id, emoji: '🎉' });
    expect(remove).toMatchObject({ type: 'ack', payload: { message: { reactions: [] } } });
    expect(await bobWs.request('message.edit', { conversationId: conv, messageId: id, content: 'hijack' })).toMatchObject({ type: 'error', payload: { code: 'NOT_SENDER' } });
    expect(await bobWs.request('reaction.add', { conversationId: conv, messageId: id, emoji: 'no' })).toMatchObject({ type: 'error', payload: { code: 'VALIDATION_FAILED' } });
    const del = await ws.request('message.delete', { conversationId: conv, messageId: id });
    expect(del).toMatchObject({ type: 'ack', payload: { message: { id, content: '', deletedAt: expect.stringMatching(ISO_MS) } } });
    expect(await ws.request('message.edit', { conversationId: conv, messageId: id, content: 'back' })).toMatchObject({ type: 'error', payload: { code: 'MESSAGE_DELETED' } });

    await bobWs.waitDurable(6);
    expect(durableAfter(bobWs, 0).map((e) => e.type)).toEqual(['message.new', 'unread.updated', 'message.updated', 'reaction.updated', 'reaction.updated', 'message.deleted', 'unread.updated']);
    await Promise.all([ws.close(), bobWs.close()]);
  });
});

describe('resume after offline changes', () => {
  it('a client that was away gets message.updated, reaction.updated and message.deleted in seq order on resume, and replayed message.new carries each message as it is now', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: bobWs, hello } = await connect(port(), { token: bob.token });
    const [m1, m2, m3] = [await send(alice, conv, 'one'), await send(alice, conv, 'two'), await send(alice, conv, 'three')];
    await bobWs.waitDurable(6);
    const since = bobWs.durable().at(-1)!.seq as number;
    await bobWs.close();

    expect((await patch(ctx.api, alice, conv, m1.id, { content: 'one, edited' })).status).toBe(200);
    expect((await ctx.api.del(msgPath(conv, m2.id), alice.token)).status).toBe(200);
    expect((await ctx.api.put(reactionPath(conv, m3.id, '👋'), alice.token)).status).toBe(200);

    const { client: back, hello: again } = await connect(port(), { token: bob.token, since });
    expect(again.payload).toMatchObject({ replayed: 4, resync: false });
    const replayed = durableAfter(back, 0);
    expect(replayed.map((e) => e.seq)).toEqual([since + 1, since + 2, since + 3, since + 4]);
    expect(replayed).toMatchObject([
      { type: 'message.updated', payload: { message: { id: m1.id, content: 'one, edited' } } },
      { type: 'message.deleted', payload: { messageId: m2.id } },
      { type: 'unread.updated', payload: { conversationId: conv, conversationUnread: 2 } },
      { type: 'reaction.updated', payload: { messageId: m3.id, reactions: [{ emoji: '👋', userIds: [alice.id] }] } },
    ]);
    await back.close();

    const { client: fromStart } = await connect(port(), { token: bob.token, since: hello.payload.seq });
    await fromStart.waitDurable(10);
    const news = durableAfter(fromStart, 0).filter((e) => e.type === 'message.new').map((e) => e.payload.message);
    expect(news).toMatchObject([
      { id: m1.id, content: 'one, edited', editedAt: expect.stringMatching(ISO_MS) },
      { id: m2.id, content: '', deletedAt: expect.stringMatching(ISO_MS) },
      { id: m3.id, content: 'three', reactions: [{ emoji: '👋', userIds: [alice.id] }] },
    ]);
    await fromStart.close();
  });
});
