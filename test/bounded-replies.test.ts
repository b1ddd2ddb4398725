import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { subjects } from '@chat/contracts';
import { api as restClient, eventually, knownUser, signToken, type Api, type TestUser } from './helpers/client';
import { startNatsServer, type OwnNatsServer } from './helpers/nats-server';
import { startStack, useStack, type Stack } from './helpers/stack';
import { connect, type WsClient } from './helpers/ws';

/**
 * Issue 13, finding 3: a reply whose size grows with data (a page of
 * conversations with long last messages, a user's contacts) outgrew NATS's
 * max_payload and failed, 503 on every retry. Each list is run here at its
 * largest: every page answers 200 and fits, and walking the cursor returns
 * each item exactly once.
 */

/** 5,000 characters (SPEC's maximum) of a 4-byte character: 20,000 bytes of UTF-8. */
const LONGEST = '\u{1F600}'.repeat(5000);
/**
 * The longest profile, in bytes, a token in a request header (16 KiB in Node)
 * can carry: control characters are 6 bytes each in JSON (`\u0001`), `€` is 3.
 */
const LONG_NAME = '\u0001'.repeat(256);
const LONG_PICTURE = '\u20AC'.repeat(2048);

async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map((x, j) => fn(x, i + j)))));
  return out;
}

interface Walked {
  items: any[];
  pages: number;
  largest: number;
  firstPageSize: number;
}

/** Every page of a list, following `nextCursor` (or, for events, `since`) until hasMore is false. */
async function walk(client: Api, token: string, path: (cursor: string | undefined) => string): Promise<Walked> {
  const items: any[] = [];
  let cursor: string | undefined;
  let pages = 0;
  let largest = 0;
  let firstPageSize = 0;
  for (;;) {
    const res = await client.get(path(cursor), token);
    expect(res.status, `${path(cursor)}: ${JSON.stringify(res.body).slice(0, 300)}`).toBe(200);
    largest = Math.max(largest, Buffer.byteLength(JSON.stringify(res.body)));
    if (pages === 0) firstPageSize = res.body.data.length;
    pages++;
    items.push(...res.body.data);
    if (!res.body.meta.hasMore) break;
    expect(res.body.data.length, 'a page with hasMore is never empty').toBeGreaterThan(0);
    cursor = res.body.meta.nextCursor as string;
    expect(pages).toBeLessThan(200);
  }
  return { items, pages, largest, firstPageSize };
}

