import { beforeAll, describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { knownUser, type TestUser } from './helpers/client';

const ctx = useStack();
let alice: TestUser;
let bob: TestUser;
let conversationId: string;
let sent: string[];
beforeAll(async () => {
  [alice, bob] = await Promise.all([knownUser(ctx.api, 'alice'), knownUser(ctx.api, 'bob')]);
  conversationId = (await ctx.api.get(`/conversations/with/${bob.username}`, alice.token)).body.data.id;
  sent = await sendMany(conversationId, 45, 'm');
});

/** Sends `n` messages one after another; returns their ids in send order. */
async function sendMany(conv: string, n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const from = i % 2 === 0 ? alice : bob;
    const res = await ctx.api.post(`/conversations/${conv}/messages`, from.token, { content: `${tag} ${i}` });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    ids.push(res.body.data.id);
  }
  return ids;
}

interface Page {
  ids: string[];
  meta: { nextCursor: string | null; hasMore: boolean };
}

async function page(path: string, token: string, limit: number, cursor?: string | null): Promise<Page> {
  const q = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
  const res = await ctx.api.get(`${path}?${q}`, token);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return { ids: (res.body.data as Array<{ id: string }>).map((x) => x.id), meta: res.body.meta };
}

/** Reads pages until the end, calling `between` after each page; checks the meta of every page. */
async function readAll(path: string, token: string, limit: number, between: () => Promise<unknown> = async () => undefined) {
  const sizes: number[] = [];
  const ids: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const p = await page(path, token, limit, cursor);
    sizes.push(p.ids.length);
    ids.push(...p.ids);
    expect(p.meta.hasMore).toBe(p.meta.nextCursor !== null);
    if (!p.meta.hasMore) break;
    expect(typeof p.meta.nextCursor).toBe('string');
    cursor = p.meta.nextCursor;
    await between();
  }
  return { sizes, ids };
}

describe('message pagination', () => {
  it('45 messages page 20/20/5 newest first, with no repeat or skip, and the last page has nextCursor null', async () => {
    const { sizes, ids } = await readAll(`/conversations/${conversationId}/messages`, alice.token, 20);
    expect(sizes).toEqual([20, 20, 5]);
    expect(ids).toEqual([...sent].reverse());
    const last = await page(`/conversations/${conversationId}/messages`, bob.token, 50);
    expect(last.ids).toEqual([...sent].reverse());
    expect(last.meta).toEqual({ nextCursor: null, hasMore: false });
  });

  it('pages of the messages that existed at the first read neither repeat nor skip while new messages arrive', async () => {
    const [carol, dave] = await Promise.all([knownUser(ctx.api, 'carol'), knownUser(ctx.api, 'dave')]);
    const conv = (await ctx.api.get(`/conversations/with/${dave.username}`, carol.token)).body.data.id;
    const send = async (from: TestUser, content: string) => {
      const res = await ctx.api.post(`/conversations/${conv}/messages`, from.token, { content });
      expect(res.status).toBe(201);
      return res.body.data.id as string;
    };
    const original: string[] = [];
    for (let i = 0; i < 45; i++) original.push(await send(i % 2 ? carol : dave, `old ${i}`));
    let n = 0;
    const { sizes, ids } = await readAll(`/conversations/${conv}/messages`, carol.token, 20, async () => {
      for (let i = 0; i < 3; i++) await send(n++ % 2 ? carol : dave, `new ${n}`);
    });
    expect(sizes).toEqual([20, 20, 5]);
    expect(ids).toEqual([...original].reverse());
    const fresh = await page(`/conversations/${conv}/messages`, carol.token, 100);
    expect(fresh.ids).toHaveLength(51);
    expect(fresh.ids.slice(6)).toEqual([...original].reverse());
  });
});

describe('conversation list pagination', () => {
  it('25 conversations page 10/10/5, most recent first, with no repeat or skip', async () => {
    const owner = await knownUser(ctx.api, 'owner');
    const others = await Promise.all(Array.from({ length: 25 }, () => knownUser(ctx.api, 'peer')));
    const created: string[] = [];
    for (const other of others) {
      const res = await ctx.api.get(`/conversations/with/${other.username}`, owner.token);
      expect(res.status).toBe(201);
      created.push(res.body.data.id);
    }
    const { sizes, ids } = await readAll('/conversations', owner.token, 10);
    expect(sizes).toEqual([10, 10, 5]);
    expect(ids).toEqual([...created].reverse());

    const latecomers = await Promise.all(Array.from({ length: 4 }, () => knownUser(ctx.api, 'late')));
    const during = await readAll('/conversations', owner.token, 10, async () => {
      const res = await ctx.api.get(`/conversations/with/${owner.username}`, latecomers.pop()!.token);
      expect(res.status).toBe(201);
    });
    expect(during.sizes).toEqual([10, 10, 5]);
    expect(during.ids).toEqual([...created].reverse());
  });
});

