import { QueryClient } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';
import { ChatClient, type Conversation, type Message, type WebSocketFactory } from '../src';
import { applyNewMessage, flattenUnique, markMessagesRead, upsertMessage, type Pages } from '../src/react/cache';
import { chatKeys } from '../src/react/keys';
import { ChatStore } from '../src/react/store';

/**
 * The cache edits the provider makes from live events, on their own: pure
 * functions over TanStack's pages, and one store whose events are emitted by
 * hand (the React test drives the same code with the real system's events).
 */
let seq = 0;
const id = (n: number) => `0190${String(n).padStart(4, '0')}-0000-7000-8000-000000000000`;
function msg(n: number, over: Partial<Message> = {}): Message {
  return {
    id: id(n),
    conversationId: 'c1',
    senderId: 'bob',
    content: `m${n}`,
    clientMessageId: null,
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    readAt: null,
    ...over,
  };
}
/** Pages newest first, as the API answers them. */
function pages(...groups: Array<{ items: Message[]; hasMore: boolean }>): Pages<Message> {
  return {
    pages: groups.map((g) => ({ data: g.items, meta: { hasMore: g.hasMore, nextCursor: g.hasMore ? `cur${++seq}` : null } })),
    pageParams: groups.map((_, i) => (i === 0 ? undefined : `cur${i}`)),
  };
}
const ids = (d: Pages<Message>) => flattenUnique(d).map((m) => m.content);

function conversation(cid: string, updatedAt: string, over: Partial<Conversation> = {}): Conversation {
  return {
    id: cid,
    participant: { id: `p-${cid}`, username: `user_${cid}`, displayName: null, avatarUrl: null, isOnline: false, lastSeenAt: null },
    lastMessage: null,
    unreadCount: 0,
    blockStatus: { blockedByMe: false, blockedByThem: false, canMessage: true },
    createdAt: updatedAt,
    updatedAt,
    ...over,
  };
}

describe('upsertMessage', () => {
  it('puts a new message at its place in the first page, once, however often it is applied', () => {
    const data = pages({ items: [msg(5), msg(3)], hasMore: true }, { items: [msg(2), msg(1)], hasMore: false });
    const once = upsertMessage(data, msg(6));
    expect(ids(once)).toEqual(['m6', 'm5', 'm3', 'm2', 'm1']);
    expect(upsertMessage(once, msg(6))).toBe(once);
    expect(ids(upsertMessage(data, msg(4)))).toEqual(['m5', 'm4', 'm3', 'm2', 'm1']);
  });

  it('updates a message in place, keeping a read time it already had', () => {
    const read = msg(3, { readAt: '2026-01-01T00:01:00.000Z' });
    const data = pages({ items: [msg(5), read], hasMore: false });
    expect(upsertMessage(data, msg(3))).toBe(data);
    const edited = upsertMessage(data, msg(3, { content: 'edited' }));
    expect(flattenUnique(edited)[1]).toMatchObject({ content: 'edited', readAt: read.readAt });
  });

  it('leaves a message older than every loaded page to the page that will bring it', () => {
    const data = pages({ items: [msg(9), msg(8)], hasMore: true });
    expect(upsertMessage(data, msg(2))).toBe(data);
    const all = pages({ items: [msg(9), msg(8)], hasMore: false });
    expect(ids(upsertMessage(all, msg(2)))).toEqual(['m9', 'm8', 'm2']);
  });
});

describe('markMessagesRead', () => {
  it("marks the reader's received messages up to the marker, not their own nor later ones", () => {
    const data = pages({ items: [msg(4), msg(3, { senderId: 'alice' }), msg(2), msg(1)], hasMore: false });
    const next = markMessagesRead(data, { conversationId: 'c1', readerId: 'alice', lastReadMessageId: id(3), readAt: 'T' });
    expect(flattenUnique(next).map((m) => [m.content, m.readAt])).toEqual([
      ['m4', null],
      ['m3', null],
      ['m2', 'T'],
      ['m1', 'T'],
    ]);
    expect(markMessagesRead(next, { conversationId: 'c1', readerId: 'alice', lastReadMessageId: id(3), readAt: 'T2' })).toBe(next);
  });
});

