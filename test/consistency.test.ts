import { describe, expect, it } from 'vitest';
import { eventually, type Api, type TestUser, conversationPair } from './helpers/client';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { eventStreamName } from '@chat/contracts';
import { createLogger } from '@chat/platform';
import { startConversationsService } from '@chat/conversations';
import { useStack } from './helpers/stack';

const ctx = useStack();

/** Alice, Bob (who has made one request) and the conversation Alice opens with Bob. */

async function unreadInMessages(a: Api, reader: TestUser, conversationId: string): Promise<number> {
  const page = await a.get(`/conversations/${conversationId}/messages?limit=100`, reader.token);
  return page.body.data.filter((m: { senderId: string; readAt: string | null }) => m.senderId !== reader.id && m.readAt === null).length;
}

describe('derived conversation state under concurrency', () => {
  it('unread counts, last message and activity agree with the messages after concurrent sends and reads', async () => {
    const a = ctx.api;
    const { alice, bob, conv } = await conversationPair(ctx.api);

    const sends = (from: TestUser, n: number) =>
      Array.from({ length: n }, (_, i) => a.post(`/conversations/${conv}/messages`, from.token, { content: `${from.username} ${i}` }));
    const reads = (who: TestUser, n: number) => Array.from({ length: n }, () => a.post(`/conversations/${conv}/read`, who.token, {}));
    const results = await Promise.all([...sends(alice, 20), ...sends(bob, 20), ...reads(alice, 8), ...reads(bob, 8)]);
    for (const r of results) expect([200, 201]).toContain(r.status);

    const newest = (await a.get(`/conversations/${conv}/messages?limit=1`, alice.token)).body.data[0];
    for (const user of [alice, bob]) {
      const truth = await unreadInMessages(a, user, conv);
      const total = (await a.get('/conversations/unread-count', user.token)).body.data;
      expect(total.total).toBe(truth);
      await eventually(async () => {
        const item = (await a.get(`/conversations/${conv}`, user.token)).body.data;
        expect(item.unreadCount).toBe(truth);
        expect(item.lastMessage.id).toBe(newest.id);
        expect(item.updatedAt).toBe(newest.createdAt);
      });
    }
  });

  it('the message list order is the commit order: every page is strictly newest first', async () => {
    const a = ctx.api;
    const { alice, bob, conv } = await conversationPair(ctx.api);
    await Promise.all(Array.from({ length: 30 }, (_, i) => a.post(`/conversations/${conv}/messages`, i % 2 ? alice.token : bob.token, { content: `m${i}` })));
    const list = (await a.get(`/conversations/${conv}/messages?limit=100`, alice.token)).body.data as Array<{ createdAt: string; id: string }>;
    expect(list).toHaveLength(30);
    for (let i = 1; i < list.length; i++) expect(list[i - 1]!.createdAt >= list[i]!.createdAt).toBe(true);
  });

  it('replaying every event from the start of the stream changes no conversation list', async () => {
    const a = ctx.api;
    const { alice, bob, conv } = await conversationPair(ctx.api);
    for (let i = 0; i < 5; i++) await a.post(`/conversations/${conv}/messages`, alice.token, { content: `a${i}` });
    await a.post(`/conversations/${conv}/read`, bob.token, {});
    await a.post(`/conversations/${conv}/messages`, bob.token, { content: 'reply' });
    const settled = async () =>
      eventually(async () => {
        const view = (await a.get(`/conversations/${conv}`, alice.token)).body.data;
        expect(view.lastMessage.content).toBe('reply');
        return [view, (await a.get(`/conversations/${conv}`, bob.token)).body.data];
      });
    const before = await settled();

    const { stack } = ctx;
    await stack.services.conversations.stop();
    const nc = await connect({ servers: stack.config.NATS_URL });
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(eventStreamName(stack.config.NATS_PREFIX), 'conversations-projection');
    const replayed = await startConversationsService(stack.config, createLogger('conversations', 'silent'));
    stack.services.conversations = replayed;
    await eventually(async () => {
      const info = await jsm.consumers.info(eventStreamName(stack.config.NATS_PREFIX), 'conversations-projection');
      expect(info.num_pending + info.num_ack_pending).toBe(0);
    });
    expect(await settled()).toEqual(before);

    // A stale event delivered late (version 1 of this conversation) must not move anything back.
    const stale = { ...before[0].lastMessage, id: '00000000-0000-7000-8000-000000000000', content: 'stale' };
    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    await js.publish(
      `${stack.config.NATS_PREFIX}.events.message.created`,
      JSON.stringify({ eventId: crypto.randomUUID(), conversationId: conv, version: 1, lastMessage: stale, message: stale, unread: [{ userId: alice.id, count: 99 }] }),
    );
    await eventually(async () => {
      const info = await jsm.consumers.info(eventStreamName(stack.config.NATS_PREFIX), 'conversations-projection');
      expect(info.delivered.stream_seq).toBeGreaterThan(0);
      expect(info.num_pending + info.num_ack_pending).toBe(0);
    });
    await nc.close();
    expect(await settled()).toEqual(before);
  });
});
