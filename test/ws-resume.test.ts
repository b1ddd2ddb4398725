import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { knownUser, type TestUser, conversationPair } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, type Frame, type WsClient } from './helpers/ws';

// Sends here exceed the per-minute send limit on purpose: this file is about delivery, not limits.
const ctx = useStack({ RATE_LIMIT_SEND_PER_MIN: 100_000, RATE_LIMIT_WS_FRAMES_PER_MIN: 100_000 });
const port = () => ctx.stack.gateway.port;

const open: WsClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});
async function socket(user: TestUser, since?: number) {
  const r = await connect(port(), { token: user.token, ...(since === undefined ? {} : { since }) });
  open.push(r.client);
  return r;
}

async function sendMany(from: TestUser, conv: string, n: number, label = 'm', onSent?: () => void): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await ctx.api.post(`/conversations/${conv}/messages`, from.token, { content: `${label} ${i}` });
    expect(res.status).toBe(201);
    ids.push(res.body.data.id);
    onSent?.();
  }
  return ids;
}
/** Bob has seen the first message (seq 1, 2) and goes offline: returns the seq he saw. */
async function bobSawOneAndLeft(alice: TestUser, bob: TestUser, conv: string): Promise<number> {
  const { client } = await socket(bob);
  await sendMany(alice, conv, 1, 'first');
  const last = (await client.nextOf('unread.updated')).seq!;
  await client.close();
  return last;
}
function expectContiguous(frames: Frame[], from: number) {
  expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => from + i));
}