describe('applyNewMessage', () => {
  const list = (): Pages<Conversation> => ({
    pages: [
      { data: [conversation('a', '2026-01-01T00:00:30.000Z'), conversation('b', '2026-01-01T00:00:20.000Z')], meta: { hasMore: true, nextCursor: 'x' } },
      { data: [conversation('c1', '2026-01-01T00:00:10.000Z')], meta: { hasMore: false, nextCursor: null } },
    ],
    pageParams: [undefined, 'x'],
  });

  it('sets the last message and moves the conversation to the top, from any page', () => {
    const { data, found } = applyNewMessage(list(), msg(40));
    expect(found).toBe(true);
    expect(data.pages[0]!.data.map((c) => c.id)).toEqual(['c1', 'a', 'b']);
    expect(data.pages[1]!.data).toEqual([]);
    expect(data.pages[0]!.data[0]).toMatchObject({ lastMessage: { id: id(40) }, updatedAt: msg(40).createdAt });
    expect(applyNewMessage(data, msg(40)).data).toBe(data);
  });

  it('an older message than the last one changes nothing; an unknown conversation is not found', () => {
    const { data } = applyNewMessage(list(), msg(40));
    expect(applyNewMessage(data, msg(35)).data).toBe(data);
    expect(applyNewMessage(data, msg(41, { conversationId: 'zz' }))).toEqual({ data, found: false });
  });
});

describe('ChatStore', () => {
  const NoSocket = class {
    constructor() {
      throw new Error('this test never connects');
    }
  } as unknown as WebSocketFactory;
  const setup = () => {
    const client = new ChatClient({ baseUrl: 'http://127.0.0.1:9', getToken: () => 'token', WebSocket: NoSocket, storage: null });
    const queryClient = new QueryClient();
    const store = new ChatStore(client, queryClient);
    const detach = store.attach();
    const emit = (type: string, payload: unknown) => (client as unknown as { emitter: { emit(t: string, p: unknown): void } }).emitter.emit(type, payload);
    return { client, queryClient, store, detach, emit };
  };

  it('an event that lands while its query is fetching is applied again to what the fetch brings', async () => {
    const { queryClient, emit, detach } = setup();
    let answer!: (d: Pages<Message>['pages'][number]) => void;
    const fetching = queryClient.fetchInfiniteQuery({
      queryKey: chatKeys.messages('c1'),
      queryFn: () => new Promise<Pages<Message>['pages'][number]>((resolve) => (answer = resolve)),
      initialPageParam: undefined as string | undefined,
    });
    await Promise.resolve();
    emit('message.new', { message: msg(7) }); // the fetch was answered before this message was stored
    answer({ data: [msg(6)], meta: { hasMore: false, nextCursor: null } });
    await fetching;
    expect(ids(queryClient.getQueryData<Pages<Message>>(chatKeys.messages('c1'))!)).toEqual(['m7', 'm6']);
    detach();
  });

  it('unread.updated sets the conversation and the totals; conversations with unread follow from the count before', () => {
    const { queryClient, emit, detach } = setup();
    queryClient.setQueryData(chatKeys.conversations(), {
      pages: [{ data: [conversation('c1', '2026-01-01T00:00:10.000Z', { unreadCount: 2 })], meta: { hasMore: false, nextCursor: null } }],
      pageParams: [undefined],
    });
    queryClient.setQueryData(chatKeys.unread(), { total: 5, conversations: 2 });
    emit('unread.updated', { total: 3, conversationId: 'c1', conversationUnread: 0 });
    expect(queryClient.getQueryData(chatKeys.unread())).toEqual({ total: 3, conversations: 1 });
    expect(queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations())!.pages[0]!.data[0]!.unreadCount).toBe(0);
    emit('unread.updated', { total: 4, conversationId: 'c1', conversationUnread: 1 });
    expect(queryClient.getQueryData(chatKeys.unread())).toEqual({ total: 4, conversations: 2 });
    detach();
  });

  it('presence events reach the list and the presence cache; a resync is remembered', () => {
    const { queryClient, store, emit, detach } = setup();
    queryClient.setQueryData(chatKeys.conversations(), {
      pages: [{ data: [conversation('c1', '2026-01-01T00:00:10.000Z')], meta: { hasMore: false, nextCursor: null } }],
      pageParams: [undefined],
    });
    emit('user.online', { userId: 'p-c1' });
    expect(queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations())!.pages[0]!.data[0]!.participant.isOnline).toBe(true);
    emit('user.offline', { userId: 'p-c1', lastSeenAt: 'T' });
    expect(queryClient.getQueryData(chatKeys.presence('p-c1'))).toEqual({ isOnline: false, lastSeenAt: 'T' });
    expect(store.getConnection().resyncedAt).toBeNull();
    emit('resync', { reason: 'retention' });
    expect(store.getConnection().resyncedAt).toBeGreaterThan(0);
    expect(queryClient.getQueryState(chatKeys.conversations())!.isInvalidated).toBe(true);
    detach();
  });
});
