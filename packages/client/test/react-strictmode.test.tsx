// @vitest-environment jsdom
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode, useState } from 'react';
import { flushSync } from 'react-dom';
import { createRoot } from 'react-dom/client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WS from 'ws';
import { ChatClient, type WebSocketFactory } from '../src';
import {
  ChatProvider,
  useChatConnection,
  useConversations,
  useMessageActions,
  useMessages,
  usePresence,
  useSearchMessages,
  useSendMessage,
  useUnreadCount,
  type MessageItem,
} from '../src/react';
import { api, conversationPair, eventually, type Api, type TestUser } from '../../../test/helpers/client';
import { startStackProcess, type StackProcess } from './stack-process';

/**
 * The React bindings in StrictMode (mount, unmount, mount on the first
 * render) against the real running system: one connection, a live cache
 * fed by events (no refetch), and optimistic sends shown once.
 */
// Updates come from the network at any moment, not from the test's own acts: React schedules
// them as in a browser, the test polls, and flushSync renders where it must see a render at once.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;
// The jsdom environment puts jsdom's Uint8Array on the global, while Node's TextEncoder (and
// Buffer) make Node's: jose's `instanceof Uint8Array` would refuse the tokens' keys. Node's, again.
globalThis.Uint8Array = Object.getPrototypeOf(Buffer.prototype).constructor as Uint8ArrayConstructor;

