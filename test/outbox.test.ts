import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadLetterStreamName } from '@chat/platform';
import { conversationPair, eventually } from './helpers/client';
import { useStack } from './helpers/stack';
import { streamEvents as streamEventsOf } from './helpers/streams';

const ctx = useStack();
let nc: NatsConnection;
let jsm: JetStreamManager;
let db: pg.Pool;
beforeAll(async () => {
  nc = await connect({ servers: ctx.stack.config.NATS_URL });
  jsm = await jetstreamManager(nc);
  db = new pg.Pool({ connectionString: ctx.stack.config.DATABASE_URL, max: 4 });
});
afterAll(async () => {
  await db?.end();
  await nc?.close();
});

const prefix = () => ctx.stack.config.NATS_PREFIX;

const streamEvents = (type: string) => streamEventsOf<{ eventId: string; [k: string]: unknown }>(ctx.stack.config.NATS_URL, prefix(), type);

describe('the transactional outbox', () => {
  it('publishes conversation, block and message events from every service that emits them', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'hello' });
    await ctx.api.post('/blocks', bob.token, { username: alice.username });
    await ctx.api.del(`/blocks/${alice.username}`, bob.token);
    await eventually(async () => {
      expect((await streamEvents('conversation.created')).filter((e) => e.conversationId === conv)).toHaveLength(1);
      expect((await streamEvents('message.created.*')).filter((e) => e.conversationId === conv)).toHaveLength(1);
      expect((await streamEvents('block.created')).filter((e) => e.blockerId === bob.id && e.blockedId === alice.id)).toHaveLength(1);
      expect((await streamEvents('block.removed')).filter((e) => e.blockerId === bob.id && e.blockedId === alice.id)).toHaveLength(1);
    });
  });

  it('publishes a row whose transaction commits after a later one (a gap in the ids is never skipped)', async () => {
    const { alice } = await conversationPair(ctx.api);
    const late = await db.connect();
    const lateId = crypto.randomUUID();
    try {
      await late.query('BEGIN');
      await late.query("INSERT INTO blocks.outbox (event_id, subject, payload) VALUES ($1, 'block.removed', $2)", [
        lateId,
        JSON.stringify({ eventId: lateId, blockerId: 'x', blockedId: 'y', removedAt: new Date().toISOString() }),
      ]);
      // A later id commits and is published while the earlier one is still open.
      const later = await ctx.api.post('/blocks', alice.token, { username: (await conversationPair(ctx.api)).bob.username });
      expect(later.status).toBe(201);
      await eventually(async () => expect((await streamEvents('block.created')).some((e) => e.blockerId === alice.id)).toBe(true));
      await late.query('COMMIT');
    } finally {
      late.release();
    }
    await eventually(async () => expect((await streamEvents('block.removed')).filter((e) => e.eventId === lateId)).toHaveLength(1), 5000);
  });

  it('republishing a row after a crash between publish and mark delivers it once (Nats-Msg-Id)', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const sent = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'once' });
    const byMessage = async () => (await streamEvents('message.created.*')).filter((e) => (e.message as { id: string }).id === sent.body.data.id);
    await eventually(async () => expect(await byMessage()).toHaveLength(1));
    const { rowCount } = await db.query("UPDATE messages.outbox SET published_at = NULL WHERE payload->'message'->>'id' = $1", [sent.body.data.id]);
    expect(rowCount).toBe(1);
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'wakes the relay' });
    await eventually(async () => {
      const { rows } = await db.query("SELECT published_at FROM messages.outbox WHERE payload->'message'->>'id' = $1", [sent.body.data.id]);
      expect(rows[0].published_at).not.toBeNull();
    });
    expect(await byMessage()).toHaveLength(1);
  });
});

describe('the relay pipelines a batch', () => {
  /** Rows written straight into the conversations service's outbox (its relay publishes them); their event ids, in id order. */
  async function writeRows(subjects: string[]): Promise<string[]> {
    const ids = subjects.map(() => crypto.randomUUID());
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      for (const [i, subject] of subjects.entries()) {
        await client.query('INSERT INTO conversations.outbox (event_id, subject, payload) VALUES ($1, $2, $3)', [ids[i], subject, JSON.stringify({ eventId: ids[i], i })]);
      }
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    return ids;
  }
  const unpublished = async (ids: string[]) =>
    (await db.query('SELECT event_id FROM conversations.outbox WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL ORDER BY id', [ids])).rows.map((r) => r.event_id as string);

  it('publishes many rows at once, each once, and the stream holds them in id order', async () => {
    const ids = await writeRows(Array.from({ length: 150 }, () => 'batch.order'));
    await eventually(async () => expect(await unpublished(ids)).toEqual([]), 5000);
    const inStream = (await streamEvents('batch.order')).map((e) => e.eventId);
    expect(inStream).toEqual(ids);
  });

  it('a publish that fails marks only the rows before it; the ones after are published again and stored once', async () => {
    // A subject with a space is refused by the client: the middle row cannot publish until it is fixed.
    const [a, b, c] = await writeRows(['batch.partial', 'batch.partial broken', 'batch.partial']);
    await eventually(async () => {
      expect(await unpublished([a!, b!, c!])).toEqual([b, c]);
      // c was published (its ack came) but is not marked: it comes after the failure.
      expect((await streamEvents('batch.partial')).map((e) => e.eventId)).toEqual([a, c]);
    }, 5000);
    await db.query("UPDATE conversations.outbox SET subject = 'batch.partial' WHERE event_id = $1", [b]);
    await eventually(async () => expect(await unpublished([a!, b!, c!])).toEqual([]), 5000);
    // c went out again with the same Nats-Msg-Id: JetStream dropped the duplicate.
    expect((await streamEvents('batch.partial')).map((e) => e.eventId)).toEqual([a, c, b]);
  });
});

describe('consumers', () => {
  it('park a poison event on the dead-letter stream and go on with the events after it', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    await jetstream(nc).publish(`${prefix()}.events.message.created`, JSON.stringify({ not: 'an event' }));
    await jetstream(nc).publish(`${prefix()}.events.message.read`, 'not json at all');
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'after the poison' });
    await eventually(async () => {
      const view = (await ctx.api.get(`/conversations/${conv}`, alice.token)).body.data;
      expect(view.lastMessage?.content).toBe('after the poison');
    });
    await eventually(async () => {
      const dead = await jsm.streams.info(deadLetterStreamName(prefix()));
      expect(dead.state.messages).toBeGreaterThanOrEqual(2);
    });
    const dead = await jsm.streams.info(deadLetterStreamName(prefix()));
    const parked = await Promise.all(
      Array.from({ length: dead.state.messages }, (_, i) => jsm.streams.getMessage(deadLetterStreamName(prefix()), { seq: i + 1 })),
    );
    const projection = parked.filter((m) => m?.subject === `${prefix()}.dead.conversations-projection`);
    expect(projection).toHaveLength(2);
    for (const m of projection) expect(m?.header.get('Chat-Original-Subject')).toMatch(/\.events\.message\.(created|read)$/);
  });
});
