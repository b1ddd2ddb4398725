import { keepPreviousData, useInfiniteQuery, useMutation, useQuery } from '@tanstack/react-query';
import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { ChatClient } from '../client';
import { isApiError } from '../errors';
import type { BlockStatus, Conversation, Message, Page, PendingSend, Presence, Reaction, SearchResult, SendState, UnreadCount } from '../types';
import { flattenUnique, flattenUniqueBy, type Pages } from './cache';
import { chatKeys } from './keys';
import { useChatStore } from './provider';
import type { ChatConnection } from './store';

type Cursor = string | undefined;
const nextCursor = (last: Page<unknown>): Cursor => last.meta.nextCursor ?? undefined;

/** The client the provider was given. */
export function useChatClient(): ChatClient {
  return useChatStore().client;
}

/** The connection state, the last seq applied and the last resync; re-renders when they change. */
export function useChatConnection(): ChatConnection {
  const store = useChatStore();
  return useSyncExternalStore(store.subscribeConnection, store.getConnection, store.getConnection);
}

/**
 * The conversation list, most recent activity first, page by page
 * (`fetchNextPage`). `conversations` is the pages flattened, each once. The
 * provider keeps it current from events, so it is never stale by itself.
 */
export function useConversations() {
  const { client } = useChatStore();
  const query = useInfiniteQuery({
    queryKey: chatKeys.conversations(),
    queryFn: ({ pageParam }) => client.rest.listConversations({ cursor: pageParam }),
    initialPageParam: undefined as Cursor,
    getNextPageParam: nextCursor,
    staleTime: Infinity,
  });
  const conversations = useMemo(() => flattenUnique(query.data), [query.data]);
  return { ...query, conversations };
}

/**
 * One conversation: from the list when it is loaded there (kept current by
 * events), else asked for by id (a deep link to a conversation further down).
 */
export function useConversation(conversationId: string | undefined): { conversation: Conversation | undefined; isLoading: boolean; error: Error | null } {
  const { client } = useChatStore();
  const list = useConversations();
  const fromList = conversationId ? list.conversations.find((c) => c.id === conversationId) : undefined;
  const single = useQuery({
    queryKey: chatKeys.conversation(conversationId ?? ''),
    queryFn: () => client.rest.getConversation(conversationId!),
    enabled: Boolean(conversationId) && !fromList && !list.isPending,
    staleTime: Infinity,
  });
  return {
    conversation: fromList ?? single.data,
    isLoading: !fromList && (list.isPending || single.isLoading),
    error: fromList ? null : single.error,
  };
}

/** A message as the pane shows it: stored (`sent`), or a send of this user not yet confirmed. */
export interface MessageItem {
  /** A stable React key: the clientMessageId for this user's own messages, so a pending item and its stored message are one element. */
  key: string;
  /** The server's id; `null` until stored. */
  id: string | null;
  clientMessageId: string | null;
  conversationId: string;
  senderId: string;
  content: string;
  createdAt: string;
  readAt: string | null;
  /** When it was last edited; `null`: never. */
  editedAt: string | null;
  /** Set on a tombstone: deleted for both users, `content` is "" and `reactions` empty. */
  deletedAt: string | null;
  reactions: Reaction[];
  state: SendState;
  /** Sent by the signed-in user. */
  mine: boolean;
  /** Why a `failed` send failed. */
  error?: PendingSend['error'];
}

interface PendingSnapshot {
  userId: string | undefined;
  entries: PendingSend[];
  signature: string;
}

