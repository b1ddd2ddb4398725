import type pg from 'pg';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventStreamName, subjects, type MessageCreatedEvent } from '@chat/contracts';
import { ISO_MS, UUID_V7, conversationPair, eventually, knownUser } from './helpers/client';
import { attemptsOf, notificationBarrier, notificationsOf, openNotificationsDb, sendMessage as send } from './helpers/notifications';
import { useStack } from './helpers/stack';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver';

let hook: WebhookReceiver;
// Registered before useStack, so the receiver's port is known when the stack reads its overrides.
beforeAll(async () => {
  hook = await startWebhookReceiver();
});
afterAll(async () => {
  await hook?.close();
});

const ctx = useStack(() => ({ NOTIFICATION_WEBHOOK_URL: hook.url, NOTIFICATION_RETRY_BASE_MS: 50, NOTIFICATION_RETRY_MAX_MS: 200 }));

let nc: NatsConnection;
let db: pg.Client;
beforeAll(async () => {
  nc = await connect({ servers: ctx.stack.config.NATS_URL });
  db = await openNotificationsDb(ctx.stack);
});
afterAll(async () => {
  await db?.end();
  await nc?.close();
});

const hooksFor = (receiverId: string) => hook.hooksFor(receiverId);
const rowsFor = (receiverId: string) => notificationsOf(db, receiverId);
const barrier = () => notificationBarrier(ctx.api, db);

async function presence(verb: 'connect' | 'disconnect', userId: string): Promise<void> {
  const reply = await nc.request(subjects(ctx.stack.config.NATS_PREFIX).presence[verb], JSON.stringify({ userId, connectionId: 'c1' }), { timeout: 3000 });
  expect(reply.json<any>().ok).toBe(true);
}

describe('notifications for a new message', () => {
  it('an offline receiver gets exactly one webhook POST with every SPEC field, keyed by its notificationId', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    // 130 code points, 190 UTF-16 units: the preview counts characters, and never splits an emoji.
    const content = '😀'.repeat(60) + 'x'.repeat(70);
    const message = await send(ctx.api, alice, conv, content);
    const [hook] = await eventually(async () => {
      const got = hooksFor(bob.id);
      expect(got).toHaveLength(1);
      return got;
    });
    expect(hook!.body).toEqual({
      type: 'chat.message',
      notificationId: expect.stringMatching(UUID_V7),
      receiverId: bob.id,
      senderId: alice.id,
      senderUsername: alice.username,
      conversationId: conv,
      messageId: message.id,
      preview: '😀'.repeat(60) + 'x'.repeat(40),
      createdAt: expect.stringMatching(ISO_MS),
    });
    expect(Array.from(hook!.body.preview as string)).toHaveLength(100);
    expect(hook!.headers['idempotency-key']).toBe(hook!.body.notificationId);
    expect(hook!.headers['content-type']).toMatch(/^application\/json/);

    await barrier();
    expect(hooksFor(bob.id)).toHaveLength(1);
    expect(hooksFor(alice.id)).toHaveLength(0);
    const [row] = await rowsFor(bob.id);
    expect(row).toMatchObject({ id: hook!.body.notificationId, message_id: message.id, attempts: 1, gave_up_at: null, payload: hook!.body });
    expect(row.delivered_at).toBeInstanceOf(Date);
    expect(await attemptsOf(db, row.id)).toMatchObject([{ attempt: 1, status: 200, error: null }]);
  });

  it('a receiver with an open WebSocket gets none and nothing is stored; after they leave, the next message notifies', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await presence('connect', bob.id);
    await send(ctx.api, alice, conv, 'while you are here');
    await barrier();
    expect(await rowsFor(bob.id)).toHaveLength(0);
    expect(hooksFor(bob.id)).toHaveLength(0);

    await presence('disconnect', bob.id);
    const later = await send(ctx.api, alice, conv, 'after you left');
    await eventually(async () => expect(hooksFor(bob.id).map((h) => h.body.messageId)).toEqual([later.id]));
  });

  it('a receiver who turned notifications off gets none', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expect((await ctx.api.put('/notifications/preferences', bob.token, { enabled: false, mutedConversationIds: [] })).status).toBe(200);
    await send(ctx.api, alice, conv, 'hello?');
    await barrier();
    expect(await rowsFor(bob.id)).toHaveLength(0);
    expect(hooksFor(bob.id)).toHaveLength(0);
  });

  it('a muted conversation makes none, while the receiver’s other conversations still notify', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const carol = await knownUser(ctx.api, 'carol');
    const other = (await ctx.api.get(`/conversations/with/${bob.username}`, carol.token)).body.data.id as string;
    const put = await ctx.api.put('/notifications/preferences', bob.token, { enabled: true, mutedConversationIds: [conv] });
    expect(put.body.data).toEqual({ enabled: true, mutedConversationIds: [conv] });
    await send(ctx.api, alice, conv, 'muted');
    const unmuted = await send(ctx.api, carol, other, 'not muted');
    // carol's message came after alice's: once it is in, alice's was decided.
    await eventually(async () => expect(hooksFor(bob.id).map((h) => h.body.messageId)).toEqual([unmuted.id]));
    expect((await rowsFor(bob.id)).map((r) => r.conversation_id)).toEqual([other]);
  });

  it('a block standing when the event is handled makes none, whichever way it stands', async () => {
    const prefix = ctx.stack.config.NATS_PREFIX;
    for (const blocker of ['receiver', 'sender'] as const) {
      const { alice, bob, conv } = await conversationPair(ctx.api);
      const [who, whom] = blocker === 'receiver' ? [bob, alice] : [alice, bob];
      expect((await ctx.api.post('/blocks', who.token, { username: whom.username })).status).toBe(201);
      // Sends are refused once a block stands, so publish the event of one that raced the block.
      const message = { id: crypto.randomUUID(), conversationId: conv, senderId: alice.id, content: 'raced the block', clientMessageId: null, createdAt: new Date().toISOString(), readAt: null, editedAt: null, deletedAt: null, reactions: [] };
      const event: MessageCreatedEvent = { eventId: crypto.randomUUID(), conversationId: conv, version: 1, lastMessage: message, unread: [{ userId: alice.id, count: 0 }, { userId: bob.id, count: 1 }], message };
      await jetstream(nc).publish(subjects(prefix).events.messageCreated, JSON.stringify(event));
      await barrier();
      expect(await rowsFor(bob.id)).toHaveLength(0);
    }
  });

  it('a redelivered event stores no second notification and posts nothing again', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const message = await send(ctx.api, alice, conv, 'only once');
    await eventually(async () => expect(hooksFor(bob.id)).toHaveLength(1));
    const prefix = ctx.stack.config.NATS_PREFIX;
    const jsm = await jetstreamManager(nc);
    const stored = await jsm.streams.getMessage(eventStreamName(prefix), { last_by_subj: `${subjects(prefix).events.messageCreated}.${message.id}` });
    expect(stored!.json<MessageCreatedEvent>().message.id).toBe(message.id);
    // The same JSON again, as a new stream message (no Nats-Msg-Id, so no dedupe by JetStream).
    await jetstream(nc).publish(subjects(prefix).events.messageCreated, stored!.data);
    await barrier();
    expect(await rowsFor(bob.id)).toHaveLength(1);
    expect(hooksFor(bob.id)).toHaveLength(1);
  });
});

