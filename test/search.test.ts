import { randomUUID } from 'node:crypto';
import Ajv2020 from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { conversationPair, knownUser, type TestUser } from './helpers/client';

/** SPEC 10: GET /search/messages, through the gateway, on the real PostgreSQL, NATS and Redis. */
const ctx = useStack();

interface Hit {
  message: { id: string; conversationId: string; senderId: string; content: string; editedAt: string | null; deletedAt: string | null; reactions: unknown[] };
  conversation: { id: string; participant: { id: string; username: string; displayName: string | null; avatarUrl: string | null } };
}

async function send(u: TestUser, conv: string, content: string) {
  const res = await ctx.api.post(`/conversations/${conv}/messages`, u.token, { content });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.data as { id: string; content: string; createdAt: string };
}

const searchRaw = (u: TestUser, params: Record<string, string | number>) =>
  ctx.api.get(`/search/messages?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString()}`, u.token);

async function search(u: TestUser, q: string, params: Record<string, string | number> = {}) {
  const res = await searchRaw(u, { q, ...params });
  expect(res.status, `q=${JSON.stringify(q)}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body as { data: Hit[]; meta: { nextCursor: string | null; hasMore: boolean } };
}
const contents = async (u: TestUser, q: string, params: Record<string, string | number> = {}) => (await search(u, q, params)).data.map((h) => h.message.content);

function expectError(res: { status: number; body: any }, code: string, field?: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.error.code).toBe(code);
  if (field) expect(res.body.error.details).toEqual(expect.arrayContaining([expect.objectContaining({ path: field })]));
}

/** A word no other test sends, so a search sees only this test's messages. */
const token = () => `tok${randomUUID().replace(/-/g, '').slice(0, 12)}`;

describe('GET /search/messages: matching', () => {
  it('finds a word or the start of one, ignoring case and accents: `cafe zur` finds "Meet me at the Café Zürich"', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m = await send(alice, conv, 'Meet me at the Café Zürich');
    await send(bob, conv, 'See you there, tomorrow at noon');
    for (const q of ['cafe zur', 'CAFÉ ZÜRICH', 'Café', 'zurich', 'zü', 'meet', 'MEE', 'c']) {
      const r = await search(bob, q);
      expect(r.data.map((h) => h.message.id), q).toContain(m.id);
    }
    // The start of a word, not its middle or end.
    for (const q of ['afe', 'rich', 'eet']) expect(await contents(alice, q), q).toEqual([]);
  });

  it('every word must match (AND), in any order', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await send(alice, conv, 'Meet me at the Café Zürich');
    await send(alice, conv, 'the café in Paris is closed');
    expect((await contents(bob, 'cafe')).sort()).toEqual(['Meet me at the Café Zürich', 'the café in Paris is closed']);
    expect(await contents(bob, 'cafe zur')).toEqual(['Meet me at the Café Zürich']);
    expect(await contents(bob, 'zur cafe')).toEqual(['Meet me at the Café Zürich']);
    expect(await contents(bob, 'paris cafe')).toEqual(['the café in Paris is closed']);
    expect(await contents(bob, 'cafe zurich paris')).toEqual([]);
    expect(await contents(bob, 'cafe nowhere')).toEqual([]);
  });

  it('a hit is { message, conversation: { id, participant } }, the participant being the other user, and the page has meta', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const t = token();
    const m = await send(alice, conv, `hello ${t}`);
    const forBob = await search(bob, t);
    expect(forBob.meta).toEqual({ nextCursor: null, hasMore: false });
    expect(forBob.data).toEqual([
      {
        message: { ...m, readAt: null, editedAt: null, deletedAt: null, reactions: [] },
        conversation: { id: conv, participant: { id: alice.id, username: alice.username, displayName: null, avatarUrl: null } },
      },
    ]);
    const forAlice = await search(alice, t);
    expect(forAlice.data[0]!.conversation).toEqual({ id: conv, participant: { id: bob.id, username: bob.username, displayName: null, avatarUrl: null } });
    expect(Object.keys(forAlice.data[0]!.message).sort()).toEqual(['clientMessageId', 'content', 'conversationId', 'createdAt', 'deletedAt', 'editedAt', 'id', 'reactions', 'readAt', 'senderId']);
  });

  it('the answer is what the OpenAPI document says it is', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const t = token();
    await send(alice, conv, `documented ${t}`);
    const doc = await (await fetch(`${ctx.stack.baseUrl}/api/chat/openapi.json`)).json();
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema({ ...doc, $id: 'openapi' });
    const schema = (status: number) => ajv.getSchema(`openapi#/paths/~1search~1messages/get/responses/${status}/content/application~1json/schema`)!;
    const ok = await searchRaw(alice, { q: t });
    expect(ok.body.data).toHaveLength(1);
    expect(schema(200)(ok.body), JSON.stringify(schema(200).errors)).toBe(true);
    const bad = await searchRaw(alice, { q: ' ' });
    expect(schema(400)(bad.body), JSON.stringify(schema(400).errors)).toBe(true);
    expect(doc.paths['/search/messages'].get.tags).toEqual(['Search']);
    expect(doc.components.schemas).toHaveProperty('SearchResult');
  });

  it('words are cut as the parser cuts the content: hyphens, apostrophes, digits, addresses', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const t = token();
    const msgs = {
      email: `${t} send me an e-mail`,
      dont: `${t} I don't know`,
      apart: `${t} don is going to town`,
      digits: `${t} room 4711 at 10:30`,
      url: `${t} see https://example.org/docs/page`,
    };
    for (const c of Object.values(msgs)) await send(alice, conv, c);
    const find = async (q: string) => (await contents(bob, `${t} ${q}`)).sort();
    expect(await find('e-mail')).toEqual([msgs.email]);
    expect(await find('mail')).toEqual([msgs.email]);
    expect(await find('e-ma')).toEqual([msgs.email]);
    expect(await find("don't")).toEqual([msgs.dont]);
    expect(await find('don')).toEqual([msgs.apart, msgs.dont].sort());
    expect(await find('47')).toEqual([msgs.digits]);
    expect(await find('example')).toEqual([msgs.url]);
    expect(await find('example.org')).toEqual([msgs.url]);
  });

  it('tsquery syntax in q is only text: never a 500, never a changed meaning', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const t = token();
    await send(alice, conv, `${t} Meet me at the Café Zürich`);
    await send(alice, conv, `${t} lunch in Paris`);
    const nasty = [
      "'", '"', '&', '|', '!', ':', '*', ':*', '(', ')', '\\', "\\'", "''", '<->', '<2>', '&&', '||', '!!', '()', "':*",
      'a & b', 'a | b', '!a', 'a:*', "'a'", '(a', 'a)', 'a\\', 'a:A', 'a:1', "a'''", '%', '_', '$1', ';', '--',
      "'); DROP TABLE messages; --", '😀', '🇨🇭', 'x'.repeat(200), 'é'.repeat(200), '\u0301', 'ǅ', 'ß', 'İ',
    ];
    for (const q of nasty) {
      const res = await searchRaw(bob, { q });
      expect(res.status, `q=${JSON.stringify(q)}: ${JSON.stringify(res.body)}`).toBe(200);
    }
    // Operators are dropped by the parser, not obeyed: no negation, no OR, no weights.
    expect(await contents(bob, `${t} !paris`)).toEqual([`${t} lunch in Paris`]);
    expect(await contents(bob, `${t} & paris`)).toEqual([`${t} lunch in Paris`]);
    expect(await contents(bob, `${t} paris|zurich`)).toEqual([]);
    expect(await contents(bob, `${t} paris | zurich`)).toEqual([]);
    expect(await contents(bob, `${t} café:*`)).toEqual([`${t} Meet me at the Café Zürich`]);
    expect(await contents(bob, `${t} 'cafe'`)).toEqual([`${t} Meet me at the Café Zürich`]);
    expect(await contents(bob, `${t} (zur*)`)).toEqual([`${t} Meet me at the Café Zürich`]);
    expect(await contents(bob, `${t} paris:A`)).toEqual([]);
    // A q with no word left (only punctuation, emoji) finds nothing; such a word next to real ones is left out.
    for (const q of ['!', '?!', '😀', '&& || !!', "''"]) expect(await contents(bob, q), q).toEqual([]);
    expect(await contents(bob, `${t} 😀 paris ?`)).toEqual([`${t} lunch in Paris`]);
  });
});