/** The client's pending and failed sends of one conversation, re-rendering on its `pending` event. */
function usePendingSends(client: ChatClient, conversationId: string): PendingSnapshot {
  const last = useRef<PendingSnapshot | null>(null);
  const subscribe = useCallback((onChange: () => void) => client.on('pending', onChange), [client]);
  const getSnapshot = useCallback((): PendingSnapshot => {
    const entries = client.pending(conversationId);
    const signature = `${client.userId ?? ''}|${conversationId}|${entries.map((e) => `${e.clientMessageId}:${e.state}:${e.error?.code ?? ''}`).join(',')}`;
    if (last.current?.signature !== signature) last.current = { userId: client.userId, entries, signature };
    return last.current;
  }, [client, conversationId]);
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

function mergeItems(data: Pages<Message> | undefined, pending: PendingSnapshot): MessageItem[] {
  const me = pending.userId;
  const stored = flattenUnique(data).reverse(); // pages are newest first: the pane reads oldest first
  const storedIds = new Set<string>();
  const items: MessageItem[] = stored.map((m) => {
    const mine = me !== undefined && m.senderId === me;
    if (mine && m.clientMessageId) storedIds.add(m.clientMessageId);
    return { ...m, key: mine && m.clientMessageId ? `c:${m.clientMessageId}` : `m:${m.id}`, state: 'sent', mine };
  });
  for (const p of pending.entries) {
    if (storedIds.has(p.clientMessageId)) continue; // stored already: shown once, as sent
    items.push({
      key: `c:${p.clientMessageId}`,
      id: null,
      clientMessageId: p.clientMessageId,
      conversationId: p.conversationId,
      senderId: me ?? '',
      content: p.content,
      createdAt: p.createdAt,
      readAt: null,
      editedAt: null,
      deletedAt: null,
      reactions: [],
      state: p.state,
      mine: true,
      ...(p.error ? { error: p.error } : {}),
    });
  }
  return items;
}

/**
 * A conversation's messages, oldest first: the stored ones page by page
 * (`fetchOlder` for the page above), then this user's sends still pending or
 * failed. A send shows at once as `pending` and becomes `sent` in place.
 */
export function useMessages(conversationId: string) {
  const { client } = useChatStore();
  const query = useInfiniteQuery({
    queryKey: chatKeys.messages(conversationId),
    queryFn: ({ pageParam }) => client.rest.listMessages(conversationId, { cursor: pageParam }),
    initialPageParam: undefined as Cursor,
    getNextPageParam: nextCursor,
    staleTime: Infinity,
    enabled: conversationId !== '',
  });
  const pending = usePendingSends(client, conversationId);
  const messages = useMemo(() => mergeItems(query.data, pending), [query.data, pending]);
  const { hasNextPage, isFetching, fetchNextPage } = query;
  const fetchOlder = useCallback(() => {
    // Not while another fetch of these pages runs: it would be cancelled and asked again.
    if (hasNextPage && !isFetching) void fetchNextPage();
  }, [hasNextPage, isFetching, fetchNextPage]);
  return {
    messages,
    fetchOlder,
    hasOlder: hasNextPage,
    isFetchingOlder: query.isFetchingNextPage,
    isLoading: query.isPending,
    error: query.error,
  };
}

/** Sending on the client's queue: optimistic through `useMessages`, reconciled by clientMessageId. */
export function useSendMessage(conversationId: string) {
  const { client } = useChatStore();
  return useMemo(
    () => ({
      /** Queues the text (trimmed; nothing for blank text) and returns the queued entry. */
      send: (content: string): PendingSend | undefined => {
        const text = content.trim();
        return text ? client.send(conversationId, text) : undefined;
      },
      /** Sends a failed message again, under the same clientMessageId. */
      retry: (clientMessageId: string): void => client.retry(clientMessageId),
      /** Gives up on a queued or failed message. */
      discard: (clientMessageId: string): void => client.discard(clientMessageId),
    }),
    [client, conversationId],
  );
}

/**
 * Changing stored messages (SPEC 10): `edit` and `remove` (delete for both
 * users) for this user's own messages, `toggleReaction` for any. Each
 * resolves with the message as the server has it now, or rejects with a
 * `ChatApiError` whose `code` says why (`EDIT_WINDOW_PASSED`,
 * `MESSAGE_DELETED`, `NOT_SENDER`, `TOO_MANY_REACTIONS`, `BLOCKED`, …).
 *
 * An edit or delete shows in the cache as soon as it is answered, without
 * waiting for its event (the event, when it comes, changes nothing more).
 * Reactions show from their `reaction.updated` event only: a reaction
 * answer may be older than another user's reaction event already applied,
 * and would hide it.
 */
export function useMessageActions(conversationId: string) {
  const store = useChatStore();
  const { client } = store;
  return useMemo(
    () => ({
      /** New content (trimmed; blank is refused by the server as VALIDATION_FAILED). */
      edit: async (messageId: string, content: string): Promise<Message> => {
        const message = await client.editMessage(conversationId, messageId, content.trim());
        store.applyEdit(message);
        return message;
      },
      /** Deletes it for both users; resolves with the tombstone. */
      remove: async (messageId: string): Promise<Message> => {
        const message = await client.deleteMessage(conversationId, messageId);
        store.applyDelete({ conversationId, messageId, deletedAt: message.deletedAt ?? new Date().toISOString() });
        return message;
      },
      /** Adds this user's `emoji`, or takes it back when `message` (a stored message, or a MessageItem) already shows it as theirs. */
      toggleReaction: async (message: { id: string | null; reactions: Reaction[] }, emoji: string): Promise<Message> => {
        if (message.id === null) throw new Error('a message not stored yet has no reactions');
        const mine = message.reactions.some((r) => r.emoji === emoji && client.userId !== undefined && r.userIds.includes(client.userId));
        return mine ? client.removeReaction(conversationId, message.id, emoji) : client.addReaction(conversationId, message.id, emoji);
      },
      addReaction: (messageId: string, emoji: string): Promise<Message> => client.addReaction(conversationId, messageId, emoji),
      removeReaction: (messageId: string, emoji: string): Promise<Message> => client.removeReaction(conversationId, messageId, emoji),
    }),
    [store, client, conversationId],
  );
}

/**
 * Searches this user's messages (SPEC 10): every word of `q` as a word or
 * the start of one, ignoring case and accents; newest first, page by page
 * (`fetchNextPage`). Nothing is asked for a blank `q`. While a new `q` is
 * asked, the previous results stay (`isPlaceholderData`), so a box that
 * searches as the user types does not flicker. Edits and deletions reach the
 * results from events: a deleted message leaves them.
 */
export function useSearchMessages(q: string, opts: { conversationId?: string; limit?: number } = {}) {
  const { client } = useChatStore();
  const query = q.trim();
  const { conversationId, limit } = opts;
  const result = useInfiniteQuery({
    queryKey: chatKeys.search(query, conversationId),
    queryFn: ({ pageParam }) =>
      client.rest.searchMessages({ q: query, ...(conversationId ? { conversationId } : {}), ...(limit ? { limit } : {}), cursor: pageParam }),
    initialPageParam: undefined as Cursor,
    getNextPageParam: nextCursor,
    enabled: query !== '',
    placeholderData: keepPreviousData,
    // New messages do not reach search results by event: a search shown again is asked again.
    staleTime: 0,
  });
  const results = useMemo<SearchResult[]>(() => (query === '' ? [] : flattenUniqueBy(result.data, (hit) => hit.message.id)), [result.data, query]);
  return { ...result, results };
}

/**
 * `markRead()` marks the conversation read up to the newest loaded message
 * from the other user, when that one is not read yet (call it when the pane
 * shows the newest message); it does nothing otherwise, nor twice for one message.
 */
export function useMarkRead(conversationId: string) {
  const store = useChatStore();
  const markRead = useCallback(() => {
    // A failed mark is tried again on the next call: not an error for the UI to show.
    store.markRead(conversationId).catch(() => undefined);
  }, [store, conversationId]);
  return { markRead };
}

/** Unread messages in total and conversations with any: `['chat','unread']`, kept current by events. */
export function useUnreadCount() {
  const { client } = useChatStore();
  return useQuery<UnreadCount>({
    queryKey: chatKeys.unread(),
    queryFn: () => client.rest.getUnreadCount(),
    staleTime: Infinity,
  });
}

/**
 * Whether the other user is typing here, and this user's side: `notifyTyping`
 * on each keystroke (the client throttles), `stopTyping` on send or blur.
 * The indicator falls to false by itself after the hello's typingTimeoutMs,
 * and at once when their message arrives.
 */
export function useTyping(conversationId: string) {
  const { client } = useChatStore();
  const [isOtherTyping, setOtherTyping] = useState(false);
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = () => {
      clearTimeout(timer);
      setOtherTyping(false);
    };
    const offs = [
      client.on('typing', (t) => {
        if (t.conversationId !== conversationId || t.userId === client.userId) return;
        clearTimeout(timer);
        setOtherTyping(t.isTyping);
        if (t.isTyping) timer = setTimeout(stop, client.session?.typingTimeoutMs ?? 5000);
      }),
      client.on('message.new', ({ message }) => {
        if (message.conversationId === conversationId && message.senderId !== client.userId) stop();
      }),
      client.on('state', ({ state }) => {
        if (state !== 'open') stop();
      }),
    ];
    return () => {
      for (const off of offs) off();
      clearTimeout(timer);
      setOtherTyping(false);
      client.setTyping(conversationId, false);
    };
  }, [client, conversationId]);
  const notifyTyping = useCallback(() => client.setTyping(conversationId, true), [client, conversationId]);
  const stopTyping = useCallback(() => client.setTyping(conversationId, false), [client, conversationId]);
  return { isOtherTyping, notifyTyping, stopTyping };
}