describe('lists at their largest answer 200, every page fits, and the cursor walks each item once', () => {
  const ctx = useStack();
  let maxPayload: number;
  let alice: TestUser;
  let correspondents: TestUser[];
  let convs: string[];

  beforeAll(async () => {
    const nc = await natsConnect({ servers: ctx.stack.config.NATS_URL.split(',') });
    maxPayload = nc.info!.max_payload;
    await nc.close();
    const a = ctx.api;
    alice = await knownUser(a, 'alice');
    correspondents = await inBatches(Array.from({ length: 100 }), 20, () => knownUser(a, 'corr'));
    convs = await inBatches(correspondents, 10, async (c) => {
      const res = await a.get(`/conversations/with/${alice.username}`, c.token);
      expect(res.status).toBe(201);
      return res.body.data.id as string;
    });
    // One conversation holds 100 of the longest messages from alice, then every correspondent sends one: each last message is the longest.
    for (let i = 0; i < 100; i++) expect((await a.post(`/conversations/${convs[0]}/messages`, alice.token, { content: LONGEST })).status).toBe(201);
    await inBatches(correspondents, 10, async (c, i) =>
      expect((await a.post(`/conversations/${convs[i]}/messages`, c.token, { content: LONGEST })).status).toBe(201),
    );
  }, 180_000);

  it('GET /conversations?limit=100 of 100 conversations whose last messages are 5,000 emoji', async () => {
    // The projection applies the last messages asynchronously.
    await eventually(async () => {
      const first = await ctx.api.get('/conversations?limit=100', alice.token);
      expect(first.status).toBe(200);
      expect(first.body.data.every((c: any) => c.lastMessage?.content === LONGEST)).toBe(true);
    }, 15_000, 200);
    const walked = await walk(ctx.api, alice.token, (cursor) => `/conversations?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    expect(walked.largest).toBeLessThan(maxPayload);
    expect(walked.firstPageSize, 'the page was cut to fit').toBeLessThan(100);
    expect(walked.pages).toBeGreaterThan(1);
    const ids = walked.items.map((c) => c.id as string);
    expect(new Set(ids).size, 'no conversation twice').toBe(ids.length);
    expect(ids.sort()).toEqual([...convs].sort());
    expect(walked.items.every((c) => c.lastMessage.content === LONGEST)).toBe(true);
  });

  it('GET /conversations/:id/messages?limit=100 of 101 of the longest messages', async () => {
    const walked = await walk(ctx.api, alice.token, (cursor) => `/conversations/${convs[0]}/messages?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    expect(walked.largest).toBeLessThan(maxPayload);
    const ids = walked.items.map((m) => m.id as string);
    expect(ids.length).toBe(101);
    expect(new Set(ids).size).toBe(101);
  });

  it('GET /events?limit=100 over events that each carry one of the longest messages', async () => {
    const walked = await walk(ctx.api, alice.token, (since) => `/events?limit=100&since=${since ?? 0}`);
    expect(walked.largest).toBeLessThan(maxPayload);
    const seqs = walked.items.map((e) => e.seq as number);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    expect(walked.items.filter((e) => e.type === 'message.new').length).toBeGreaterThanOrEqual(200);
  });

  it('GET /blocks?limit=100 of 100 blocked users with the longest profiles', async () => {
    const blocker = await knownUser(ctx.api, 'blocker');
    const blocked = await inBatches(Array.from({ length: 100 }), 20, () => knownUser(ctx.api, 'long', { name: LONG_NAME, picture: LONG_PICTURE }));
    await inBatches(blocked, 10, async (u) => expect((await ctx.api.post('/blocks', blocker.token, { username: u.username })).status).toBe(201));
    const walked = await walk(ctx.api, blocker.token, (cursor) => `/blocks?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    expect(walked.largest).toBeLessThan(maxPayload);
    const ids = walked.items.map((b) => b.user.id as string);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(blocked.map((u) => u.id).sort());
    // Every profile arrived whole: none fell back to the id for an unknown user.
    expect(walked.items.every((b) => b.user.displayName === LONG_NAME && b.user.avatarUrl === LONG_PICTURE)).toBe(true);
  });
});

describe("a user's contacts, more than one NATS message holds, are read a page at a time and all told of presence", () => {
  /** Small, so a couple of hundred long ids are several times too many for one reply. */
  const MAX_PAYLOAD = 8192;
  const CONTACTS = 200;
  let nats: OwnNatsServer | undefined;
  let stack: Stack | undefined;
  let nc: NatsConnection | undefined;
  let client: Api;
  let watcher: TestUser;
  let contacts: TestUser[];
  const sockets: WsClient[] = [];

  /** A user whose id is 120 characters: each adds 120 bytes to a contacts reply. */
  async function longIdUser(prefix: string): Promise<TestUser> {
    const suffix = Math.random().toString(36).slice(2, 12);
    const id = `${prefix}-${suffix}-`.padEnd(120, 'x');
    const username = `${prefix}_${suffix}`.slice(0, 32);
    const user = { id, username, token: await signToken({ sub: id, username }) };
    expect((await client.get('/conversations', user.token)).status).toBe(200);
    return user;
  }

  beforeAll(async () => {
    nats = await startNatsServer({ maxPayload: MAX_PAYLOAD });
    stack = await startStack({ NATS_URL: nats.url });
    nc = await natsConnect({ servers: nats.url });
    client = restClient(stack.baseUrl);
    watcher = await longIdUser('watcher');
    contacts = await inBatches(Array.from({ length: CONTACTS }), 20, () => longIdUser('contact'));
    await inBatches(contacts, 20, async (u) => expect((await client.get(`/conversations/with/${watcher.username}`, u.token)).status).toBe(201));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(sockets.splice(0).map((s) => s.close()));
    await nc?.close();
    await stack?.stop();
    await nats?.stop();
  });

  /** Every page of conversations.contacts, as the presence service reads it. */
  async function contactPages(userId: string): Promise<Array<{ userIds: string[]; next: string | null; bytes: number }>> {
    const pages = [];
    let after: string | undefined;
    do {
      const msg = await nc!.request(subjects(stack!.config.NATS_PREFIX).conversations.contacts, JSON.stringify({ userId, ...(after ? { after } : {}) }), { timeout: 5000 });
      const reply = msg.json<{ ok: boolean; data: { userIds: string[]; next: string | null } }>();
      expect(reply.ok).toBe(true);
      pages.push({ ...reply.data, bytes: msg.data.length });
      after = reply.data.next ?? undefined;
      expect(pages.length).toBeLessThan(500);
    } while (after !== undefined);
    return pages;
  }

  it('conversations.contacts answers in pages that fit, together every contact exactly once', async () => {
    const pages = await contactPages(watcher.id);
    expect(pages.length).toBeGreaterThan(1);
    for (const p of pages) expect(p.bytes).toBeLessThanOrEqual(MAX_PAYLOAD);
    const all = pages.flatMap((p) => p.userIds);
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort()).toEqual(contacts.map((u) => u.id).sort());
  });

  it('GET /blocks?limit=100 of blocked users whose profiles together outgrow a reply: pages that fit, each block once', async () => {
    const blocker = await longIdUser('blocker');
    const blocked = await inBatches(Array.from({ length: 12 }), 12, async () => {
      const suffix = Math.random().toString(36).slice(2, 12);
      const user = { id: `long-${suffix}`, username: `long_${suffix}`, token: '' };
      // About 4.6 KB of JSON each: one fits a reply here, twelve are several times too many.
      user.token = await signToken({ sub: user.id, username: user.username, name: LONG_NAME, picture: '\u20AC'.repeat(1000) });
      expect((await client.get('/conversations', user.token)).status).toBe(200);
      return user;
    });
    for (const u of blocked) expect((await client.post('/blocks', blocker.token, { username: u.username })).status).toBe(201);
    const walked = await walk(client, blocker.token, (cursor) => `/blocks?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    expect(walked.largest).toBeLessThan(MAX_PAYLOAD);
    expect(walked.pages).toBeGreaterThan(1);
    const ids = walked.items.map((b) => b.user.id as string);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(blocked.map((u) => u.id).sort());
    expect(walked.items.every((b) => b.user.displayName === LONG_NAME)).toBe(true);
  });

  it('when the user comes online, contacts on the first and on the last page are both told', async () => {
    const pages = await contactPages(watcher.id);
    const first = contacts.find((u) => u.id === pages[0]!.userIds[0])!;
    const last = contacts.find((u) => u.id === pages.at(-1)!.userIds.at(-1))!;
    const port = stack!.gateway.port;
    const [a, b] = [(await connect(port, { token: first.token })).client, (await connect(port, { token: last.token })).client];
    sockets.push(a, b);
    sockets.push((await connect(port, { token: watcher.token })).client);
    for (const s of [a, b]) await s.next((f) => f.type === 'user.online' && f.payload?.userId === watcher.id, 10_000);
  });
});
