import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationPair, eventually, type TestUser } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, type Frame, type WsClient } from './helpers/ws';

/**
 * SPEC 4: content is plain text. Apart from JavaScript's trim() it is stored
 * and returned exactly as sent: not HTML-escaped, not stripped, not
 * normalised. Each sample must come back identical, code unit for code unit
 * (and so byte for byte in UTF-8), from every place a client can read it:
 * the 201, the message list, GET /messages/:id, the recipient's
 * `message.new` frame, GET /events and the conversation list's lastMessage.
 */

const ctx = useStack();

let alice: TestUser;
let bob: TestUser;
let conv: string;
let a: WsClient; // alice's socket: sends over WebSocket
let b: WsClient; // bob's socket: receives message.new

beforeAll(async () => {
  ({ alice, bob, conv } = await conversationPair(ctx.api));
  a = (await connect(ctx.stack.gateway.port, { token: alice.token })).client;
  b = (await connect(ctx.stack.gateway.port, { token: bob.token })).client;
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

/** 5000 code points, 7500 UTF-16 units, 12,500 UTF-8 bytes: within the limit only if counted in code points. */
const FIVE_THOUSAND = 'a😀'.repeat(2500);

/** [name, what is sent, what must come back (SPEC's trim written out by hand, not computed)]. */
const SAMPLES: Array<[string, string, string]> = [
  ['HTML script tag', '<script>alert(1)</script>', '<script>alert(1)</script>'],
  ['HTML event handler', '<img src=x onerror=alert(1)>', '<img src=x onerror=alert(1)>'],
  ['HTML entities stay entities', '&lt;b&gt; &amp;amp; &#x3C;script&#62; &quot;', '&lt;b&gt; &amp;amp; &#x3C;script&#62; &quot;'],
  ['SQL: drop table', "'; DROP TABLE messages; --", "'; DROP TABLE messages; --"],
  ['SQL: or 1=1', '" OR 1=1 --', '" OR 1=1 --'],
  ['SQL: placeholders, LIKE wildcards, backslashes', "$1 $2::text %s %_ \\' \\\\ E'\\x00' ;", "$1 $2::text %s %_ \\' \\\\ E'\\x00' ;"],
  ['JSON-looking text with escapes', '{"content":"x","__proto__":{}} \\u0000 \\n \\"', '{"content":"x","__proto__":{}} \\u0000 \\n \\"'],
  ['emoji ZWJ sequences', '👩‍👩‍👧‍👦 👨🏽‍💻 🏳️‍🌈 🧑🏻‍🤝‍🧑🏿 ❤️‍🔥', '👩‍👩‍👧‍👦 👨🏽‍💻 🏳️‍🌈 🧑🏻‍🤝‍🧑🏿 ❤️‍🔥'],
  ['emoji skin tones and flags', '👋🏻👋🏼👋🏽👋🏾👋🏿 🇯🇵🇺🇳 #️⃣', '👋🏻👋🏼👋🏽👋🏾👋🏿 🇯🇵🇺🇳 #️⃣'],
  ['right-to-left with RLO override', 'مرحبا بالعالم שלום עולם \u202Eexe.txt\u202C \u200Fend\u2067iso\u2069', 'مرحبا بالعالم שלום עולם \u202Eexe.txt\u202C \u200Fend\u2067iso\u2069'],
  ['zero-width characters in the middle', 'zero\u200Bwidth\u200Djoiner\uFEFFbom\u2060wj\u200Cnj', 'zero\u200Bwidth\u200Djoiner\uFEFFbom\u2060wj\u200Cnj'],
  ['zero-width space at the edges is not white space', '\u200Bedges\u200B', '\u200Bedges\u200B'],
  ['combining characters (not normalised)', 'e\u0301 vs \u00e9, n\u0303, Z\u0335\u0321\u0322\u0327\u0328a\u0308\u0304lgo', 'e\u0301 vs \u00e9, n\u0303, Z\u0335\u0321\u0322\u0327\u0328a\u0308\u0304lgo'],
  ['astral plane characters', '𝕳𝖊𝖑𝖑𝖔 𠜎𠜱 𓀀 🀄 \u{10FFFD} \u{E0041}', '𝕳𝖊𝖑𝖑𝖔 𠜎𠜱 𓀀 🀄 \u{10FFFD} \u{E0041}'],
  ['noncharacters and the replacement character', 'x\uFFFEy\uFFFFz\uFFFD\u{1FFFF}', 'x\uFFFEy\uFFFFz\uFFFD\u{1FFFF}'],
  ['inner newlines, carriage returns and tabs are kept', 'line1\nline2\r\n\tindented\t\ttabs\r\rcr\n\n\nend', 'line1\nline2\r\n\tindented\t\ttabs\r\rcr\n\n\nend'],
  ['leading and trailing white space is trimmed (as trim() does)', ' \t\n\r\u000B\u000C\u00A0\u1680\u2003\u2028\u2029\u202F\u3000\uFEFFhello \u00A0 world\u00A0\n\u2029 ', 'hello \u00A0 world'],
  ['exactly 5000 code points (7500 UTF-16 units)', FIVE_THOUSAND, FIVE_THOUSAND],
  ['5000 code points once trimmed', `\n\t  ${FIVE_THOUSAND}  \r\n`, FIVE_THOUSAND],
  ['5000 code points of combining marks and ZWJ', 'e\u0301'.repeat(2000) + '👩‍👩‍👧'.repeat(200), 'e\u0301'.repeat(2000) + '👩‍👩‍👧'.repeat(200)],
];

/** Code units differ? Name the first difference, in code points, so a failure is readable for 5000-character samples. */
function expectSame(actual: unknown, expected: string, where: string): void {
  if (actual === expected) {
    expect(Buffer.from(actual, 'utf8').equals(Buffer.from(expected, 'utf8'))).toBe(true);
    return;
  }
  if (typeof actual !== 'string') throw new Error(`${where}: content is ${JSON.stringify(actual)}, not a string`);
  const x = [...actual];
  const y = [...expected];
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  const cp = (s: string | undefined) => (s === undefined ? 'end' : `U+${s.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`);
  throw new Error(
    `${where}: content differs at code point ${i} (got ${cp(x[i])}, expected ${cp(y[i])}); ` +
      `lengths ${x.length}/${y.length} code points, ${Buffer.byteLength(actual)}/${Buffer.byteLength(expected)} bytes; ` +
      `got ${JSON.stringify(actual.slice(0, 120))}, expected ${JSON.stringify(expected.slice(0, 120))}`,
  );
}

interface Sent {
  id: string;
  content: string;
  conversationId: string;
  senderId: string;
}

/** Every read path agrees with `expected` for message `sent`; `frameOnB` is Bob's message.new for it. */
async function expectEverywhere(sent: Sent, expected: string, frameOnB: Frame): Promise<void> {
  expectSame(frameOnB.payload.message.content, expected, 'recipient\u2019s WebSocket message.new');
  expect(frameOnB.payload.message.id).toBe(sent.id);

  for (const user of [alice, bob]) {
    const list = await ctx.api.get(`/conversations/${conv}/messages?limit=5`, user.token);
    expect(list.status).toBe(200);
    const item = list.body.data.find((m: Sent) => m.id === sent.id);
    expect(item, `message ${sent.id} in the list`).toBeDefined();
    expectSame(item.content, expected, `GET /conversations/:id/messages as ${user === alice ? 'sender' : 'recipient'}`);

    const one = await ctx.api.get(`/messages/${sent.id}`, user.token);
    expect(one.status).toBe(200);
    expectSame(one.body.data.content, expected, `GET /messages/:id as ${user === alice ? 'sender' : 'recipient'}`);
    expect(one.body.data).toEqual(item);
  }

  // GET /events carries the very event the socket carried.
  const seq = frameOnB.seq!;
  const events = await ctx.api.get(`/events?since=${seq - 1}&limit=1`, bob.token);
  expect(events.status).toBe(200);
  expect(events.body.data).toHaveLength(1);
  expectSame(events.body.data[0].payload.message.content, expected, 'GET /events');
  expect(events.body.data[0]).toEqual({ seq, type: 'message.new', payload: frameOnB.payload });

  // The conversation list is a derived view: within 1 s (SPEC 4).
  await eventually(async () => {
    for (const user of [alice, bob]) {
      const list = await ctx.api.get('/conversations?limit=100', user.token);
      const item = list.body.data.find((c: { id: string }) => c.id === conv);
      expect(item?.lastMessage?.id).toBe(sent.id);
      expectSame(item.lastMessage.content, expected, 'GET /conversations lastMessage');
    }
  }, 2000);
  const one = await ctx.api.get(`/conversations/${conv}`, bob.token);
  expectSame(one.body.data.lastMessage.content, expected, 'GET /conversations/:id lastMessage');
}

const messageNewFor = (client: WsClient, id: string) => client.next((f) => f.type === 'message.new' && f.payload?.message?.id === id, 5000);

describe('content round trip over REST', () => {
  for (const [name, input, expected] of SAMPLES) {
    it(name, async () => {
      const res = await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: input });
      expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(201);
      const sent = res.body.data as Sent;
      expectSame(sent.content, expected, 'the 201');
      expect(sent).toMatchObject({ conversationId: conv, senderId: alice.id });
      await expectEverywhere(sent, expected, await messageNewFor(b, sent.id));
    });
  }
});