describe('blocks list pagination', () => {
  it('12 blocks page 5/5/2, newest first, with no repeat or skip', async () => {
    const blocker = await knownUser(ctx.api, 'blocker');
    const targets = await Promise.all(Array.from({ length: 12 }, () => knownUser(ctx.api, 'target')));
    const blocks: Array<{ id: string; username: string }> = [];
    for (const t of targets) {
      const res = await ctx.api.post('/blocks', blocker.token, { username: t.username });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      blocks.push({ id: res.body.data.id, username: res.body.data.user.username });
    }
    expect(blocks.map((b) => b.username)).toEqual(targets.map((t) => t.username));
    const { sizes, ids } = await readAll('/blocks', blocker.token, 5);
    expect(sizes).toEqual([5, 5, 2]);
    expect(ids).toEqual(blocks.map((b) => b.id).reverse());
    const first = await ctx.api.get('/blocks?limit=1', blocker.token);
    expect(first.body.data[0].user).toMatchObject({ id: targets[11]!.id, username: targets[11]!.username });
  });
});

describe('page parameters', () => {
  const lists = () => [
    ['messages', `/conversations/${conversationId}/messages`],
    ['conversations', '/conversations'],
    ['blocks', '/blocks'],
  ] as const;

  it.each(['0', '101', 'abc', '-1', '1.5'])('limit=%s is 400 VALIDATION_FAILED with details naming limit, on every list', async (limit) => {
    for (const [name, path] of lists()) {
      const res = await ctx.api.get(`${path}?limit=${limit}`, alice.token);
      expect(res.status, name).toBe(400);
      expect(res.body.error.code, name).toBe('VALIDATION_FAILED');
      expect(Array.isArray(res.body.error.details), name).toBe(true);
      expect(res.body.error.details, name).toContainEqual(expect.objectContaining({ path: 'limit', message: expect.any(String) }));
    }
  });

  it('limit=1 and limit=100 are accepted, and no limit means 20', async () => {
    for (const [name, path] of lists()) {
      expect((await ctx.api.get(`${path}?limit=1`, alice.token)).status, name).toBe(200);
      expect((await ctx.api.get(`${path}?limit=100`, alice.token)).status, name).toBe(200);
    }
    const dflt = await ctx.api.get(`/conversations/${conversationId}/messages`, alice.token);
    expect(dflt.body.data).toHaveLength(20);
    expect(dflt.body.meta.hasMore).toBe(true);
  });

  const tampered = Buffer.from(JSON.stringify(['not a time', 'x'])).toString('base64url');
  const badId = Buffer.from(JSON.stringify(['2026-01-02 03:04:05.123456+00', 'x'])).toString('base64url');
  it.each([
    ['garbage', 'garbage'],
    ['over-long garbage', 'a'.repeat(600)],
    ['a tampered payload', tampered],
    ['a valid time with a bad id', badId],
    ['a non-array payload', Buffer.from('{"at":1}').toString('base64url')],
  ])('a cursor that is %s is 400 INVALID_CURSOR on every list', async (_, cursor) => {
    for (const [name, path] of lists()) {
      const res = await ctx.api.get(`${path}?cursor=${encodeURIComponent(cursor)}`, alice.token);
      expect(res.status, name).toBe(400);
      expect(res.body.error.code, name).toBe('INVALID_CURSOR');
    }
  });
});

describe('pages of long messages', () => {
  it('a page too large for one bus reply is cut short with hasMore, and the next pages hold the rest without repeat or skip', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const bob = await knownUser(ctx.api, 'bob');
    const conv = (await ctx.api.get(`/conversations/with/${bob.username}`, alice.token)).body.data.id as string;
    const long = (i: number) => `${i} ${'😀'.repeat(4990)}`;
    const sent: string[] = [];
    for (let i = 0; i < 60; i++) sent.push((await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: long(i) })).body.data.id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: any } = await ctx.api.get(`/conversations/${conv}/messages?limit=100${cursor ? `&cursor=${cursor}` : ''}`, bob.token);
      expect(res.status).toBe(200);
      seen.push(...res.body.data.map((m: { id: string }) => m.id));
      cursor = res.body.meta.nextCursor;
      expect(res.body.meta.hasMore).toBe(cursor !== null);
      pages++;
    } while (cursor);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toEqual([...sent].reverse());
  }, 60_000);
});
