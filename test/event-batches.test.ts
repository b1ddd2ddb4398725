import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventStreamName, subjects, type MessageCreatedEvent } from '@chat/contracts';
import { createLogger, deadLetterStreamName, type RunningService } from '@chat/platform';
import { startConversationsService } from '@chat/conversations';
import { startNotificationsService } from '@chat/notifications';
import { conversationPair, eventually, type TestUser } from './helpers/client';
import { openNotificationsDb, sendMessage } from './helpers/notifications';
import { useStack } from './helpers/stack';

/**
 * The consumers work per batch: a backlog (the consuming service was down
 * while events piled up) is decided with a bounded number of statements and
 * bus requests, and ends in exactly the state event-by-event handling would.
 * Every count here comes from the real services' own metrics registries.
 */
const ctx = useStack();
let nc: NatsConnection;
let jsm: JetStreamManager;
let db: pg.Client;
beforeAll(async () => {
  nc = await connect({ servers: ctx.stack.config.NATS_URL });
  jsm = await jetstreamManager(nc);
  db = await openNotificationsDb(ctx.stack);
});
afterAll(async () => {
  await db?.end();
  await nc?.close();
});

const prefix = () => ctx.stack.config.NATS_PREFIX;
const events = () => subjects(prefix()).events;

/** Until the durable has nothing left to deliver and nothing unacked. */
async function drained(durable: string): Promise<void> {
  await eventually(async () => {
    const info = await jsm.consumers.info(eventStreamName(prefix()), durable);
    expect(info.num_pending + info.num_ack_pending).toBe(0);
  }, 20_000, 100);
}