describe('content round trip over WebSocket message.send', () => {
  for (const [name, input, expected] of SAMPLES) {
    it(name, async () => {
      const ack = await a.request('message.send', { conversationId: conv, content: input });
      expect(ack.type, JSON.stringify(ack).slice(0, 300)).toBe('ack');
      const sent = ack.payload.message as Sent;
      expectSame(sent.content, expected, 'the ack');
      // The sending socket gets message.new too (SPEC 5), with the same message.
      expect((await messageNewFor(a, sent.id)).payload.message).toEqual(sent);
      await expectEverywhere(sent, expected, await messageNewFor(b, sent.id));
    });
  }
});

describe('content limits and control characters', () => {
  const countMessages = async () => (await ctx.api.get(`/conversations/${conv}/messages?limit=100`, alice.token)).body.data.length as number;
  const expectRefused = (res: { status: number; body: any }, what: string) => {
    expect(res.status, `${what}: ${JSON.stringify(res.body).slice(0, 200)}`).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.any(String), requestId: expect.any(String) });
    expect(res.body.error.details, what).toEqual(expect.arrayContaining([expect.objectContaining({ path: 'content' })]));
  };

  it('5001 code points are 400 VALIDATION_FAILED, over REST and WebSocket, trimmed or not', async () => {
    const before = await countMessages();
    for (const content of [`${FIVE_THOUSAND}b`, `  ${FIVE_THOUSAND}😀 \n`, 'e\u0301'.repeat(2000) + '👩‍👩‍👧'.repeat(200) + 'x', 'a'.repeat(5001)]) {
      expectRefused(await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content }), `${[...content.trim()].length} code points`);
      const err = await a.request('message.send', { conversationId: conv, content });
      expect(err).toMatchObject({ type: 'error', payload: { code: 'VALIDATION_FAILED' } });
    }
    expect(await countMessages()).toBe(before);
  });

  // C0 other than \t \n \r, DEL, and C1: U+0000–0008, 000B, 000C, 000E–001F, 007F, 0080–009F.
  const CONTROLS = [
    ...Array.from({ length: 0x20 }, (_, i) => i).filter((i) => i !== 0x09 && i !== 0x0a && i !== 0x0d),
    0x7f,
    ...Array.from({ length: 0x20 }, (_, i) => 0x80 + i),
  ].map((c) => String.fromCharCode(c));
  const hex = (c: string) => `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;

  it(`each of the ${CONTROLS.length} control characters inside content is 400 VALIDATION_FAILED over REST, and nothing is stored`, async () => {
    const before = await countMessages();
    for (const c of CONTROLS) {
      expectRefused(await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `before${c}after` }), hex(c));
    }
    // At the edges too, where trim() does not remove them (U+000B and U+000C are white space to trim(), so they are not here).
    for (const c of CONTROLS.filter((x) => x !== '\u000B' && x !== '\u000C')) {
      expectRefused(await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `${c}edge` }), `leading ${hex(c)}`);
      expectRefused(await ctx.api.post(`/conversations/${conv}/messages`, alice.token, { content: `edge${c}` }), `trailing ${hex(c)}`);
    }
    expect(await countMessages()).toBe(before);
  });

  it('each control character inside content is VALIDATION_FAILED over WebSocket; the socket stays open', async () => {
    const before = await countMessages();
    for (const c of CONTROLS) {
      const err = await a.request('message.send', { conversationId: conv, content: `before${c}after` });
      expect(err, hex(c)).toMatchObject({ type: 'error', payload: { code: 'VALIDATION_FAILED', details: expect.arrayContaining([expect.objectContaining({ path: expect.stringContaining('content') })]) } });
    }
    expect((await a.request('ping')).type).toBe('pong');
    expect(await countMessages()).toBe(before);
  });
});