describe('GET /search/messages: whose messages', () => {
  it("finds messages the caller sent and received, and never another user's, even with that conversation's id", async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { alice: carol, bob: dave, conv: other } = await conversationPair(ctx.api);
    const t = token();
    await send(alice, conv, `${t} from alice`);
    await send(bob, conv, `${t} from bob`);
    await send(carol, other, `${t} from carol`);
    await send(dave, other, `${t} from dave`);
    expect((await contents(alice, t)).sort()).toEqual([`${t} from alice`, `${t} from bob`]);
    expect((await contents(bob, t)).sort()).toEqual([`${t} from alice`, `${t} from bob`]);
    expect((await contents(carol, t)).sort()).toEqual([`${t} from carol`, `${t} from dave`]);
    // Someone else's conversation, a uuid of none, and an id that is no uuid: 200 and nothing, as if it did not exist.
    for (const conversationId of [other, randomUUID(), 'not-a-uuid', '0']) {
      const r = await search(alice, t, { conversationId });
      expect(r, conversationId).toEqual({ data: [], meta: { nextCursor: null, hasMore: false } });
    }
    // A user with no conversation at all.
    const loner = await knownUser(ctx.api, 'loner');
    expect(await contents(loner, t)).toEqual([]);
  });

  it('conversationId narrows the search to that conversation', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const [bob, carol] = await Promise.all([knownUser(ctx.api, 'bob'), knownUser(ctx.api, 'carol')]);
    const withBob = (await ctx.api.get(`/conversations/with/${bob.username}`, alice.token)).body.data.id as string;
    const withCarol = (await ctx.api.get(`/conversations/with/${carol.username}`, alice.token)).body.data.id as string;
    const t = token();
    await send(alice, withBob, `${t} to bob`);
    await send(carol, withCarol, `${t} from carol`);
    expect((await contents(alice, t)).sort()).toEqual([`${t} from carol`, `${t} to bob`]);
    expect(await contents(alice, t, { conversationId: withBob })).toEqual([`${t} to bob`]);
    const r = await search(alice, t, { conversationId: withCarol });
    expect(r.data.map((h) => [h.message.content, h.conversation.id, h.conversation.participant.username])).toEqual([[`${t} from carol`, withCarol, carol.username]]);
  });

  it("a blocked pair's messages stay searchable by both: blocking hides nothing already sent", async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const t = token();
    await send(alice, conv, `${t} before the block`);
    expect((await ctx.api.post('/blocks', bob.token, { username: alice.username })).status).toBe(201);
    expect(await contents(alice, t)).toEqual([`${t} before the block`]);
    expect(await contents(bob, t)).toEqual([`${t} before the block`]);
    expect(await contents(bob, t, { conversationId: conv })).toEqual([`${t} before the block`]);
  });
});