/** Samples of a histogram's _count in a service's registry, summed over series matching `labels`. */
async function timesObserved(service: RunningService, metric: 'natsHandler' | 'dbQuery', labels: Record<string, string>): Promise<number> {
  const { values } = await service.metrics[metric].get();
  return values
    .filter((v) => v.metricName?.endsWith('_count') && Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** The bodies parked for `durable` on the dead-letter stream. */
async function deadLettered(durable: string): Promise<string[]> {
  const info = await jsm.streams.info(deadLetterStreamName(prefix())).catch(() => undefined);
  if (!info || info.state.messages === 0) return [];
  const out: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(deadLetterStreamName(prefix()), { seq }).catch(() => null);
    if (m?.subject === `${prefix()}.dead.${durable}`) out.push(new TextDecoder().decode(m.data));
  }
  return out;
}

/** A small deterministic generator, so a failing run can be replayed. */
const random = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

interface Expected {
  conv: string;
  alice: TestUser;
  bob: TestUser;
  lastMessageId: string;
  unread: Map<string, number>;
}

async function restartConversations(): Promise<RunningService> {
  ctx.stack.services.conversations = await startConversationsService(ctx.stack.config, createLogger('conversations', ctx.stack.config.LOG_LEVEL));
  return ctx.stack.services.conversations;
}

describe('the conversations projection, per batch', () => {
  it('a backlog of sends and reads in many conversations, with poison events among them, ends in exact unread counts and last messages, in few statements', async () => {
    const api = ctx.api;
    const convs: Expected[] = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const { alice, bob, conv } = await conversationPair(api);
        // The first send teaches the messages service the participants (it asks the conversations service once).
        const first = await sendMessage(api, alice, conv, 'first');
        return { conv, alice, bob, lastMessageId: first.id as string, unread: new Map([[alice.id, 0], [bob.id, 1]]) };
      }),
    );
    await drained('conversations-projection');
    // Its own outbox empty too, so the only UPDATEs counted below are the projection's.
    await eventually(async () => expect((await db.query('SELECT 1 FROM conversations.outbox WHERE published_at IS NULL')).rows).toHaveLength(0), 10_000);
    await ctx.stack.services.conversations.stop();

    const poison = ['not json at all', JSON.stringify({ not: 'an event' })];
    await Promise.all(
      convs.map(async (c, k) => {
        const next = random(k + 1);
        for (let step = 0; step < 25; step++) {
          if (k === 5 && step === 12) {
            const js = jetstream(nc);
            await js.publish(events().messageRead, poison[0]!);
            await js.publish(events().messageCreated, poison[1]!);
          }
          const [actor, other] = next() < 0.5 ? [c.alice, c.bob] : [c.bob, c.alice];
          if (next() < 0.75) {
            const sent = await sendMessage(api, actor, c.conv, `m${k}-${step}`);
            c.lastMessageId = sent.id;
            c.unread.set(other.id, c.unread.get(other.id)! + 1);
          } else {
            const read = await api.post(`/conversations/${c.conv}/read`, actor.token, {});
            expect(read.status, JSON.stringify(read.body)).toBe(200);
            c.unread.set(actor.id, 0);
          }
        }
      }),
    );
    const pending = (await jsm.consumers.info(eventStreamName(prefix()), 'conversations-projection')).num_pending;
    expect(pending).toBeGreaterThan(200);

    const service = await restartConversations();
    await drained('conversations-projection');

    for (const c of convs) {
      for (const user of [c.alice, c.bob]) {
        const view = (await api.get(`/conversations/${c.conv}`, user.token)).body.data;
        expect(view.lastMessage.id, `${c.conv} for ${user.username}`).toBe(c.lastMessageId);
        expect(view.unreadCount, `${c.conv} unread of ${user.username}`).toBe(c.unread.get(user.id));
      }
    }
    // The list (the cache invalidated per batch) agrees.
    const listed = (await api.get('/conversations?limit=10', convs[0]!.bob.token)).body.data;
    expect(listed[0]).toMatchObject({ id: convs[0]!.conv, unreadCount: convs[0]!.unread.get(convs[0]!.bob.id) });

    // One statement per batch (WITH … FOR UPDATE … UPDATE … FROM unnest: the service's only WITH while nothing else changes), not one per event.
    const updates = await timesObserved(service, 'dbQuery', { statement: 'with' });
    expect(updates).toBeGreaterThan(0);
    // Unbatched it is one per event (the test fails so); batches that fill only partly on a loaded machine still stay far below.
    expect(updates, `statements for ${pending} events`).toBeLessThanOrEqual(Math.ceil(pending / 5));
    // Only the two poison events were parked; the valid events of their batch were applied (above).
    expect((await deadLettered('conversations-projection')).sort()).toEqual([...poison].sort());
  });

  it('an event carrying a value PostgreSQL refuses is dead-lettered alone; the rest of its batch is applied', async () => {
    const api = ctx.api;
    const pairs = await Promise.all(Array.from({ length: 3 }, () => conversationPair(api)));
    for (const p of pairs) await sendMessage(api, p.alice, p.conv, 'first');
    await drained('conversations-projection');
    const before = await deadLettered('conversations-projection');
    await ctx.stack.services.conversations.stop();

    const last: string[] = [];
    for (const [i, p] of pairs.entries()) {
      for (let n = 0; n < 3; n++) last[i] = (await sendMessage(api, p.bob, p.conv, `after ${n}`)).id;
      if (i !== 1) continue;
      // Both pass the event schema, and PostgreSQL refuses both: a conversation id that is no uuid, a time that is no time.
      const message = { id: crypto.randomUUID(), conversationId: p.conv, senderId: p.alice.id, content: 'x', clientMessageId: null, createdAt: 'not a time', readAt: null, editedAt: null, deletedAt: null, reactions: [] };
      const unread = [{ userId: p.alice.id, count: 0 }, { userId: p.bob.id, count: 0 }];
      const badTime: MessageCreatedEvent = { eventId: crypto.randomUUID(), conversationId: p.conv, version: 1, lastMessage: message, message, unread };
      const badId: MessageCreatedEvent = { ...badTime, eventId: crypto.randomUUID(), conversationId: 'not-a-uuid', message: { ...message, createdAt: new Date().toISOString() }, lastMessage: null };
      await jetstream(nc).publish(events().messageCreated, JSON.stringify(badTime));
      await jetstream(nc).publish(events().messageCreated, JSON.stringify(badId));
    }
    await restartConversations();
    await drained('conversations-projection');

    for (const [i, p] of pairs.entries()) {
      const view = (await api.get(`/conversations/${p.conv}`, p.alice.token)).body.data;
      expect(view.lastMessage.id).toBe(last[i]);
      expect(view.unreadCount).toBe(3);
    }
    const parked = (await deadLettered('conversations-projection')).slice(before.length).map((d) => JSON.parse(d) as MessageCreatedEvent);
    expect(parked.map((e) => e.conversationId).sort()).toEqual(['not-a-uuid', pairs[1]!.conv].sort());
  });
});

