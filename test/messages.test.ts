import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useStack } from './helpers/stack';
import { ISO_MS, UUID, knownUser, type TestUser, conversationPair } from './helpers/client';

const ctx = useStack();

/** Two known users and their conversation. */

const sendRaw = (u: TestUser, conv: string, body: unknown) => ctx.api.post(`/conversations/${conv}/messages`, u.token, body);
async function send(u: TestUser, conv: string, content: string, clientMessageId?: string) {
  const res = await sendRaw(u, conv, clientMessageId === undefined ? { content } : { content, clientMessageId });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.data;
}
const list = async (u: TestUser, conv: string) => {
  const res = await ctx.api.get(`/conversations/${conv}/messages?limit=100`, u.token);
  expect(res.status).toBe(200);
  return res.body.data as Array<{ id: string; content: string; readAt: string | null; senderId: string }>;
};
function expectValidation(res: { status: number; body: any }, field: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.error.code).toBe('VALIDATION_FAILED');
  expect(res.body.error.details).toEqual(expect.arrayContaining([expect.objectContaining({ path: field })]));
}

describe('POST /conversations/:id/messages', () => {
  it('201 with a trimmed Message: UUID id, ISO ms time, readAt null, clientMessageId echoed or null', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const before = Date.now();
    const res = await sendRaw(alice, conv, { content: '  \n hello bob \t ', clientMessageId: 'cm-1_A' });
    expect(res.status).toBe(201);
    const m = res.body.data;
    expect(Object.keys(m).sort()).toEqual(['clientMessageId', 'content', 'conversationId', 'createdAt', 'deletedAt', 'editedAt', 'id', 'reactions', 'readAt', 'senderId']);
    expect(m).toMatchObject({ conversationId: conv, senderId: alice.id, content: 'hello bob', clientMessageId: 'cm-1_A', readAt: null });
    expect(m.id).toMatch(UUID);
    expect(m.createdAt).toMatch(ISO_MS);
    expect(Date.parse(m.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    const plain = await send(bob, conv, 'no key');
    expect(plain.clientMessageId).toBeNull();
    expect((await list(alice, conv)).map((x) => x.id)).toEqual([plain.id, m.id]);
  });

  it('content rules: empty, whitespace-only, 5001 code points and control characters are 400 VALIDATION_FAILED with details', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    for (const content of ['', '   \n\t ', 'a'.repeat(5001), '😀'.repeat(5001), 'ding\u0007', 'del\u007f', 'c1\u0085x', 'nul\u0000']) {
      expectValidation(await sendRaw(alice, conv, { content }), 'content');
    }
    expectValidation(await sendRaw(alice, conv, { content: 42 }), 'content');
    expectValidation(await sendRaw(alice, conv, {}), 'content');
    expectValidation(await sendRaw(alice, conv, { content: 'x', clientMessageId: 'has space' }), 'clientMessageId');
    expectValidation(await sendRaw(alice, conv, { content: 'x', clientMessageId: 'k'.repeat(65) }), 'clientMessageId');
    expect(await list(alice, conv)).toEqual([]);
  });

  it('5000 emoji code points (10000 UTF-16 units) are accepted; \\n \\r \\t inside are kept', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const emoji = '😀'.repeat(5000);
    expect((await send(alice, conv, emoji)).content).toBe(emoji);
    expect((await send(alice, conv, 'a\r\nb\tc')).content).toBe('a\r\nb\tc');
  });

  it('content is plain text: HTML, SQL, RTL and zero-width come back byte for byte', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const samples = [
      '<script>alert("x")</script><b>&amp;</b>',
      "'; DROP TABLE messages; -- \\ %_ $1",
      'שלום עולם \u202Eevil\u202C مرحبا',
      'zero\u200Bwidth\u200D\uFEFFjoin',
      'combining e\u0301 and 👩‍👩‍👧',
    ];
    for (const s of samples) {
      const sent = await send(alice, conv, s);
      expect(sent.content).toBe(s);
      expect((await ctx.api.get(`/messages/${sent.id}`, bob.token)).body.data.content).toBe(s);
    }
    expect((await list(bob, conv)).map((m) => m.content)).toEqual([...samples].reverse());
  });
});

