import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@chat/platform';
import { startGateway } from '@chat/gateway';
import { eventually, knownUser, type TestUser, conversationPair } from './helpers/client';
import { useStack } from './helpers/stack';
import { connect, type Frame, type WsClient } from './helpers/ws';

const SOFT = 16 * 1024;
const HARD = 64 * 1024;
// Sends here exceed the per-minute limits on purpose: this file is about delivery and load.
const ctx = useStack({ WS_SOFT_BUFFER_BYTES: SOFT, WS_HARD_BUFFER_BYTES: HARD, RATE_LIMIT_SEND_PER_MIN: 100_000, RATE_LIMIT_WS_FRAMES_PER_MIN: 100_000 });

let gateway2: Awaited<ReturnType<typeof startGateway>>;
beforeAll(async () => {
  gateway2 = await startGateway({ ...ctx.stack.config, PORT: 0 }, createLogger('gateway2', 'silent'));
});
afterAll(async () => {
  await gateway2?.stop();
});

const open: WsClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});
async function socket(port: number, user: TestUser, since?: number) {
  const r = await connect(port, { token: user.token, ...(since === undefined ? {} : { since }) });
  open.push(r.client);
  return r;
}
const send = async (from: TestUser, conv: string, content: string) => {
  const res = await ctx.api.post(`/conversations/${conv}/messages`, from.token, { content });
  expect(res.status).toBe(201);
  return res.body.data.id as string;
};
async function metric(baseUrl: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
const seqs = (frames: Frame[]) => frames.map((f) => f.seq);
const upTo = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe('delivery across gateway instances', () => {
  it('a message sent by REST on gateway 1 reaches a socket on gateway 2, and a WS send on gateway 2 reaches gateway 1', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const { client: b } = await socket(gateway2.port, bob);
    const id = await send(alice, conv, 'across instances');
    expect(await b.nextOf('message.new')).toMatchObject({ seq: 1, payload: { message: { id, content: 'across instances' } } });
    expect(await b.nextOf('unread.updated')).toMatchObject({ seq: 2, payload: { total: 1, conversationId: conv, conversationUnread: 1 } });

    const { client: a } = await socket(ctx.stack.gateway.port, alice);
    const ack = await b.request('message.send', { conversationId: conv, content: 'back again' });
    expect(ack.type).toBe('ack');
    expect(await a.nextOf('message.new')).toEqual({ seq: 2, type: 'message.new', payload: { message: ack.payload.message } });
    expect(await a.nextOf('unread.updated')).toMatchObject({ seq: 3, payload: { total: 1, conversationUnread: 1 } });
  });

  it('a user with a socket on each gateway gets every event on both, in the same seq order', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const carol = await knownUser(ctx.api, 'carol');
    const conv2 = (await ctx.api.get(`/conversations/with/${bob.username}`, carol.token)).body.data.id as string;
    const [{ client: b1 }, { client: b2 }] = [await socket(ctx.stack.gateway.port, bob), await socket(gateway2.port, bob)];
    const reads: Frame[] = [];
    await Promise.all([
      (async () => {
        for (let i = 0; i < 20; i++) await send(alice, conv, `a${i}`);
      })(),
      (async () => {
        for (let i = 0; i < 20; i++) await send(carol, conv2, `c${i}`);
      })(),
      (async () => {
        for (let i = 0; i < 5; i++) reads.push(await b2.request('message.read', { conversationId: i % 2 ? conv : conv2 }));
      })(),
    ]);
    reads.push(await b1.request('message.read', { conversationId: conv }));
    const marking = reads.filter((r) => r.payload.markedCount > 0).length;
    // message.new + unread.updated per message; message.read + unread.updated per read that marked something
    const total = 20 * 2 * 2 + marking * 2;
    expect((await ctx.api.get('/events?limit=1', bob.token)).body.meta.latestSeq).toBe(total);
    const [on1, on2] = [await b1.waitDurable(total), await b2.waitDurable(total)];
    await Promise.all([b1.none((f) => f.seq !== undefined, 300), b2.none((f) => f.seq !== undefined, 300)]);
    expect(seqs(on1)).toEqual(upTo(1, total));
    expect(on2).toEqual(on1);
    expect(on1.filter((f) => f.type === 'message.new')).toHaveLength(40);
    expect(on1.filter((f) => f.type === 'message.read')).toHaveLength(marking);
    expect(marking).toBeGreaterThanOrEqual(1);
    expect(on1.at(-1)).toMatchObject({ type: 'unread.updated', payload: { conversationId: conv, conversationUnread: 0 } });
  });
});

