import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationPair, knownUser, newUser } from './helpers/client';
import { extraGateway, startStack, useStack, type Stack } from './helpers/stack';
import { connect } from './helpers/ws';

const SENDS = 30;

async function messageCount(stack: Stack, conversationId: string): Promise<number> {
  const db = new pg.Client({ connectionString: stack.config.DATABASE_URL });
  await db.connect();
  try {
    const r = await db.query<{ n: string }>('SELECT count(*) AS n FROM messages.messages WHERE conversation_id = $1', [conversationId]);
    return Number(r.rows[0]!.n);
  } finally {
    await db.end();
  }
}

describe('rate limits (SPEC 6), shared through Redis', () => {
  const ctx = useStack({ RATE_LIMIT_SEND_PER_MIN: SENDS, RATE_LIMIT_CREATE_CONVERSATION_PER_MIN: 3, RATE_LIMIT_WS_FRAMES_PER_MIN: 10 });
  const extras: Array<{ stop(): Promise<void> }> = [];
  afterAll(async () => {
    for (const g of extras) await g.stop();
  });

  it('100 parallel sends admit exactly 30; the rest get 429 with Retry-After and RateLimit-* headers', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `m${i}` })),
    );
    const ok = results.filter((r) => r.status === 201);
    const limited = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(SENDS);
    expect(limited).toHaveLength(100 - SENDS);
    for (const r of limited) {
      expect(r.body.error.code).toBe('RATE_LIMITED');
      expect(typeof r.body.error.requestId).toBe('string');
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(r.headers.get('ratelimit-limit')).toBe(String(SENDS));
      expect(r.headers.get('ratelimit-remaining')).toBe('0');
      expect(Number(r.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
    }
    const remaining = ok.map((r) => Number(r.headers.get('ratelimit-remaining'))).sort((a, b) => a - b);
    expect(remaining).toEqual(Array.from({ length: SENDS }, (_, i) => i));
    for (const r of ok) expect(r.headers.get('ratelimit-limit')).toBe(String(SENDS));
    expect(await messageCount(ctx.stack, conv)).toBe(SENDS);
  });

  it('the limit is per user: another user sends while the first is limited', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await Promise.all(Array.from({ length: SENDS }, (_, i) => ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `a${i}` })));
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'over' })).status).toBe(429);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'fine' })).status).toBe(201);
  });

  it('REST and WebSocket share one send budget; a limited WS send is an error frame with retryAfterMs and the socket stays open', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    for (let i = 0; i < SENDS - 2; i++) expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `r${i}` })).status).toBe(201);
    const { client } = await connect(ctx.stack.gateway.port, { token: alice.token });
    try {
      expect((await client.request('message.send', { conversationId: conv, content: 'ws1' })).type).toBe('ack');
      // Frames are limited too (10 per connection here): this socket stays under that.
      expect((await client.request('message.send', { conversationId: conv, content: 'ws2' })).type).toBe('ack');
      const refused = await client.request('message.send', { conversationId: conv, content: 'ws3' });
      expect(refused.type).toBe('error');
      expect(refused.payload.code).toBe('RATE_LIMITED');
      expect(refused.payload.retryAfterMs).toBeGreaterThan(0);
      expect(refused.payload.retryAfterMs).toBeLessThanOrEqual(60_000);
      expect((await client.request('ping')).type).toBe('pong');
      expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'rest' })).status).toBe(429);
    } finally {
      await client.close();
    }
    expect(await messageCount(ctx.stack, conv)).toBe(SENDS);
  });

  it('two gateway instances share the budget', async () => {
    const second = await extraGateway(ctx.stack);
    extras.push(second);
    const { alice, conv } = await conversationPair(ctx.api);
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? ctx.api : second.api).post(`/conversations/${conv}/messages`, alice.token, { content: `x${i}` })),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(SENDS);
    expect(results.filter((r) => r.status === 429)).toHaveLength(60 - SENDS);
    expect(await messageCount(ctx.stack, conv)).toBe(SENDS);
  });

  it('conversation creation: only calls that create count; opening an existing one is never limited', async () => {
    const me = await knownUser(ctx.api, 'creator');
    const others = await Promise.all(Array.from({ length: 6 }, () => knownUser(ctx.api, 'peer')));
    // Six concurrent attempts at six new pairs: exactly three are created.
    const results = await Promise.all(others.map((o) => ctx.api.get(`/conversations/with/${o.username}`, me.token)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(3);
    expect(results.filter((r) => r.status === 429)).toHaveLength(3);
    const limited = results.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    for (const r of limited) {
      expect(r.body.error.code).toBe('RATE_LIMITED');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.headers.get('ratelimit-limit')).toBe('3');
    }
    const created = results.filter((r) => r.status === 201).map((r) => r.body.data.participant.username as string);
    // The existing ones open with 200 as often as asked, limit spent or not.
    for (const name of created) {
      const again = await ctx.api.get(`/conversations/with/${name}`, me.token);
      expect(again.status).toBe(200);
      expect(again.body.meta.created).toBe(false);
      expect(again.headers.get('ratelimit-remaining')).toBe('0');
    }
    const fresh = others.find((o) => !created.includes(o.username))!;
    expect((await ctx.api.get(`/conversations/with/${fresh.username}`, me.token)).status).toBe(429);
    // The other side of a created pair opens it with 200: it was never theirs to create.
    const peer = others.find((o) => created.includes(o.username))!;
    expect((await ctx.api.get(`/conversations/with/${me.username}`, peer.token)).status).toBe(200);
    // Errors spend nothing: an unknown user is 404, not 429.
    expect((await ctx.api.get(`/conversations/with/nobody_${Date.now()}`, me.token)).status).toBe(404);
  });

  it('concurrent calls for one new pair create it once and spend one creation', async () => {
    const me = await knownUser(ctx.api, 'dup');
    const peer = await knownUser(ctx.api, 'peer');
    const results = await Promise.all(Array.from({ length: 3 }, () => ctx.api.get(`/conversations/with/${peer.username}`, me.token)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(2);
    expect(new Set(results.map((r) => r.body.data.id)).size).toBe(1);
    // The losers were refunded: two creations are left of three.
    const again = await ctx.api.get(`/conversations/with/${peer.username}`, me.token);
    expect(again.headers.get('ratelimit-remaining')).toBe('2');
  });

  it('WS frames: every frame counts; past the limit an error frame with retryAfterMs, past ten times it close 1008', async () => {
    const user = await knownUser(ctx.api, 'flood');
    const { client } = await connect(ctx.stack.gateway.port, { token: user.token });
    const { client: other } = await connect(ctx.stack.gateway.port, { token: user.token });
    try {
      for (let i = 0; i < 9; i++) expect((await client.request('ping')).type).toBe('pong');
      client.send('not json'); // the tenth frame: invalid, and it still counts
      expect((await client.nextOf('error')).payload.code).toBe('INVALID_FRAME');
      const limited = await client.request('ping');
      expect(limited.type).toBe('error');
      expect(limited.payload.code).toBe('RATE_LIMITED');
      expect(limited.payload.retryAfterMs).toBeGreaterThan(0);
      // Per connection: the user's other socket is untouched.
      expect((await other.request('ping')).type).toBe('pong');
      // Up to ten times the limit the socket stays; the frame after that closes it.
      for (let i = 0; i < 88; i++) client.send({ type: 'ping', id: `f${i}` });
      expect((await client.request('ping')).payload.code).toBe('RATE_LIMITED'); // frame 100
      client.send({ type: 'ping' }); // frame 101
      const closed = await client.closed;
      expect(closed.code).toBe(1008);
      expect((await other.request('ping')).type).toBe('pong');
    } finally {
      await client.close();
      await other.close();
    }
  });
});

describe('rate limits with Redis down: each instance limits on its own (docs/security.md)', () => {
  let stack: Stack | undefined;
  afterAll(async () => {
    await stack?.stop();
  });

  it('sends stay limited per instance by the in-memory insurance limiter; N instances admit up to N × the limit', async () => {
    stack = await startStack({ REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_SEND_PER_MIN: 5, RATE_LIMIT_CREATE_CONVERSATION_PER_MIN: 100 });
    const second = await extraGateway(stack);
    try {
      const first = (await import('./helpers/client')).api(stack.baseUrl);
      const { alice, conv } = await conversationPair(first);
      const one = await Promise.all(Array.from({ length: 10 }, (_, i) => first.post(`/conversations/${conv}/messages`, alice.token, { content: `a${i}` })));
      expect(one.filter((r) => r.status === 201)).toHaveLength(5);
      expect(one.filter((r) => r.status === 429)).toHaveLength(5);
      const two = await Promise.all(Array.from({ length: 10 }, (_, i) => second.api.post(`/conversations/${conv}/messages`, alice.token, { content: `b${i}` })));
      expect(two.filter((r) => r.status === 201)).toHaveLength(5);
      expect(await messageCount(stack, conv)).toBe(10);
    } finally {
      await second.stop();
    }
  });

  it('a request never waits on the dead Redis for its limit', async () => {
    const client = (await import('./helpers/client')).api(stack!.baseUrl);
    const user = await newUser('quick');
    const started = Date.now();
    expect((await client.get('/conversations', user.token)).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
