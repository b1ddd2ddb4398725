import { QueryClient } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';
import { ChatClient, type Conversation, type Message, type SearchResult, type WebSocketFactory } from '../src';
import { applyNewMessage, asTombstone, flattenUnique, markMessagesRead, upsertMessage, withEdit, withReactions, type Pages } from '../src/react/cache';
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
    editedAt: null,
    deletedAt: null,
    reactions: [],
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

describe('changes of a stored message (SPEC 10)', () => {
  const T1 = '2026-01-01T00:05:00.000Z';
  const T2 = '2026-01-01T00:06:00.000Z';

  it('an edit replaces content and editedAt, once; an older edit never undoes a later one', () => {
    const m = msg(1);
    const first = withEdit(m, msg(1, { content: 'fixed', editedAt: T1 }));
    expect(first).toMatchObject({ content: 'fixed', editedAt: T1, id: m.id, createdAt: m.createdAt });
    expect(withEdit(first, msg(1, { content: 'fixed', editedAt: T1 }))).toBe(first);
    const second = withEdit(first, msg(1, { content: 'fixed again', editedAt: T2 }));
    expect(withEdit(second, msg(1, { content: 'fixed', editedAt: T1 }))).toBe(second);
    expect(withEdit(second, msg(1))).toBe(second); // a copy from before any edit
  });

  it('a tombstone has no content and no reactions, and stays one whatever comes after', () => {
    const m = msg(1, { content: 'secret', editedAt: T1, reactions: [{ emoji: '👍', userIds: ['alice'] }], readAt: T1 });
    const gone = asTombstone(m, T2);
    expect(gone).toEqual({ ...m, content: '', deletedAt: T2, reactions: [] });
    expect(asTombstone(gone, T2)).toBe(gone);
    expect(withEdit(gone, msg(1, { content: 'secret again', editedAt: '2026-01-02T00:00:00.000Z' }))).toBe(gone);
    expect(withReactions(gone, [{ emoji: '👍', userIds: ['bob'] }])).toBe(gone);
    // A late copy of the message as sent (a send's ack, a replayed message.new) does not bring the content back.
    const data = pages({ items: [gone], hasMore: false });
    expect(upsertMessage(data, m)).toBe(data);
  });

  it('reactions are replaced as they are now; the same reactions change nothing', () => {
    const m = msg(1);
    const one = withReactions(m, [{ emoji: '👍', userIds: ['alice'] }]);
    expect(one.reactions).toEqual([{ emoji: '👍', userIds: ['alice'] }]);
    expect(withReactions(one, [{ emoji: '👍', userIds: ['alice'] }])).toBe(one);
    expect(withReactions(one, []).reactions).toEqual([]);
  });

  it('an older copy of an edited message (a fetch answered before the edit) keeps the edit, and takes the rest', () => {
    const edited = msg(3, { content: 'edited', editedAt: T1 });
    const data = pages({ items: [edited], hasMore: false });
    const next = upsertMessage(data, msg(3, { readAt: T2 }));
    expect(flattenUnique(next)[0]).toMatchObject({ content: 'edited', editedAt: T1, readAt: T2 });
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

  const listOf = (...cs: Conversation[]): Pages<Conversation> => ({ pages: [{ data: cs, meta: { hasMore: false, nextCursor: null } }], pageParams: [undefined] });
  const hit = (m: Message): SearchResult => ({ message: m, conversation: { id: m.conversationId, participant: { id: 'bob', username: 'bob', displayName: null, avatarUrl: null } } });
  const searchPages = (...hits: SearchResult[]): Pages<SearchResult> => ({ pages: [{ data: hits, meta: { hasMore: false, nextCursor: null } }], pageParams: [undefined] });

  it('message.updated edits the message in its pages, the list and the open conversation, and in search results', () => {
    const { queryClient, emit, detach } = setup();
    const last = msg(2);
    queryClient.setQueryData(chatKeys.messages('c1'), pages({ items: [last, msg(1)], hasMore: false }));
    queryClient.setQueryData(chatKeys.conversations(), listOf(conversation('c1', last.createdAt, { lastMessage: last })));
    queryClient.setQueryData(chatKeys.conversation('c1'), conversation('c1', last.createdAt, { lastMessage: last }));
    queryClient.setQueryData(chatKeys.search('m2'), searchPages(hit(last)));
    const edited = msg(2, { content: 'm2, fixed', editedAt: '2026-01-01T00:05:00.000Z' });
    emit('message.updated', { message: edited });

    const messages = flattenUnique(queryClient.getQueryData<Pages<Message>>(chatKeys.messages('c1')));
    expect(messages.map((m) => [m.content, m.editedAt])).toEqual([
      ['m2, fixed', edited.editedAt],
      ['m1', null],
    ]);
    const list = queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations())!;
    expect(list.pages[0]!.data[0]!.lastMessage).toMatchObject({ content: 'm2, fixed', editedAt: edited.editedAt });
    expect(list.pages[0]!.data[0]!.updatedAt).toBe(last.createdAt); // an edit is not new activity
    expect(queryClient.getQueryData<Conversation>(chatKeys.conversation('c1'))!.lastMessage!.content).toBe('m2, fixed');
    expect(queryClient.getQueryData<Pages<SearchResult>>(chatKeys.search('m2'))!.pages[0]!.data[0]!.message.content).toBe('m2, fixed');

    // The same event again (a replay overlapping) and the answer to the edit change nothing more.
    const before = queryClient.getQueryData(chatKeys.messages('c1'));
    emit('message.updated', { message: edited });
    expect(queryClient.getQueryData(chatKeys.messages('c1'))).toBe(before);
    detach();
  });

  it('message.deleted leaves a tombstone in every cached place, and takes the message out of search results', () => {
    const { queryClient, emit, detach } = setup();
    const secret = msg(2, { content: 'the secret', reactions: [{ emoji: '👍', userIds: ['alice'] }] });
    queryClient.setQueryData(chatKeys.messages('c1'), pages({ items: [secret, msg(1)], hasMore: false }));
    queryClient.setQueryData(chatKeys.conversations(), listOf(conversation('c1', secret.createdAt, { lastMessage: secret, unreadCount: 1 })));
    queryClient.setQueryData(chatKeys.conversation('c1'), conversation('c1', secret.createdAt, { lastMessage: secret }));
    queryClient.setQueryData(chatKeys.search('secret'), searchPages(hit(secret)));
    queryClient.setQueryData(chatKeys.search('m', 'c1'), searchPages(hit(secret), hit(msg(1))));
    const deletedAt = '2026-01-01T00:07:00.000Z';
    emit('message.deleted', { conversationId: 'c1', messageId: secret.id, deletedAt });

    const tombstone = { ...secret, content: '', deletedAt, reactions: [] };
    expect(flattenUnique(queryClient.getQueryData<Pages<Message>>(chatKeys.messages('c1')))[0]).toEqual(tombstone);
    expect(queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations())!.pages[0]!.data[0]!.lastMessage).toEqual(tombstone);
    expect(queryClient.getQueryData<Conversation>(chatKeys.conversation('c1'))!.lastMessage).toEqual(tombstone);
    expect(queryClient.getQueryData<Pages<SearchResult>>(chatKeys.search('secret'))!.pages[0]!.data).toEqual([]);
    expect(queryClient.getQueryData<Pages<SearchResult>>(chatKeys.search('m', 'c1'))!.pages[0]!.data.map((h) => h.message.id)).toEqual([msg(1).id]);
    // Nothing of the content is left anywhere in the cache.
    expect(JSON.stringify(queryClient.getQueryCache().findAll().map((q) => q.state.data))).not.toContain('the secret');

    // An edit event for it that comes late (an older edit replayed) does not bring content back.
    emit('message.updated', { message: msg(2, { content: 'the secret, edited', editedAt: '2026-01-01T00:06:00.000Z' }) });
    expect(JSON.stringify(queryClient.getQueryCache().findAll().map((q) => q.state.data))).not.toContain('the secret');
    detach();
  });

  it('reaction.updated replaces the reactions of the message and of the last message', () => {
    const { queryClient, emit, detach } = setup();
    const m = msg(2);
    queryClient.setQueryData(chatKeys.messages('c1'), pages({ items: [m], hasMore: false }));
    queryClient.setQueryData(chatKeys.conversations(), listOf(conversation('c1', m.createdAt, { lastMessage: m })));
    const reactions = [
      { emoji: '❤️', userIds: ['bob'] },
      { emoji: '👍', userIds: ['bob', 'alice'] },
    ];
    emit('reaction.updated', { conversationId: 'c1', messageId: m.id, reactions });
    expect(flattenUnique(queryClient.getQueryData<Pages<Message>>(chatKeys.messages('c1')))[0]!.reactions).toEqual(reactions);
    expect(queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations())!.pages[0]!.data[0]!.lastMessage!.reactions).toEqual(reactions);
    emit('reaction.updated', { conversationId: 'c1', messageId: m.id, reactions: [] });
    expect(flattenUnique(queryClient.getQueryData<Pages<Message>>(chatKeys.messages('c1')))[0]!.reactions).toEqual([]);
    detach();
  });

  it('a deletion that lands while the messages are fetching is applied again to what the fetch brings', async () => {
    const { queryClient, emit, detach } = setup();
    let answer!: (d: Pages<Message>['pages'][number]) => void;
    const fetching = queryClient.fetchInfiniteQuery({
      queryKey: chatKeys.messages('c1'),
      queryFn: () => new Promise<Pages<Message>['pages'][number]>((resolve) => (answer = resolve)),
      initialPageParam: undefined as string | undefined,
    });
    await Promise.resolve();
    emit('message.deleted', { conversationId: 'c1', messageId: id(6), deletedAt: 'T' });
    answer({ data: [msg(6, { content: 'read before the delete' })], meta: { hasMore: false, nextCursor: null } });
    await fetching;
    expect(flattenUnique(queryClient.getQueryData<Pages<Message>>(chatKeys.messages('c1')))).toEqual([{ ...msg(6), content: '', deletedAt: 'T' }]);
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
