import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { subjects } from '@chat/contracts';
import { createLogger, type RunningService } from '@chat/platform';
import { startMessagesService } from '@chat/messages';
import { conversationPair, eventually } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect } from './helpers/ws';

// A short timeout, so the deadline cases take a second, and room for only two waiting sends.
const ctx = useStack({ REQUEST_TIMEOUT_MS: 1500, SEND_MAX_IN_FLIGHT: 2 });
let db: pg.Pool;
let nc: NatsConnection;
let restarted: RunningService | undefined;
beforeAll(async () => {
  db = new pg.Pool({ connectionString: ctx.stack.config.DATABASE_URL, max: 4 });
  nc = await natsConnect({ servers: ctx.stack.config.NATS_URL });
});
afterAll(async () => {
  await restarted?.stop();
  await nc?.drain();
  await db?.end();
});

/** Holds the messages service's row lock on a conversation, as a long send or read would, until released. */
async function holdConversation(conv: string) {
  const client = await db.connect();
  await client.query('BEGIN');
  await client.query('SELECT 1 FROM messages.conversations WHERE id = $1 FOR UPDATE', [conv]);
  return async () => {
    await client.query('ROLLBACK');
    client.release();
  };
}
const stored = async (conv: string) =>
  Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM messages.messages WHERE conversation_id = $1', [conv])).rows[0]!.n);

describe('a send that outlives its deadline', () => {
  it('answers 503 and stores nothing, even when the lock it waited for is released later; the retry with its clientMessageId sends once', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    // The first send of a conversation teaches the messages service its participants.
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'first' })).status).toBe(201);
    const release = await holdConversation(conv);
    let res;
    try {
      res = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'late', clientMessageId: 'late-1' });
    } finally {
      // The send is still waiting inside PostgreSQL; released now, past its deadline, it must roll back.
      await release();
    }
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('SERVICE_UNAVAILABLE');
    await new Promise((r) => setTimeout(r, 300));
    expect(await stored(conv)).toBe(1);
    const { rows } = await db.query("SELECT 1 FROM messages.outbox WHERE payload->'message'->>'clientMessageId' = 'late-1'");
    expect(rows).toHaveLength(0);

    const retry = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'late', clientMessageId: 'late-1' });
    expect(retry.status).toBe(201);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'late', clientMessageId: 'late-1' })).status).toBe(200);
    expect(await stored(conv)).toBe(2);
  });

  it('a send already past its deadline when it reaches the messages service is refused without touching PostgreSQL', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const reply = await nc.request(
      subjects(ctx.stack.config.NATS_PREFIX).messages.send,
      JSON.stringify({ actor: alice.id, conversationId: conv, content: 'too late', deadline: Date.now() - 1 }),
      { timeout: 3000 },
    );
    expect(reply.json()).toMatchObject({ ok: false, error: { code: 'SERVICE_UNAVAILABLE' } });
    expect(await stored(conv)).toBe(0);
  });
});