describe('idempotent sends (clientMessageId)', () => {
  it('a repeat with the same content answers 200 with the original and stores nothing new', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const first = await send(alice, conv, 'once', 'key-1');
    const again = await sendRaw(alice, conv, { content: 'once', clientMessageId: 'key-1' });
    expect(again.status).toBe(200);
    expect(again.body.data).toEqual(first);
    const trimmedDiff = await sendRaw(alice, conv, { content: '  once \n', clientMessageId: 'key-1' });
    expect(trimmedDiff.status).toBe(200);
    expect(trimmedDiff.body.data.id).toBe(first.id);
    expect((await list(alice, conv)).map((m) => m.id)).toEqual([first.id]);
  });

  it('the same key with other content is 409 IDEMPOTENCY_CONFLICT', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    await send(alice, conv, 'original', 'key-2');
    const res = await sendRaw(alice, conv, { content: 'changed', clientMessageId: 'key-2' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('IDEMPOTENCY_CONFLICT');
    expect((await list(alice, conv)).map((m) => m.content)).toEqual(['original']);
  });

  it('the key is per sender: the other user may use the same key', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const mine = await send(alice, conv, 'from alice', 'shared');
    const theirs = await send(bob, conv, 'from bob', 'shared');
    expect(theirs.id).not.toBe(mine.id);
  });

  it('10 concurrent sends with one key leave exactly one message; all answers carry its id', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => sendRaw(alice, conv, { content: 'race', clientMessageId: 'race-key' })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
    const ids = new Set(results.map((r) => r.body.data.id));
    expect(ids.size).toBe(1);
    const stored = await list(alice, conv);
    expect(stored.map((m) => m.id)).toEqual([...ids]);
  });
});

describe('GET /messages/:id', () => {
  it('returns the message to both participants; unknown and malformed ids are 404 MESSAGE_NOT_FOUND', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const sent = await send(alice, conv, 'fetch me', 'f-1');
    for (const u of [alice, bob]) {
      const res = await ctx.api.get(`/messages/${sent.id}`, u.token);
      expect(res.status).toBe(200);
      expect(res.body.data).toEqual(sent);
    }
    for (const id of [randomUUID(), 'not-a-uuid', 'x'.repeat(200)]) {
      const res = await ctx.api.get(`/messages/${id}`, alice.token);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('MESSAGE_NOT_FOUND');
    }
  });
});