const OFFLINE: Presence = { isOnline: false, lastSeenAt: null };

/**
 * A user's presence from events (`['chat','presence',userId]`), seeded from
 * what the caller already knows (the conversation's participant); asked for
 * over REST only without a seed.
 */
export function usePresence(userId: string | undefined, initial?: Presence): Presence {
  const { client } = useChatStore();
  const seed = initial ? { isOnline: initial.isOnline, lastSeenAt: initial.lastSeenAt } : undefined;
  const query = useQuery<Presence>({
    queryKey: chatKeys.presence(userId ?? ''),
    queryFn: async () => (await client.rest.getPresence([userId!]))[userId!] ?? OFFLINE,
    initialData: seed,
    staleTime: Infinity,
    enabled: Boolean(userId),
  });
  return query.data ?? seed ?? OFFLINE;
}

/**
 * The block status with a user (`getBlockStatus`, seeded from the
 * conversation's when given) and `block()` / `unblock()`, which update it and
 * the conversation's `blockStatus` in the list.
 */
export function useBlock(username: string | undefined, initial?: BlockStatus) {
  const store = useChatStore();
  const { client } = store;
  const name = username ?? '';
  const status = useQuery<BlockStatus>({
    queryKey: chatKeys.blockStatus(name),
    queryFn: () => client.rest.getBlockStatus(name),
    initialData: initial,
    initialDataUpdatedAt: 0, // a seed from the list: shown at once, asked again
    enabled: name !== '',
  });
  // What the server says now goes to the conversation in the list too (its blockStatus was read with the list).
  useEffect(() => {
    const fresh = status.data;
    if (fresh && name) store.setBlockStatus(name, (s) => (s.blockedByMe === fresh.blockedByMe && s.blockedByThem === fresh.blockedByThem && s.canMessage === fresh.canMessage ? s : fresh));
  }, [store, name, status.data]);
  const blocked = (s: BlockStatus): BlockStatus => ({ ...s, blockedByMe: true, canMessage: false });
  const unblocked = (s: BlockStatus): BlockStatus => ({ ...s, blockedByMe: false, canMessage: !s.blockedByThem });
  const settle = (edit: (s: BlockStatus) => BlockStatus) => {
    store.setBlockStatus(name, edit);
    void store.queryClient.invalidateQueries({ queryKey: chatKeys.blockStatus(name), exact: true });
  };
  const blockMutation = useMutation({
    mutationFn: async () => {
      try {
        await client.rest.block(name);
      } catch (err) {
        if (!isApiError(err, 'ALREADY_BLOCKED')) throw err; // already what was asked
      }
    },
    onSuccess: () => settle(blocked),
  });
  const unblockMutation = useMutation({
    mutationFn: async () => {
      try {
        await client.rest.unblock(name);
      } catch (err) {
        if (!isApiError(err, 'NOT_BLOCKED')) throw err;
      }
    },
    onSuccess: () => settle(unblocked),
  });
  return {
    status: status.data,
    isLoading: status.isLoading,
    block: () => blockMutation.mutateAsync(),
    unblock: () => unblockMutation.mutateAsync(),
    isPending: blockMutation.isPending || unblockMutation.isPending,
    error: blockMutation.error ?? unblockMutation.error ?? status.error,
  };
}

/**
 * Opens (gets or creates) the conversation with a username; the result goes
 * into the list cache and its own query, ready for the pane.
 */
export function useOpenConversation() {
  const store = useChatStore();
  const mutation = useMutation({
    mutationFn: (username: string) => store.client.rest.openConversation(username.trim()),
    onSuccess: ({ conversation }) => store.putConversation(conversation),
  });
  return {
    open: async (username: string): Promise<Conversation> => (await mutation.mutateAsync(username)).conversation,
    isPending: mutation.isPending,
    error: mutation.error,
    reset: mutation.reset,
  };
}