describe('group commit', () => {
  /** count and sum of chat_send_batch_size in the messages service's registry. */
  async function batches(): Promise<{ count: number; sum: number }> {
    const { values } = await (ctx.stack.services.messages.metrics.registry.getSingleMetric('chat_send_batch_size') as unknown as {
      get(): Promise<{ values: Array<{ metricName?: string; value: number }> }>;
    }).get();
    const pick = (suffix: string) => values.find((v) => v.metricName === `chat_send_batch_size_${suffix}`)?.value ?? 0;
    return { count: pick('count'), sum: pick('sum') };
  }

  it('concurrent sends share transactions, and every guarantee holds: each stored once, gap-free seqs, exact unread counts', async () => {
    const pairs = await Promise.all(Array.from({ length: 6 }, () => conversationPair(ctx.api)));
    for (const p of pairs) expect((await ctx.api.post(`/conversations/${p.conv}/messages`, p.alice.token, { content: 'first' })).status).toBe(201);
    const before = await batches();
    const send = subjects(ctx.stack.config.NATS_PREFIX).messages.send;
    // Straight to the messages service (this stack's gateway admits two sends at a time): 60 at once, some of them repeats.
    const bodies = Array.from({ length: 50 }, (_, i) => {
      const p = pairs[i % pairs.length]!;
      const from = i % 4 === 0 ? p.bob : p.alice;
      return { actor: from.id, conversationId: p.conv, content: `m${i}`, clientMessageId: `g-${i}` };
    });
    const replies = await Promise.all(
      [...bodies, ...bodies.slice(0, 10)].map((body) =>
        nc.request(send, JSON.stringify(body), { timeout: 5000 }).then((m) => m.json<{ ok: boolean; data: { created: boolean } }>()),
      ),
    );
    expect(replies.every((r) => r.ok)).toBe(true);
    const after = await batches();
    expect(after.sum - before.sum).toBeGreaterThanOrEqual(60);
    expect(after.count - before.count, 'transactions for 60 sends').toBeLessThan(40);

    for (const p of pairs) {
      const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM messages.messages WHERE conversation_id = $1', [p.conv]);
      const { rows: unread } = await db.query<{ user_id: string; unread_count: number }>(
        'SELECT user_id, unread_count FROM messages.participants WHERE conversation_id = $1',
        [p.conv],
      );
      const { rows: fromBob } = await db.query<{ n: string }>('SELECT count(*) AS n FROM messages.messages WHERE conversation_id = $1 AND sender_id = $2', [p.conv, p.bob.id]);
      const total = Number(rows[0]!.n);
      expect(unread.find((u) => u.user_id === p.bob.id)!.unread_count).toBe(total - Number(fromBob[0]!.n));
      for (const u of [p.alice, p.bob]) {
        const { rows: seqs } = await db.query<{ seq: string }>('SELECT seq FROM messages.user_events WHERE user_id = $1 ORDER BY seq', [u.id]);
        expect(seqs.map((r) => Number(r.seq))).toEqual(seqs.map((_, i) => i + 1));
      }
    }
    // Ten of the 60 repeat another (same sender, conversation, clientMessageId and content): 50 new messages, 10 originals returned.
    const created = replies.filter((r) => r.data.created).length;
    expect(created).toBe(50);
  });
});