describe('POST /conversations/:id/read', () => {
  it('marks the other user\u2019s messages (never the caller\u2019s), sets readAt for the sender, and returns counts', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const m1 = await send(alice, conv, 'one');
    const m2 = await send(alice, conv, 'two');
    const mine = await send(bob, conv, 'bob speaks');
    const res = await ctx.api.call('POST', `/conversations/${conv}/read`, { token: bob.token });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.data).toEqual({ markedCount: 2, unreadCount: 0 });
    const seen = await list(alice, conv);
    for (const m of seen.filter((x) => x.senderId === alice.id)) expect(m.readAt).toMatch(ISO_MS);
    expect(seen.find((x) => x.id === mine.id)!.readAt).toBeNull();
    expect((await ctx.api.get(`/messages/${m1.id}`, alice.token)).body.data.readAt).toMatch(ISO_MS);
    expect((await ctx.api.get(`/messages/${m2.id}`, alice.token)).body.data.readAt).toMatch(ISO_MS);
    const again = await ctx.api.post(`/conversations/${conv}/read`, bob.token, {});
    expect(again.body.data).toEqual({ markedCount: 0, unreadCount: 0 });
  });

  it('with messageId marks up to and including it; an older id afterwards marks 0 (the marker never moves back)', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const [m1, m2, m3, m4] = [await send(alice, conv, '1'), await send(alice, conv, '2'), await send(alice, conv, '3'), await send(alice, conv, '4')];
    const res = await ctx.api.post(`/conversations/${conv}/read`, bob.token, { messageId: m2.id });
    expect(res.body.data).toEqual({ markedCount: 2, unreadCount: 2 });
    const byId = new Map((await list(alice, conv)).map((m) => [m.id, m.readAt]));
    expect(byId.get(m1.id)).toMatch(ISO_MS);
    expect(byId.get(m2.id)).toMatch(ISO_MS);
    expect(byId.get(m3.id)).toBeNull();
    expect(byId.get(m4.id)).toBeNull();
    const older = await ctx.api.post(`/conversations/${conv}/read`, bob.token, { messageId: m1.id });
    expect(older.body.data).toEqual({ markedCount: 0, unreadCount: 2 });
    const forward = await ctx.api.post(`/conversations/${conv}/read`, bob.token, { messageId: m4.id });
    expect(forward.body.data).toEqual({ markedCount: 2, unreadCount: 0 });
    const back = await ctx.api.post(`/conversations/${conv}/read`, bob.token, { messageId: m3.id });
    expect(back.body.data).toEqual({ markedCount: 0, unreadCount: 0 });
  });

  it('an unknown messageId is 404 MESSAGE_NOT_FOUND; an unknown body field is 400', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await send(alice, conv, 'hi');
    for (const messageId of [randomUUID(), 'garbage']) {
      const res = await ctx.api.post(`/conversations/${conv}/read`, bob.token, { messageId });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('MESSAGE_NOT_FOUND');
    }
    expectValidation(await ctx.api.post(`/conversations/${conv}/read`, bob.token, { upTo: 'x' }), '(root)');
  });
});

describe('participants only', () => {
  it('a non-participant gets 404 on every message and conversation route, as for an id that does not exist', async () => {
    const { alice, conv } = await conversationPair(ctx.api);
    const sent = await send(alice, conv, 'private');
    const eve = await knownUser(ctx.api, 'eve');
    const attempts = [
      ['GET', `/conversations/${conv}/messages`, 'CONVERSATION_NOT_FOUND'],
      ['POST', `/conversations/${conv}/messages`, 'CONVERSATION_NOT_FOUND', { content: 'intrude' }],
      ['POST', `/conversations/${conv}/read`, 'CONVERSATION_NOT_FOUND', {}],
      ['GET', `/conversations/${conv}`, 'CONVERSATION_NOT_FOUND'],
      ['GET', `/messages/${sent.id}`, 'MESSAGE_NOT_FOUND'],
    ] as const;
    for (const [method, path, code, body] of attempts) {
      const res = await ctx.api.call(method, path, { token: eve.token, ...(body ? { body } : {}) });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.error.code).toBe(code);
    }
    expect((await list(alice, conv)).map((m) => m.content)).toEqual(['private']);
    expect((await ctx.api.get(`/messages/${sent.id}`, alice.token)).body.data.readAt).toBeNull();
  });

  it('sending into, listing or reading a random uuid conversation is 404 CONVERSATION_NOT_FOUND', async () => {
    const alice = await knownUser(ctx.api, 'alice');
    const id = randomUUID();
    for (const res of [
      await sendRaw(alice, id, { content: 'hello?' }),
      await ctx.api.get(`/conversations/${id}/messages`, alice.token),
      await ctx.api.post(`/conversations/${id}/read`, alice.token, {}),
      await sendRaw(alice, 'not-a-uuid', { content: 'hello?' }),
      // An id longer than any id cannot exist either: 404, not a 400 from a length check.
      await sendRaw(alice, 'x'.repeat(200), { content: 'hello?' }),
      await ctx.api.get(`/conversations/${'x'.repeat(200)}`, alice.token),
      await ctx.api.get(`/conversations/${'x'.repeat(200)}/messages`, alice.token),
      await ctx.api.post(`/conversations/${'x'.repeat(200)}/read`, alice.token, {}),
    ]) {
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('CONVERSATION_NOT_FOUND');
    }
  });
});