describe('resume with since', () => {
  it('replays exactly the durable events after since, in seq order, then hello with replayed and the last seq', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const n = await bobSawOneAndLeft(alice, bob, conv);
    expect(n).toBe(2);
    const ids = await sendMany(alice, conv, 50);

    const { client, hello } = await socket(bob, n);
    const before = client.frames.slice(0, client.frames.indexOf(hello));
    expect(before).toHaveLength(100);
    expectContiguous(before, n + 1);
    expect(before.map((f) => f.type)).toEqual(ids.flatMap(() => ['message.new', 'unread.updated']));
    expect(before.filter((f) => f.type === 'message.new').map((f) => f.payload.message.id)).toEqual(ids);
    expect(before.filter((f) => f.type === 'unread.updated').map((f) => f.payload)).toEqual(
      ids.map((_, i) => ({ total: i + 2, conversationId: conv, conversationUnread: i + 2 })),
    );
    expect(hello.payload).toEqual({ userId: bob.id, seq: 102, replayed: 100, resync: false, heartbeatMs: 25000, typingTimeoutMs: 5000 });

    // Nothing comes twice afterwards, and the next live event follows on.
    await sendMany(alice, conv, 1, 'live');
    await client.waitDurable(102);
    await client.none((f) => f.seq !== undefined, 300);
    expectContiguous(client.durable(), n + 1);

    // GET /events lists the very same events, in pages of up to 100.
    const all = await ctx.api.get(`/events?since=${n}&limit=100`, bob.token);
    expect(all.status).toBe(200);
    expect(all.body.data).toEqual(before);
    expect(all.body.meta).toEqual({ nextCursor: '102', hasMore: true, latestSeq: 104 });
    const first = await ctx.api.get('/events?since=0&limit=100', bob.token);
    expect(first.body.meta).toEqual({ nextCursor: '100', hasMore: true, latestSeq: 104 });
    const rest = await ctx.api.get(`/events?since=${first.body.meta.nextCursor}&limit=100`, bob.token);
    expect(rest.body.meta).toEqual({ nextCursor: '104', hasMore: false, latestSeq: 104 });
    expect([...first.body.data, ...rest.body.data].map((e: Frame) => e.seq)).toEqual(Array.from({ length: 104 }, (_, i) => i + 1));
    expect([...first.body.data, ...rest.body.data].slice(n, 102)).toEqual(before);
    expect(rest.body.data.slice(-2)).toEqual(client.durable().slice(-2));
    for (const e of first.body.data as Frame[]) expect(Object.keys(e).sort()).toEqual(['payload', 'seq', 'type']);
  });

  it('GET /events: since at the latest is an empty last page; since=abc is 400 VALIDATION_FAILED', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await sendMany(alice, conv, 3);
    const tail = await ctx.api.get('/events?since=6', bob.token);
    expect(tail.status).toBe(200);
    expect(tail.body).toEqual({ data: [], meta: { nextCursor: null, hasMore: false, latestSeq: 6 } });
    const small = await ctx.api.get('/events?since=1&limit=2', bob.token);
    expect(small.body.data.map((e: Frame) => e.seq)).toEqual([2, 3]);
    expect(small.body.meta).toEqual({ nextCursor: '3', hasMore: true, latestSeq: 6 });
    for (const since of ['abc', '-1', '1.5']) {
      const bad = await ctx.api.get(`/events?since=${since}`, bob.token);
      expect(bad.status, since).toBe(400);
      expect(bad.body.error.code).toBe('VALIDATION_FAILED');
      expect(bad.body.error.details).toEqual([expect.objectContaining({ path: 'since' })]);
    }
  });

  it('a since at or beyond the latest seq replays nothing (resync false), and the next event follows the latest', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await sendMany(alice, conv, 2);
    for (const since of [4, 1000]) {
      const { client, hello } = await socket(bob, since);
      expect(client.frames[0]).toBe(hello);
      expect(hello.payload).toMatchObject({ seq: 4, replayed: 0, resync: false });
      await client.close();
    }
    const { client } = await socket(bob, 1000);
    await sendMany(alice, conv, 1);
    expect((await client.nextOf('message.new')).seq).toBe(5);
    expect((await client.nextOf('unread.updated')).seq).toBe(6);
  });

  it('a since older than the retention gets hello resync true with nothing replayed; GET /events is 410 RESYNC_REQUIRED', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await sendMany(alice, conv, 5); // bob: seq 1..10
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    try {
      await db.query('UPDATE messages.user_seqs SET pruned_through = 6 WHERE user_id = $1', [bob.id]);
      await db.query('DELETE FROM messages.user_events WHERE user_id = $1 AND seq <= 6', [bob.id]);
    } finally {
      await db.end();
    }
    for (const since of [0, 3, 5]) {
      const { client, hello } = await socket(bob, since);
      expect(client.frames).toEqual([hello]);
      expect(hello.payload).toMatchObject({ userId: bob.id, seq: 10, replayed: 0, resync: true });
      const rest = await ctx.api.get(`/events?since=${since}`, bob.token);
      expect(rest.status).toBe(410);
      expect(rest.body.error.code).toBe('RESYNC_REQUIRED');
      await client.close();
    }
    // At the retention edge everything after since is still there.
    const { client, hello } = await socket(bob, 6);
    expect(hello.payload).toMatchObject({ seq: 10, replayed: 4, resync: false });
    expectContiguous(client.durable(), 7);
    expect((await ctx.api.get('/events?since=6', bob.token)).body.data).toEqual(client.durable());
    // A client told to resync goes on live from the latest seq.
    const { client: fresh } = await socket(bob, 2);
    await sendMany(alice, conv, 1);
    expect((await fresh.nextOf('message.new')).seq).toBe(11);
  });

  it('a replay bigger than one NATS message arrives whole; GET /events pages it by size and by limit', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const big = '\u{1F600}'.repeat(4990); // ~20 000 bytes of UTF-8: 60 of them outgrow a 1 MiB NATS message
    await Promise.all(Array.from({ length: 6 }, (_, k) => sendMany(alice, conv, 10, `${big} ${k}`)));
    const { client, hello } = await socket(bob, 0);
    expect(hello.payload).toMatchObject({ seq: 120, replayed: 120, resync: false });
    expectContiguous(client.durable(), 1);
    const pages: Frame[][] = [];
    for (let since: string | null = '0'; since !== null; ) {
      const { status, body }: { status: number; body: any } = await ctx.api.get(`/events?since=${since}&limit=100`, bob.token);
      expect(status).toBe(200);
      pages.push(body.data);
      expect(body.meta.nextCursor).toBe(String(body.data.at(-1).seq));
      since = body.meta.hasMore ? body.meta.nextCursor : null;
    }
    expect(pages.flat()).toEqual(client.durable());
    expect(pages.length).toBeGreaterThan(2);
  });

  it('live events that arrive during a replay are neither lost nor duplicated', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const carol = await knownUser(ctx.api, 'carol');
    const conv2 = (await ctx.api.get(`/conversations/with/${bob.username}`, carol.token)).body.data.id as string;
    let n = await bobSawOneAndLeft(alice, bob, conv);
    for (let round = 0; round < 3; round++) {
      await sendMany(alice, conv, 30, `backlog ${round}`);
      let sent = 0;
      const concurrent = Promise.all([sendMany(alice, conv, 20, `live ${round}`, () => sent++), sendMany(carol, conv2, 20, `live ${round}`, () => sent++)]);
      while (sent < 4) await new Promise((r) => setTimeout(r, 2));
      // Bob reconnects while both go on sending: some of their messages are replayed, the rest arrive live.
      const { client, hello } = await socket(bob, n);
      await concurrent;
      const expected = n + 2 * (30 + 40);
      const frames = await client.waitDurable(expected - n, 20_000);
      await client.none((f) => f.seq !== undefined, 300);
      expectContiguous(client.durable(), n + 1);
      const helloAt = client.frames.indexOf(hello);
      expect(hello.payload.replayed).toBe(helloAt);
      expect(hello.payload.seq).toBe(n + helloAt);
      expect(hello.payload.replayed).toBeGreaterThanOrEqual(68);
      expect(frames.at(-1)!.seq).toBe(expected);
      const { body } = await ctx.api.get(`/events?since=${n}&limit=100`, bob.token);
      expect(body.data).toEqual(client.durable().slice(0, 100));
      n = expected;
      await client.close();
    }
  }, 60_000);
});