describe('load shedding at the gateway', () => {
  it('past SEND_MAX_IN_FLIGHT waiting sends, REST and WebSocket sends are refused at once with a retry hint; the admitted ones complete', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'warm' })).status).toBe(201);
    const { client: ws } = await connect(ctx.stack.gateway.port, { token: bob.token });
    const release = await holdConversation(conv);
    let waiting;
    try {
      waiting = [1, 2].map((i) => ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `w${i}` }));
      // Both are admitted and waiting on the conversation's lock inside PostgreSQL.
      await eventually(async () => {
        const { rows } = await db.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        expect(rows.length).toBeGreaterThanOrEqual(2);
      }, 1000);

      const started = performance.now();
      const shed = await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'one too many' });
      expect(performance.now() - started).toBeLessThan(500);
      expect(shed.status).toBe(503);
      expect(shed.body.error.code).toBe('SERVICE_UNAVAILABLE');
      expect(shed.headers.get('retry-after')).toBe('1');

      const frame = await ws.request('message.send', { conversationId: conv, content: 'over the socket' });
      expect(frame).toMatchObject({ type: 'error', payload: { code: 'SERVICE_UNAVAILABLE', retryAfterMs: 1000 } });
    } finally {
      await release();
      await ws.close();
    }
    for (const r of await Promise.all(waiting)) expect(r.status).toBe(201);
    expect(await stored(conv)).toBe(3);
    const metrics = await (await fetch(`${ctx.stack.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^chat_sends_shed_total\{[^}]*\} 2$/m);
  });
});

describe('the unread badge after a send', () => {
  it('GET /unread-count asked the moment unread.updated arrives answers that total, never the cached one from before (the invalidation is not awaited, only ordered)', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: ws } = await connect(ctx.stack.gateway.port, { token: bob.token });
    try {
      for (let i = 1; i <= 5; i++) {
        // Warm the cache with the total before the send.
        expect((await ctx.api.get('/conversations/unread-count', bob.token)).body.data.total).toBe(i - 1);
        expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `badge ${i}` })).status).toBe(201);
        const frame = await ws.next((f) => f.type === 'unread.updated' && f.payload.total === i);
        expect((await ctx.api.get('/conversations/unread-count', bob.token)).body.data).toMatchObject({ total: frame.payload.total });
      }
    } finally {
      await ws.close();
    }
  });
});

describe('participants learnt ahead of the first send', () => {
  it('a new conversation reaches the messages service through its conversation.created event, before any send', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await eventually(async () => {
      const { rows } = await db.query<{ user_a: string; user_b: string }>('SELECT user_a, user_b FROM messages.conversations WHERE id = $1', [conv]);
      expect(rows.map((r) => [r.user_a, r.user_b].sort())).toEqual([[alice.id, bob.id].sort()]);
      const { rows: parts } = await db.query('SELECT user_id FROM messages.participants WHERE conversation_id = $1', [conv]);
      expect(parts).toHaveLength(2);
    }, 5000);
  });
});

describe('the messages service replica of blocks', () => {
  const applyBlock = async (change: { blockerId: string; blockedId: string; blocked: boolean; version: number }) =>
    (await nc.request(subjects(ctx.stack.config.NATS_PREFIX).messages.applyBlock, JSON.stringify(change), { timeout: 3000 })).json<{ ok: boolean }>();

  it('keeps the newest version of a pair: an older state arriving late changes nothing', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expect(await applyBlock({ blockerId: bob.id, blockedId: alice.id, blocked: true, version: 5 })).toMatchObject({ ok: true, data: { applied: true } });
    expect(await applyBlock({ blockerId: bob.id, blockedId: alice.id, blocked: false, version: 4 })).toMatchObject({ ok: true, data: { applied: false } });
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'blocked?' })).status).toBe(403);
    expect(await applyBlock({ blockerId: bob.id, blockedId: alice.id, blocked: false, version: 6 })).toMatchObject({ ok: true, data: { applied: true } });
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'not blocked' })).status).toBe(201);
  });

  it('a block made while the messages service is away answers 503 but stands; the block event enforces it when messages returns; a retry answers 409', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'before' })).status).toBe(201);
    await ctx.stack.services.messages.stop();
    const blocked = await ctx.api.post('/blocks', bob.token, { username: alice.username });
    expect(blocked.status).toBe(503);
    expect((await ctx.api.get('/blocks', bob.token)).body.data.map((b: { user: { id: string } }) => b.user.id)).toEqual([alice.id]);

    restarted = await startMessagesService(ctx.stack.config, createLogger('messages', 'silent'));
    await eventually(async () => expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'after' })).status).toBe(403), 10_000);
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(409);
  });

  it('is filled from the blocks service the first time the messages service starts on a database', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'before' })).status).toBe(201);
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    // As if the replica were new: its rows and its "filled" mark gone, and no event left to replay.
    await restarted!.stop();
    await db.query('DELETE FROM messages.block_replica; DELETE FROM messages.replica_sync');
    const stream = `${ctx.stack.config.NATS_PREFIX.toUpperCase()}_EVENTS`;
    const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(nc);
    await jsm.streams.purge(stream, { filter: `${ctx.stack.config.NATS_PREFIX}.events.block.>` });

    restarted = await startMessagesService(ctx.stack.config, createLogger('messages', 'silent'));
    expect((await db.query('SELECT 1 FROM messages.replica_sync')).rows).toHaveLength(1);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'after' })).status).toBe(403);
  });
});