describe('webhook retries', () => {
  it('a webhook answering 500 is retried with backoff until it answers 2xx, every attempt recorded under one Idempotency-Key', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    hook.answers.set(bob.id, (n) => (n <= 3 ? 500 : 200));
    await send(ctx.api, alice, conv, 'try again');
    const [row] = await eventually(async () => {
      const rows = await rowsFor(bob.id);
      expect(rows[0]?.delivered_at).toBeInstanceOf(Date);
      return rows;
    }, 10_000);
    const got = hooksFor(bob.id);
    expect(got.map((h) => h.status)).toEqual([500, 500, 500, 200]);
    expect(new Set(got.map((h) => h.headers['idempotency-key']))).toEqual(new Set([row.id]));
    expect(got.every((h) => JSON.stringify(h.body) === JSON.stringify(got[0]!.body))).toBe(true);
    expect(row).toMatchObject({ attempts: 4, gave_up_at: null });
    const attempts = await attemptsOf(db, row.id);
    expect(attempts.map((a) => [a.attempt, a.status])).toEqual([[1, 500], [2, 500], [3, 500], [4, 200]]);
    // Backoff is capped at NOTIFICATION_RETRY_MAX_MS (200 ms) plus the fallback poll's slack.
    for (let i = 1; i < attempts.length; i++) expect(attempts[i].at - attempts[i - 1].at).toBeLessThan(1500);
  });

  it('while the webhook fails for about a second, every notification is still delivered at least once', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const failUntil = Date.now() + 1000;
    hook.answers.set(bob.id, () => (Date.now() < failUntil ? 503 : 200));
    const sent = [];
    for (let i = 0; i < 5; i++) sent.push((await send(ctx.api, alice, conv, `message ${i}`)).id);
    const rows = await eventually(async () => {
      const r = await rowsFor(bob.id);
      expect(r).toHaveLength(5);
      expect(r.every((n) => n.delivered_at !== null)).toBe(true);
      return r;
    }, 10_000);
    expect(rows.map((r) => r.message_id).sort()).toEqual([...sent].sort());
    const delivered = hooksFor(bob.id).filter((h) => h.status === 200).map((h) => h.body.notificationId);
    expect(new Set(delivered)).toEqual(new Set(rows.map((r) => r.id)));
    expect(hooksFor(bob.id).some((h) => h.status === 503)).toBe(true);
  });
});