// The system runs in a child process (see stack-process.ts: it cannot start under jsdom's transform).
let stack: StackProcess | undefined;
const ctx = {
  get api(): Api {
    return api(ctx.baseUrl);
  },
  get baseUrl(): string {
    if (!stack) throw new Error('the stack has not started');
    return stack.baseUrl;
  },
};
beforeAll(async () => {
  stack = await startStackProcess();
});
afterAll(async () => {
  await stack?.stop();
});
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** `ws`, counting the sockets made: the client's only way to open one. */
function countingWebSocket() {
  const sockets: WS[] = [];
  class Counting extends WS {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  return { WebSocket: Counting as unknown as WebSocketFactory, sockets };
}

interface Probe {
  connection: ReturnType<typeof useChatConnection>;
  list: ReturnType<typeof useConversations>;
  messages: ReturnType<typeof useMessages>;
  sender: ReturnType<typeof useSendMessage>;
  unread: ReturnType<typeof useUnreadCount>;
  peer: ReturnType<typeof usePresence>;
  actions: ReturnType<typeof useMessageActions>;
  search: ReturnType<typeof useSearchMessages>;
  setQuery: (q: string) => void;
}

function mount(user: TestUser, conv: string, peerId: string) {
  const { WebSocket, sockets } = countingWebSocket();
  const client = new ChatClient({ baseUrl: ctx.baseUrl, getToken: () => user.token, WebSocket, storage: null });
  const listCalls = vi.spyOn(client.rest, 'listConversations');
  const messageCalls = vi.spyOn(client.rest, 'listMessages');
  const retains = vi.spyOn(client, 'retain');
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const renders: MessageItem[][] = [];
  const probe = {} as Probe;
  function Probe() {
    probe.connection = useChatConnection();
    probe.list = useConversations();
    probe.messages = useMessages(conv);
    probe.sender = useSendMessage(conv);
    probe.unread = useUnreadCount();
    probe.peer = usePresence(peerId);
    probe.actions = useMessageActions(conv);
    const [q, setQuery] = useState('');
    probe.setQuery = setQuery;
    probe.search = useSearchMessages(q, { limit: 2 });
    renders.push(probe.messages.messages);
    return null;
  }
  const container = document.createElement('div');
  const root = createRoot(container);
  flushSync(() => {
    root.render(
      <StrictMode>
        <QueryClientProvider client={queryClient}>
          <ChatProvider client={client}>
            <Probe />
          </ChatProvider>
        </QueryClientProvider>
      </StrictMode>,
    );
  });
  let unmounted = false;
  const unmount = () => {
    if (unmounted) return;
    unmounted = true;
    root.unmount();
  };
  cleanups.push(() => {
    unmount();
    client.close();
    queryClient.clear();
  });
  return { client, sockets, listCalls, messageCalls, retains, probe, renders, unmount };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls what the last render saw. */
async function until(check: () => void, timeoutMs = 8000): Promise<void> {
  await eventually(async () => check(), timeoutMs, 20);
}

async function presenceOf(viewer: TestUser, userId: string) {
  const res = await ctx.api.get(`/presence?userIds=${userId}`, viewer.token);
  expect(res.status).toBe(200);
  return res.body.data[userId] as { isOnline: boolean; lastSeenAt: string | null };
}

describe('@chat/client/react in StrictMode against the running system', () => {
  it('opens exactly one WebSocket, and the user is online; unmounting disconnects and the user goes offline', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const ui = mount(alice, conv, bob.id);
    await until(() => expect(ui.probe.connection.state).toBe('open'));
    expect(ui.probe.connection.lastSeq).toBe(ui.client.lastSeq);
    expect(ui.probe.connection.resyncedAt).toBeNull();
    // StrictMode mounted, unmounted and mounted the provider: still one socket, and it stays one.
    await sleep(300);
    expect(ui.retains).toHaveBeenCalledTimes(2); // StrictMode did run the effect twice
    expect(ui.sockets).toHaveLength(1);
    expect(ui.sockets[0]!.readyState).toBe(WS.OPEN);
    await eventually(async () => expect((await presenceOf(bob, alice.id)).isOnline).toBe(true), 5000);

    ui.unmount();
    await until(() => expect(ui.client.state).toBe('idle'));
    await until(() => expect(ui.sockets[0]!.readyState).toBe(WS.CLOSED));
    expect(ui.sockets).toHaveLength(1);
    await eventually(async () => expect((await presenceOf(bob, alice.id)).isOnline).toBe(false), 10_000);
  });

  it("a message from the other user arrives in useMessages, the list's lastMessage and the unread count, with no refetch", async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const ui = mount(alice, conv, bob.id);
    await until(() => {
      expect(ui.probe.connection.state).toBe('open');
      expect(ui.probe.list.conversations.map((c) => c.id)).toContain(conv);
      expect(ui.probe.messages.isLoading).toBe(false);
      expect(ui.probe.unread.data).toBeDefined();
    });
    expect(ui.probe.messages.messages).toEqual([]);
    expect(ui.probe.unread.data).toEqual({ total: 0, conversations: 0 });
    const listCallsBefore = ui.listCalls.mock.calls.length;
    expect(listCallsBefore).toBe(1);

    const res = await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'hi alice, from REST' });
    expect(res.status).toBe(201);
    const id = res.body.data.id as string;
    await until(() => {
      expect(ui.probe.messages.messages.map((m) => [m.id, m.content, m.state, m.mine])).toEqual([[id, 'hi alice, from REST', 'sent', false]]);
      const item = ui.probe.list.conversations.find((c) => c.id === conv)!;
      expect(item.lastMessage?.id).toBe(id);
      expect(item.unreadCount).toBe(1);
      expect(ui.probe.unread.data).toEqual({ total: 1, conversations: 1 });
    });
    expect(ui.probe.list.conversations[0]!.id).toBe(conv);
    expect(ui.listCalls.mock.calls.length).toBe(listCallsBefore);
  });

  it('useSendMessage shows the pending item at once, then exactly one sent item; the read receipt arrives by event', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const ui = mount(alice, conv, bob.id);
    await until(() => {
      expect(ui.probe.connection.state).toBe('open');
      expect(ui.probe.messages.isLoading).toBe(false);
      expect(ui.probe.list.isSuccess).toBe(true);
    });
    let clientMessageId = '';
    flushSync(() => {
      clientMessageId = ui.probe.sender.send('  hello bob  ')!.clientMessageId;
    });
    // Right after the send's render: the item, pending, not yet stored.
    expect(ui.probe.messages.messages).toMatchObject([{ clientMessageId, content: 'hello bob', state: 'pending', mine: true, id: null }]);

    await until(() => expect(ui.probe.messages.messages).toMatchObject([{ clientMessageId, content: 'hello bob', state: 'sent', mine: true }]));
    const sent = ui.probe.messages.messages[0]!;
    expect(sent.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent.key).toBe(`c:${clientMessageId}`); // the same element from pending to sent
    // Never shown twice, in any render (the ack and the echoed message.new both reconcile it).
    for (const items of ui.renders) expect(items.filter((m) => m.clientMessageId === clientMessageId).length).toBeLessThanOrEqual(1);
    await sleep(300);
    expect(ui.probe.messages.messages.filter((m) => m.clientMessageId === clientMessageId)).toHaveLength(1);
    const stored = await ctx.api.get(`/conversations/${conv}/messages`, alice.token);
    expect(stored.body.data.map((m: { id: string }) => m.id)).toEqual([sent.id]);
    expect(ui.probe.list.conversations.find((c) => c.id === conv)!.lastMessage?.id).toBe(sent.id);

    // Bob reads it over REST: alice's copy gets readAt from the message.read event.
    expect(sent.readAt).toBeNull();
    expect((await ctx.api.post(`/conversations/${conv}/read`, bob.token, {})).status).toBe(200);
    await until(() => expect(ui.probe.messages.messages[0]!.readAt).not.toBeNull());
    expect(ui.listCalls.mock.calls.length).toBe(1);
  });

  it("edits, deletes and reactions reach useMessages and the list's lastMessage by event, with no refetch; useMessageActions' own edit shows when answered", async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const ui = mount(alice, conv, bob.id);
    await until(() => {
      expect(ui.probe.connection.state).toBe('open');
      expect(ui.probe.list.conversations.map((c) => c.id)).toContain(conv);
      expect(ui.probe.messages.isLoading).toBe(false);
      expect(ui.probe.unread.data).toBeDefined();
    });
    const b1 = (await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'b1 original' })).body.data;
    const b2 = (await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content: 'b2 secret' })).body.data;
    await until(() => expect(ui.probe.messages.messages.map((m) => m.content)).toEqual(['b1 original', 'b2 secret']));

    expect((await ctx.api.call('PATCH', `/conversations/${conv}/messages/${b1.id}`, { token: bob.token, body: { content: 'b1 edited' } })).status).toBe(200);
    await until(() => expect(ui.probe.messages.messages[0]).toMatchObject({ id: b1.id, content: 'b1 edited', deletedAt: null }));
    expect(ui.probe.messages.messages[0]!.editedAt).not.toBeNull();

    expect((await ctx.api.del(`/conversations/${conv}/messages/${b2.id}`, bob.token)).status).toBe(200);
    await until(() => {
      expect(ui.probe.messages.messages[1]).toMatchObject({ id: b2.id, content: '', reactions: [] });
      expect(ui.probe.messages.messages[1]!.deletedAt).not.toBeNull();
      const item = ui.probe.list.conversations.find((c) => c.id === conv)!;
      expect(item.lastMessage).toMatchObject({ id: b2.id, content: '' });
      expect(item.unreadCount).toBe(1); // the deleted one was unread
      expect(ui.probe.unread.data).toEqual({ total: 1, conversations: 1 });
    });

    let clientMessageId = '';
    flushSync(() => {
      clientMessageId = ui.probe.sender.send('a1 typo')!.clientMessageId;
    });
    await until(() => expect(ui.probe.messages.messages.find((m) => m.clientMessageId === clientMessageId)?.state).toBe('sent'));
    const a1 = ui.probe.messages.messages.find((m) => m.clientMessageId === clientMessageId)!;
    const answer = await ui.probe.actions.edit(a1.id!, 'a1 fixed');
    expect(answer).toMatchObject({ id: a1.id, content: 'a1 fixed' });
    await until(() => expect(ui.probe.messages.messages.find((m) => m.id === a1.id)).toMatchObject({ content: 'a1 fixed', editedAt: answer.editedAt, key: a1.key }));
    await until(() => expect(ui.probe.list.conversations.find((c) => c.id === conv)!.lastMessage).toMatchObject({ id: a1.id, content: 'a1 fixed' }));

    expect((await ctx.api.put(`/conversations/${conv}/messages/${a1.id}/reactions/${encodeURIComponent('👍')}`, bob.token)).status).toBe(200);
    await until(() => expect(ui.probe.messages.messages.find((m) => m.id === a1.id)!.reactions).toEqual([{ emoji: '👍', userIds: [bob.id] }]));
    await ui.probe.actions.toggleReaction(ui.probe.messages.messages.find((m) => m.id === a1.id)!, '👍');
    await until(() => expect(ui.probe.messages.messages.find((m) => m.id === a1.id)!.reactions).toEqual([{ emoji: '👍', userIds: [bob.id, alice.id] }]));
    await ui.probe.actions.toggleReaction(ui.probe.messages.messages.find((m) => m.id === a1.id)!, '👍');
    await until(() => expect(ui.probe.messages.messages.find((m) => m.id === a1.id)!.reactions).toEqual([{ emoji: '👍', userIds: [bob.id] }]));

    await expect(ui.probe.actions.edit(b1.id, 'not mine')).rejects.toMatchObject({ code: 'NOT_SENDER' });
    expect(ui.listCalls.mock.calls.length).toBe(1);
    expect(ui.messageCalls.mock.calls.length).toBe(1);
  });

  it('useSearchMessages asks nothing for a blank query, pages through the results, and a deletion takes its hit out', async () => {
    const { alice, bob, conv } = await conversationPair(ctx.api);
    const sent: Array<{ id: string }> = [];
    for (const content of ['lunch on monday?', 'Lunch, then a walk', 'no match here', 'lunchtime!'])
      sent.push((await ctx.api.post(`/conversations/${conv}/messages`, bob.token, { content })).body.data);
    const ui = mount(alice, conv, bob.id);
    const searches = vi.spyOn(ui.client.rest, 'searchMessages');
    await until(() => expect(ui.probe.connection.state).toBe('open'));
    expect(ui.probe.search.results).toEqual([]);
    expect(searches).not.toHaveBeenCalled();

    flushSync(() => ui.probe.setQuery('  LUNCH '));
    await until(() => expect(ui.probe.search.results.map((h) => h.message.content)).toEqual(['lunchtime!', 'Lunch, then a walk']));
    expect(ui.probe.search.hasNextPage).toBe(true);
    expect(ui.probe.search.results[0]!.conversation).toMatchObject({ id: conv, participant: { id: bob.id, username: bob.username } });
    await ui.probe.search.fetchNextPage();
    await until(() => expect(ui.probe.search.results.map((h) => h.message.content)).toEqual(['lunchtime!', 'Lunch, then a walk', 'lunch on monday?']));
    expect(ui.probe.search.hasNextPage).toBe(false);

    expect((await ctx.api.del(`/conversations/${conv}/messages/${sent[1]!.id}`, bob.token)).status).toBe(200);
    await until(() => expect(ui.probe.search.results.map((h) => h.message.content)).toEqual(['lunchtime!', 'lunch on monday?']));
    expect(searches).toHaveBeenCalledTimes(2); // the deletion came by event, not by asking again
  });
});
