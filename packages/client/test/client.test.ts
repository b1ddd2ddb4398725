import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { ChatClient, type ChatClientOptions, type ConnectionState, type DurableEvent, type Message } from '../src';
import { conversationPair, eventually, knownUser, signToken, type TestUser } from '../../../test/helpers/client';
import { useStack } from '../../../test/helpers/stack';
import { MemoryStorage, TestNetwork } from './net';

/**
 * The client against the real running system: every service, NATS,
 * PostgreSQL and Redis. Faults come from the network between them
 * (TestNetwork), never from a stand-in for the server.
 */
const ctx = useStack();
const clients: ChatClient[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function makeClient(user: TestUser | { token: () => Promise<string> | string }, opts: Partial<ChatClientOptions> & { net?: TestNetwork } = {}) {
  const net = opts.net ?? new TestNetwork();
  const getToken = 'id' in user ? () => user.token : user.token;
  const client = new ChatClient({
    baseUrl: ctx.stack.baseUrl,
    getToken,
    WebSocket: net.factory(),
    storage: null,
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
    ackTimeoutMs: 2000,
    ...opts,
  });
  clients.push(client);
  const events: DurableEvent[] = [];
  const states: ConnectionState[] = [];
  client.on('event', (e) => events.push(e));
  client.on('state', (s) => states.push(s.state));
  return { client, net, events, states };
}

async function opened(client: ChatClient) {
  if (client.state === 'idle') client.connect();
  await eventually(async () => expect(client.state).toBe('open'), 10_000);
}

/** The receiver's view is whole: seqs run +1 from the first, and each message arrived once. */
function expectGapFree(events: DurableEvent[]) {
  for (let i = 1; i < events.length; i++) expect(events[i]!.seq, `event ${i}`).toBe(events[i - 1]!.seq + 1);
}
const newMessages = (events: DurableEvent[]): Message[] =>
  events.flatMap((e) => (e.type === 'message.new' ? [e.payload.message] : []));

async function storedMessages(conv: string, token: string): Promise<Message[]> {
  const res = await ctx.api.get(`/conversations/${conv}/messages?limit=100`, token);
  expect(res.status).toBe(200);
  return res.body.data as Message[];
}

describe('ChatClient against the running system', () => {
  it('connects through a ticket, sends over the socket, and both sides see the message once', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    const b = makeClient(bob);
    await Promise.all([opened(a.client), opened(b.client)]);
    expect(a.states.slice(0, 2)).toEqual(['connecting', 'open']);
    expect(a.net.urls[0]).toMatch(/\/api\/chat\/ws\?ticket=/);
    expect(a.net.urls[0]).not.toContain(alice.token);

    const sent = new Promise<Message>((resolve) => a.client.on('sent', (s) => resolve(s.message)));
    const entry = a.client.send(conv, '  hello bob  ');
    expect(entry.state).toBe('pending');
    expect(a.client.pending(conv).map((p) => p.clientMessageId)).toEqual([entry.clientMessageId]);
    const message = await sent;
    expect(message).toMatchObject({ conversationId: conv, senderId: alice.id, content: 'hello bob', clientMessageId: entry.clientMessageId });
    expect(a.client.pending()).toEqual([]);
    await eventually(async () => expect(newMessages(b.events).map((m) => m.id)).toEqual([message.id]));
    expect((await storedMessages(conv, bob.token)).map((m) => m.id)).toEqual([message.id]);
  });

  it('a burst of sends is stored in the order it was written, one conversation at a time', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    await opened(a.client);
    const texts = Array.from({ length: 12 }, (_, i) => `burst ${i}`);
    const entries = texts.map((t) => a.client.send(conv, t));
    await eventually(async () => expect(a.client.pending()).toEqual([]), 10_000);
    const stored = (await storedMessages(conv, bob.token)).reverse();
    expect(stored.map((m) => m.content)).toEqual(texts);
    expect(stored.map((m) => m.clientMessageId)).toEqual(entries.map((e) => e.clientMessageId));
  });

  it('reconnects after the network drops and resumes with since: what was sent meanwhile arrives once, in order', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const b = makeClient(bob);
    await opened(b.client);
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'before' });
    await eventually(async () => expect(newMessages(b.events)).toHaveLength(1));
    const seqBefore = b.client.lastSeq!;

    b.net.down = true;
    b.net.cutAll();
    await eventually(async () => expect(b.client.state).toBe('reconnecting'));
    for (let i = 0; i < 5; i++) await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `while away ${i}` });
    // A few refused attempts: the client keeps trying with backoff, not in a hot loop.
    await eventually(async () => expect(b.net.opened).toBeGreaterThanOrEqual(3));
    b.net.down = false;
    await eventually(async () => expect(newMessages(b.events)).toHaveLength(6), 10_000);

    expect(newMessages(b.events).map((m) => m.content)).toEqual(['before', ...[0, 1, 2, 3, 4].map((i) => `while away ${i}`)]);
    expectGapFree(b.events);
    expect(b.net.urls.at(-1)).toContain(`since=${seqBefore}`);
    expect(b.states).toContain('reconnecting');
    expect(b.client.state).toBe('open');
  });

  it('a lost ack is retried with the same clientMessageId: the message is stored and delivered once', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const net = new TestNetwork();
    // The first answer to the send never arrives: neither its ack nor the sender's own copy of the event.
    let lost = 0;
    net.loseIncoming = (f) => {
      if (lost < 2 && (f.type === 'ack' || (f.type === 'message.new' && f.payload.message.senderId === alice.id))) {
        lost++;
        return true;
      }
      return false;
    };
    const sendFrames: string[] = [];
    net.loseOutgoing = (f) => {
      if (f.type === 'message.send') sendFrames.push(f.payload.clientMessageId);
      return false;
    };
    const a = makeClient(alice, { net, ackTimeoutMs: 300 });
    const b = makeClient(bob);
    await Promise.all([opened(a.client), opened(b.client)]);
    const sent = new Promise<Message>((resolve) => a.client.on('sent', (s) => resolve(s.message)));
    const entry = a.client.send(conv, 'only once');
    const message = await sent;

    expect(sendFrames.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sendFrames)).toEqual(new Set([entry.clientMessageId]));
    expect((await storedMessages(conv, bob.token)).filter((m) => m.content === 'only once').map((m) => m.id)).toEqual([message.id]);
    // Give a second delivery every chance to show up before counting.
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'marker' });
    await eventually(async () => expect(newMessages(b.events).map((m) => m.content)).toEqual(['only once', 'marker']));
    expectGapFree(b.events);
    // The sender's lost event left a hole in its own seq: filled from GET /events, once.
    await eventually(async () => expect(newMessages(a.events).map((m) => m.content)).toEqual(['only once', 'marker']));
    expectGapFree(a.events);
  });

  it('a send refused for good (blocked) fails without retrying; after unblocking, retry sends it once', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    const a = makeClient(alice);
    await opened(a.client);
    const pending: string[] = [];
    a.client.on('pending', (list) => pending.push(list.map((p) => p.state).join(',')));
    const entry = a.client.send(conv, 'are you there?');
    await eventually(async () => expect(a.client.pending(conv)[0]).toMatchObject({ state: 'failed', error: { code: 'BLOCKED' }, attempts: 1 }));

    expect((await ctx.api.del(`/blocks/${alice.username}`, bob.token)).status).toBe(204);
    const sent = new Promise<Message>((resolve) => a.client.on('sent', (s) => resolve(s.message)));
    a.client.retry(entry.clientMessageId);
    const message = await sent;
    expect(message.clientMessageId).toBe(entry.clientMessageId);
    expect((await storedMessages(conv, alice.token)).map((m) => m.content)).toEqual(['are you there?']);
    expect(pending).toContain('failed');
  });

  it('a clientMessageId already used for other content fails for good (409), without a retry loop', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    expect((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'original', clientMessageId: 'taken-1' })).status).toBe(201);
    const net = new TestNetwork();
    let sends = 0;
    net.loseOutgoing = (f) => (f.type === 'message.send' && sends++, false);
    const a = makeClient(alice, { net });
    await opened(a.client);
    a.client.send(conv, 'something else', { clientMessageId: 'taken-1' });
    await eventually(async () => expect(a.client.pending(conv)[0]).toMatchObject({ state: 'failed', error: { code: 'IDEMPOTENCY_CONFLICT' } }));
    await new Promise((r) => setTimeout(r, 300));
    expect(sends).toBe(1);
    // The id with its own content again is answered with the original message: a success, not an error.
    a.client.discard('taken-1');
    const [original] = await storedMessages(conv, alice.token);
    const sent = new Promise<Message>((resolve) => a.client.on('sent', (x) => resolve(x.message)));
    a.client.send(conv, 'original', { clientMessageId: 'taken-1' });
    expect(await sent).toEqual(original);
    expect(await storedMessages(conv, alice.token)).toEqual([original]);
    expect(a.client.pending()).toEqual([]);
  });

  it('sends made offline survive a reload (storage) and are sent once when the next client connects', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const storage = new MemoryStorage();
    const net = new TestNetwork();
    net.down = true;
    const first = makeClient(alice, { net, storage });
    first.client.connect();
    await eventually(async () => expect(net.opened).toBeGreaterThanOrEqual(1));
    const one = first.client.send(conv, 'queued 1');
    const two = first.client.send(conv, 'queued 2');
    expect([...storage.map.keys()]).toEqual([`chat:pending:v1:${alice.id}`]);
    first.client.close(); // the page goes away with both still pending

    const second = makeClient(alice, { storage });
    expect(second.client.pending()).toEqual([]); // nothing is known before the user is
    await opened(second.client);
    await eventually(async () => expect(second.client.pending()).toEqual([]));
    const stored = await storedMessages(conv, bob.token);
    expect(stored.map((m) => [m.content, m.clientMessageId]).reverse()).toEqual([
      ['queued 1', one.clientMessageId],
      ['queued 2', two.clientMessageId],
    ]);
    expect(storage.map.size).toBe(0);

    // A third life re-sending the same ids (a stale copy of storage) changes nothing.
    const stale = new MemoryStorage();
    stale.setItem(`chat:pending:v1:${alice.id}`, JSON.stringify([{ ...one, state: 'pending' }]));
    const third = makeClient(alice, { storage: stale });
    await opened(third.client);
    await eventually(async () => expect(third.client.pending()).toEqual([]));
    expect(await storedMessages(conv, bob.token)).toHaveLength(2);
  });

  it('resync: a since older than the retention says so, and the client goes on from the latest seq', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    for (let i = 0; i < 3; i++) await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `m${i}` });
    const db = new pg.Client({ connectionString: ctx.stack.config.DATABASE_URL });
    await db.connect();
    try {
      await db.query('UPDATE messages.user_seqs SET pruned_through = 4 WHERE user_id = $1', [bob.id]);
      await db.query('DELETE FROM messages.user_events WHERE user_id = $1 AND seq <= 4', [bob.id]);
    } finally {
      await db.end();
    }
    const b = makeClient(bob, { since: 1 });
    const resyncs: string[] = [];
    b.client.on('resync', (r) => resyncs.push(r.reason));
    await opened(b.client);
    expect(resyncs).toEqual(['retention']);
    expect(b.client.lastSeq).toBe(6);
    expect(b.events).toEqual([]);
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'after' });
    await eventually(async () => expect(b.events.map((e) => e.seq)).toEqual([7, 8]));
  });

  it('an expired token closes the socket (1008); the client refreshes it and resumes without losing an event', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const refreshes: boolean[] = [];
    let short = true;
    const getToken = async ({ forceRefresh }: { forceRefresh: boolean }) => {
      refreshes.push(forceRefresh);
      if (forceRefresh) short = false;
      return short ? signToken({ sub: bob.id, username: bob.username, exp: Math.floor(Date.now() / 1000) + 2 }) : bob.token;
    };
    const b = makeClient({ token: getToken }, { reconnect: { initialDelayMs: 5000, maxDelayMs: 5000 } });
    await opened(b.client);
    const closes: number[] = [];
    b.client.on('state', (s) => s.state === 'reconnecting' && closes.push(Date.now()));
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'one' });
    await eventually(async () => expect(refreshes).toContain(true), 8000);
    await opened(b.client);
    await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: 'two' });
    await eventually(async () => expect(newMessages(b.events).map((m) => m.content)).toEqual(['one', 'two']));
    expectGapFree(b.events);
    // Straight back, not after the 5 s backoff this client was given.
    expect(b.net.opened).toBe(2);
  });

  it('a refused token ends in the terminal unauthorized state, without a reconnect loop', async () => {
    const stranger = await signToken({ sub: 'nobody', username: 'nobody' }, { secret: 'not-the-secret-0123456789-0123456789' });
    let asked = 0;
    const c = makeClient({ token: () => (asked++, stranger) });
    c.client.connect();
    await eventually(async () => expect(c.client.state).toBe('unauthorized'));
    expect(c.net.opened).toBe(0);
    const askedAtEnd = asked;
    await new Promise((r) => setTimeout(r, 300));
    expect(asked).toBe(askedAtEnd); // nothing more is tried
    expect(asked).toBeLessThanOrEqual(4);
    expect(() => c.client.connect()).toThrow(/unauthorized/);
  });

  it('a silent connection is found dead from the heartbeat and replaced', async () => {
    const bob = await knownUser(ctx.api, 'bob');
    const net = new TestNetwork();
    const b = makeClient(bob, { net, heartbeatGraceMs: 200 });
    await opened(b.client);
    // Everything from the server is lost from now on, pongs included: a half-open TCP connection.
    net.loseIncoming = () => true;
    (b.client as unknown as { armLiveness(ms: number): void }).armLiveness(100); // the hello's 25 s, shortened for the test
    await eventually(async () => expect(net.opened).toBe(2), 5000);
    net.loseIncoming = () => false;
    net.cutAll(); // the replacement was opened while frames were lost; let it come back clean
    await opened(b.client);
  });

  it('close() releases everything: the user goes offline and nothing reconnects', async () => {
    const bob = await knownUser(ctx.api, 'bob');
    const b = makeClient(bob);
    await opened(b.client);
    const online = async () => (await ctx.api.get(`/presence?userIds=${bob.id}`, bob.token)).body.data[bob.id].isOnline;
    await eventually(async () => expect(await online()).toBe(true));
    b.client.close();
    expect(b.client.state).toBe('closed');
    // Every listener is let go (the app's included): a closed client holds nothing alive.
    expect((b.client as unknown as { emitter: { eventNames(): unknown[] } }).emitter.eventNames()).toEqual([]);
    await eventually(async () => expect(await online()).toBe(false), 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(b.net.opened).toBe(1);
    expect(() => b.client.connect()).toThrow(/closed/);
  });

  it('REST errors are typed by their SPEC code; a repeated clientMessageId is the original, not an error', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const a = makeClient(alice);
    const first = await a.client.rest.sendMessage(conv, { content: 'x', clientMessageId: 'rest-1' });
    const again = await a.client.rest.sendMessage(conv, { content: 'x', clientMessageId: 'rest-1' });
    expect(first.created).toBe(true);
    expect(again).toEqual({ message: first.message, created: false });
    await expect(a.client.rest.sendMessage(conv, { content: 'y', clientMessageId: 'rest-1' })).rejects.toMatchObject({
      name: 'ChatApiError',
      code: 'IDEMPOTENCY_CONFLICT',
      status: 409,
    });
    await expect(a.client.rest.openConversation('no_such_user_here')).rejects.toMatchObject({ code: 'USER_NOT_FOUND', status: 404 });
    await expect(a.client.rest.listConversations({ cursor: 'garbage' })).rejects.toMatchObject({ code: 'INVALID_CURSOR' });
    const page = await a.client.rest.listConversations({ limit: 1 });
    expect(page.data[0]!.id).toBe(conv);
    const events = await a.client.rest.getEvents(0);
    expect(events.meta.latestSeq).toBeGreaterThan(0);
  });
});