describe('a slow reader', () => {
  it('is closed with 1013 past the hard cap, the gateway stays bounded, and it resumes with since losing nothing', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const gw = ctx.stack.gateway;
    const baseline = gw.hub.size;
    const { client } = await socket(gw.port, bob);
    expect(gw.hub.size).toBe(baseline + 1);
    const raw = (client.ws as unknown as { _socket: Socket })._socket;
    raw.pause(); // never reads again: frames pile up in the kernel, then in the gateway's send buffer
    const rssBefore = process.memoryUsage().rss;
    const big = '\u{1F600}'.repeat(4000); // 16 000 bytes of UTF-8 in each message.new
    const ids: string[] = [];
    const sendBatch = async (n: number) => ids.push(...(await Promise.all(Array.from({ length: n }, (_, i) => send(alice, conv, `${big} ${ids.length + i}`)))));

    while ((await metric(ctx.stack.baseUrl, 'chat_ws_dropped_events_total', 'class="durable_closed"')) === 0) {
      expect(ids.length, 'the gateway never closed the slow socket').toBeLessThan(3000);
      await sendBatch(20);
    }
    const atClose = ids.length;
    await sendBatch(200); // nothing more accumulates for a socket that is closing
    // Every service runs in this process: most of this growth (~120 MB) is theirs, and is the same without a slow socket.
    const growthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    expect(growthMb).toBeLessThan(200);

    raw.resume();
    expect((await client.closed).code).toBe(1013);
    await eventually(async () => expect(gw.hub.size).toBe(baseline));
    const seen = client.durable();
    expect(seqs(seen)).toEqual(upTo(1, seen.length));
    // The gateway stopped writing at the close: nothing sent afterwards was written or kept for this socket.
    expect(seen.length).toBeLessThanOrEqual(2 * atClose);
    expect(2 * ids.length - seen.length).toBeGreaterThanOrEqual(2 * 200);
    expect(await metric(ctx.stack.baseUrl, 'chat_ws_dropped_events_total', 'class="durable_closed"')).toBe(1);

    const last = seen.at(-1)?.seq ?? 0;
    const { client: again, hello } = await socket(gw.port, bob, last);
    expect(hello.payload).toMatchObject({ replayed: 2 * ids.length - last, resync: false, seq: 2 * ids.length });
    const replayed = again.durable();
    expect(seqs(replayed)).toEqual(upTo(last + 1, 2 * ids.length - last));
    const newIds = [...seen, ...replayed].filter((f) => f.type === 'message.new').map((f) => f.payload.message.id);
    expect(new Set(newIds)).toEqual(new Set(ids));
    expect(newIds).toHaveLength(ids.length);
  }, 120_000);
});

describe('connections at scale', () => {
  it('one gateway holds 2,000 concurrent connections, counted in hub.size and chat_ws_connections', async () => {
    const gw = ctx.stack.gateway;
    await eventually(async () => expect(gw.hub.size).toBe(0));
    const users = await Promise.all(Array.from({ length: 5 }, (_, i) => knownUser(ctx.api, `load${i}`)));
    const started = Date.now();
    const clients: WsClient[] = [];
    for (let batch = 0; batch < 20; batch++) {
      const opened = await Promise.all(Array.from({ length: 100 }, (_, i) => connect(gw.port, { token: users[(batch * 100 + i) % users.length]!.token })));
      for (const { client, hello } of opened) {
        expect(hello.type).toBe('hello');
        clients.push(client);
      }
    }
    const elapsed = Date.now() - started;
    expect(clients).toHaveLength(2000);
    expect(gw.hub.size).toBe(2000);
    expect(await metric(ctx.stack.baseUrl, 'chat_ws_connections')).toBe(2000);
    expect(elapsed).toBeLessThan(60_000);

    // Every one of them is live: a message to one user reaches all 400 of that user's sockets.
    const conv = (await ctx.api.get(`/conversations/with/${users[1]!.username}`, users[0]!.token)).body.data.id as string;
    const id = await send(users[0]!, conv, 'to everyone');
    const ofUser1 = clients.filter((_, i) => i % users.length === 1);
    expect(ofUser1).toHaveLength(400);
    await Promise.all(ofUser1.map((c) => c.next((f) => f.type === 'message.new' && f.payload.message.id === id, 10_000)));

    for (let i = 0; i < clients.length; i += 200) await Promise.all(clients.slice(i, i + 200).map((c) => c.close()));
    await eventually(async () => expect(gw.hub.size).toBe(0), 10_000);
    expect(await metric(ctx.stack.baseUrl, 'chat_ws_connections')).toBe(0);
  }, 120_000);
});