describe('the notifications consumer, per batch', () => {
  it('decides a backlog for many receivers with a handful of bus requests, and every SPEC condition still holds for each event', async () => {
    const api = ctx.api;
    const s = subjects(prefix());
    // Ten receivers per kind: notifications off, conversation muted, blocked after the send, online, and two kinds notified.
    const kinds = ['disabled', 'muted', 'blocked', 'online', 'notified', 'notified'] as const;
    const pairs = await Promise.all(Array.from({ length: 60 }, async (_, i) => ({ ...(await conversationPair(api)), kind: kinds[i % kinds.length]! })));
    for (const p of pairs) {
      if (p.kind === 'disabled') expect((await api.put('/notifications/preferences', p.bob.token, { enabled: false, mutedConversationIds: [] })).status).toBe(200);
      if (p.kind === 'muted') expect((await api.put('/notifications/preferences', p.bob.token, { enabled: true, mutedConversationIds: [p.conv] })).status).toBe(200);
    }
    await drained('notifications');
    await ctx.stack.services.notifications.stop();

    const sent = new Map<string, string[]>();
    await Promise.all(
      pairs.map(async (p) => {
        const ids = [];
        for (let n = 0; n < 2; n++) ids.push((await sendMessage(api, p.alice, p.conv, `hello ${n}`)).id as string);
        sent.set(p.bob.id, ids);
      }),
    );
    for (const p of pairs) {
      if (p.kind === 'blocked') expect((await api.post('/blocks', p.bob.token, { username: p.alice.username })).status).toBe(201);
      if (p.kind === 'online') expect((await nc.request(s.presence.connect, JSON.stringify({ userId: p.bob.id, connectionId: 'c1' }), { timeout: 3000 })).json<any>().ok).toBe(true);
    }
    // One more message to a notified receiver, then its event once more (as a new stream message): no second notification.
    const repeated = pairs.find((p) => p.kind === 'notified')!;
    const extra = (await sendMessage(api, repeated.alice, repeated.conv, 'said twice')).id as string;
    sent.get(repeated.bob.id)!.push(extra);
    const again = await eventually(async () => {
      const m = await jsm.streams.getMessage(eventStreamName(prefix()), { last_by_subj: `${s.events.messageCreated}.${extra}` });
      expect(m!.json<MessageCreatedEvent>().message.id).toBe(extra);
      return m!;
    });
    await jetstream(nc).publish(s.events.messageCreated, again.data);

    const { blocks, presence, conversations } = ctx.stack.services;
    const count = () =>
      Promise.all([
        timesObserved(blocks, 'natsHandler', { endpoint: 'status-pairs' }),
        timesObserved(blocks, 'natsHandler', { endpoint: 'status' }),
        timesObserved(presence, 'natsHandler', { endpoint: 'query' }),
        timesObserved(conversations, 'natsHandler', { endpoint: 'get-users' }),
      ]);
    const before = await count();
    const restarted = await startNotificationsService(ctx.stack.config, createLogger('notifications', ctx.stack.config.LOG_LEVEL));
    ctx.stack.services.notifications = restarted;
    await drained('notifications');
    const [statusPairs, status, presenceQueries, getUsers] = (await count()).map((n, i) => n - before[i]!);

    // 122 events; one event at a time would make about 80 requests of each kind.
    expect(statusPairs).toBeGreaterThanOrEqual(1);
    expect(statusPairs).toBeLessThanOrEqual(8);
    expect(presenceQueries).toBeGreaterThanOrEqual(1);
    expect(presenceQueries).toBeLessThanOrEqual(8);
    expect(getUsers).toBeGreaterThanOrEqual(1);
    expect(getUsers).toBeLessThanOrEqual(8);
    expect(status).toBe(0);

    // Each receiver got exactly what SPEC section 7 allows, once per message.
    const { rows } = await db.query<{ receiver_id: string; message_id: string; sender_id: string }>(
      'SELECT receiver_id, message_id, sender_id FROM notifications WHERE receiver_id = ANY($1::text[])',
      [pairs.map((p) => p.bob.id)],
    );
    for (const p of pairs) {
      const mine = rows.filter((r) => r.receiver_id === p.bob.id);
      if (p.kind === 'notified') {
        expect(mine.map((r) => r.message_id).sort(), `${p.kind} receiver`).toEqual([...sent.get(p.bob.id)!].sort());
        expect(mine.every((r) => r.sender_id === p.alice.id)).toBe(true);
      } else {
        expect(mine, `${p.kind} receiver`).toEqual([]);
      }
    }
    // The decision metric counts every event once, by what was decided.
    const decisions = Object.fromEntries(
      (await restarted.metrics.registry.getSingleMetric('chat_notifications_decisions_total')!.get()).values.map((v) => [v.labels.decision, v.value]),
    );
    expect(decisions).toEqual({ disabled: 20, muted: 20, blocked: 20, online: 20, stored: 41, duplicate: 1 });
  });
});