describe('GET /search/messages: order and pages', () => {
  it('newest first, and keyset pages neither repeat nor skip, even while new matches arrive', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const t = token();
    const sent: string[] = [];
    for (let i = 0; i < 23; i++) sent.push((await send(i % 2 ? alice : bob, conv, `${t} number ${i}`)).id);
    const newestFirst = [...sent].reverse();
    expect((await search(alice, t, { limit: 50 })).data.map((h) => h.message.id)).toEqual(newestFirst);

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    for (;;) {
      const page = await search(bob, t, { limit: 10, ...(cursor ? { cursor } : {}) });
      pages++;
      seen.push(...page.data.map((h) => h.message.id));
      // Arriving matches are newer than the first page: they never show on a later one.
      if (pages === 1) await send(alice, conv, `${t} late arrival`);
      expect(page.meta.hasMore).toBe(page.meta.nextCursor !== null);
      if (!page.meta.hasMore) break;
      expect(page.data).toHaveLength(10);
      cursor = page.meta.nextCursor!;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(newestFirst);
    expect((await search(bob, t)).data[0]!.message.content).toBe(`${t} late arrival`);
  });

  it('limit: default 20, 1 and 50 allowed; 0, 51 and non-numbers are 400 VALIDATION_FAILED', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const t = token();
    for (let i = 0; i < 52; i++) await send(alice, conv, `${t} ${i}`);
    const byDefault = await search(alice, t);
    expect(byDefault.data).toHaveLength(20);
    expect(byDefault.meta.hasMore).toBe(true);
    expect((await search(alice, t, { limit: 1 })).data).toHaveLength(1);
    const fifty = await search(alice, t, { limit: 50 });
    expect(fifty.data).toHaveLength(50);
    expect(fifty.meta.hasMore).toBe(true);
    for (const limit of ['0', '51', '100', '-1', '1.5', 'abc', '']) expectError(await searchRaw(alice, { q: t, limit }), 'VALIDATION_FAILED', 'limit');
  });

  it('a cursor that is not one the API returned is 400 INVALID_CURSOR', async () => {
    const { alice } = await conversationPair(ctx.api);
    const forged = Buffer.from(JSON.stringify(['2026-02-31 10:00:00+00', randomUUID()])).toString('base64url');
    for (const cursor of ['garbage', '!!!', forged, 'x'.repeat(600)]) expectError(await searchRaw(alice, { q: 'hello', cursor }), 'INVALID_CURSOR');
  });
});

describe('GET /search/messages: q', () => {
  it('is 1-200 characters after trimming: missing, empty, white space only or 201 characters are 400 VALIDATION_FAILED', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    expectError(await ctx.api.get('/search/messages', alice.token), 'VALIDATION_FAILED', 'q');
    for (const q of ['', ' ', '   \t\n ', '\u00a0\u3000', 'x'.repeat(201), ` ${'y'.repeat(201)} `]) expectError(await searchRaw(alice, { q }), 'VALIDATION_FAILED', 'q');
    const long = `${token()}${'z'.repeat(185)}`;
    expect(long).toHaveLength(200);
    await send(bob, conv, long);
    expect(await contents(alice, long)).toEqual([long]);
    expect(await contents(alice, `   ${long}   `)).toEqual([long]);
  });

  it('needs a token', async () => {
    const res = await ctx.api.get('/search/messages?q=hello');
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('UNAUTHORIZED');
  });
});

describe('GET /search/messages: edited and deleted messages', () => {
  it('an edited message is found by its new text only, not its old', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const [before, after] = [token(), token()];
    const m = await send(alice, conv, `${before} meet at the station`);
    expect(await contents(bob, before)).toEqual([`${before} meet at the station`]);
    const edit = await ctx.api.call('PATCH', `/conversations/${conv}/messages/${m.id}`, { token: alice.token, body: { content: `${after} meet at the café` } });
    expect(edit.status, JSON.stringify(edit.body)).toBe(200);
    for (const u of [alice, bob]) {
      expect(await contents(u, before)).toEqual([]);
      expect(await contents(u, 'station')).toEqual([]);
      const found = await search(u, `${after} cafe`);
      expect(found.data.map((h) => [h.message.id, h.message.content])).toEqual([[m.id, `${after} meet at the café`]]);
      expect(found.data[0]!.message.editedAt).not.toBeNull();
    }
  });

  it('a deleted message is never found, by any word it had, by either user', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const t = token();
    const gone = await send(alice, conv, `${t} secret plans`);
    await send(alice, conv, `${t} kept`);
    const del = await ctx.api.del(`/conversations/${conv}/messages/${gone.id}`, alice.token);
    expect(del.status, JSON.stringify(del.body)).toBe(200);
    for (const u of [alice, bob]) {
      expect(await contents(u, t)).toEqual([`${t} kept`]);
      expect(await contents(u, `${t} secret`)).toEqual([]);
      expect(await contents(u, 'plans', { conversationId: conv })).toEqual([]);
    }
  });
});
