import type { Query, QueryCacheNotifyEvent, QueryClient, QueryKey } from '@tanstack/react-query';
import type { ChatClient } from '../client';
import type { BlockStatus, ConnectionState, Conversation, Message, MessageDeleted, MessageRead, Presence, ReactionUpdated, SearchResult, UnreadCount } from '../types';
import {
  applyNewMessage,
  asTombstone,
  findConversation,
  markMessagesRead,
  updateConversations,
  updateMessage,
  updateSearchHits,
  upsertConversation,
  upsertMessage,
  withEdit,
  withLastMessage,
  withNewMessage,
  withReactions,
  type Pages,
} from './cache';
import { chatKeys } from './keys';

export interface ChatConnection {
  state: ConnectionState;
  /** The last durable seq applied; `undefined` before the first hello. */
  lastSeq: number | undefined;
  /** When the client last had to reload over REST (`resync`), ms since the epoch; `null`: never. */
  resyncedAt: number | null;
}

/**
 * What the provider holds: the client, and the one subscription to its
 * events that keeps the query cache live. Each event edits the cached data
 * in place (never a refetch of loaded pages), with three exceptions: a
 * message in a conversation the list has not loaded (the list is asked
 * again), an unread total whose conversation count cannot be derived (the
 * small unread query is asked again), and a resync (everything is).
 *
 * An edit that lands while its query is fetching is applied again when the
 * fetch ends: the fetch may have been answered before the event's write, and
 * would otherwise overwrite the edit with older data.
 */
export class ChatStore {
  private connection: ChatConnection;
  private readonly connectionListeners = new Set<() => void>();
  private readonly deferred = new Map<string, Array<() => void>>();
  /** Per conversation, the unread count the last event or read answer gave. */
  private readonly unreadSeen = new Map<string, number>();
  /** Per conversation, the message id a read is being or was marked up to. */
  private readonly marking = new Map<string, string>();
  private readonly blockedSends = new Set<string>();
  private hellos = 0;

  constructor(
    readonly client: ChatClient,
    readonly queryClient: QueryClient,
  ) {
    this.connection = { state: client.state, lastSeq: client.lastSeq, resyncedAt: null };
  }

  /** Subscribes to the client's events and to the query cache; returns the unsubscribe. */
  attach(): () => void {
    const { client } = this;
    const offs = [
      client.on('message.new', ({ message }) => this.onMessage(message)),
      client.on('sent', ({ message }) => this.onMessage(message)),
      client.on('message.read', (read) => this.onRead(read)),
      client.on('message.updated', ({ message }) => this.applyEdit(message)),
      client.on('message.deleted', (deleted) => this.applyDelete(deleted)),
      client.on('reaction.updated', (r) => this.onReactions(r)),
      client.on('unread.updated', (u) => this.applyUnread(u.conversationId, u.conversationUnread, { total: u.total })),
      client.on('user.online', ({ userId }) => this.onPresence(userId, { isOnline: true })),
      client.on('user.offline', ({ userId, lastSeenAt }) => this.onPresence(userId, { isOnline: false, lastSeenAt })),
      client.on('resync', () => this.onResync()),
      client.on('hello', () => this.onHello()),
      client.on('pending', (entries) => this.onPending(entries)),
      client.on('state', () => this.refreshConnection()),
      client.on('event', () => this.refreshConnection()),
      this.queryClient.getQueryCache().subscribe((event) => this.onCacheEvent(event)),
    ];
    this.refreshConnection();
    return () => {
      for (const off of offs) off();
      this.deferred.clear();
    };
  }

  // ---- connection (useSyncExternalStore) -----------------------------------

  readonly subscribeConnection = (onChange: () => void): (() => void) => {
    this.connectionListeners.add(onChange);
    return () => void this.connectionListeners.delete(onChange);
  };
  readonly getConnection = (): ChatConnection => this.connection;

  private refreshConnection(resyncedAt = this.connection.resyncedAt): void {
    const { state, lastSeq } = this.client;
    const c = this.connection;
    if (c.state === state && c.lastSeq === lastSeq && c.resyncedAt === resyncedAt) return;
    this.connection = { state, lastSeq, resyncedAt };
    for (const l of this.connectionListeners) l();
  }

  // ---- events --------------------------------------------------------------

  private onMessage(message: Message): void {
    const qc = this.queryClient;
    this.patch<Pages<Message>>(chatKeys.messages(message.conversationId), (d) => upsertMessage(d, message));
    this.patch<Conversation>(chatKeys.conversation(message.conversationId), (c) => withNewMessage(c, message));
    const listKey = chatKeys.conversations();
    const list = qc.getQueryData<Pages<Conversation>>(listKey);
    // A conversation the loaded pages do not hold (new, or further down): ask for the list again.
    if (list && !findConversation(list, message.conversationId)) void qc.invalidateQueries({ queryKey: listKey, exact: true });
    this.patch<Pages<Conversation>>(listKey, (d) => applyNewMessage(d, message).data);
    // A new message where a block was shown: the block may be gone (there is no event for that); ask again.
    const cached = findConversation(list, message.conversationId) ?? qc.getQueryData<Conversation>(chatKeys.conversation(message.conversationId));
    if (cached && !cached.blockStatus.canMessage) void qc.invalidateQueries({ queryKey: chatKeys.blockStatus(cached.participant.username) });
  }

  private onRead(read: MessageRead): void {
    this.patch<Pages<Message>>(chatKeys.messages(read.conversationId), (d) => markMessagesRead(d, read));
    this.patchConversation(read.conversationId, (c) => {
      const last = c.lastMessage;
      if (!last || last.readAt !== null || last.senderId === read.readerId || last.id > read.lastReadMessageId) return c;
      return { ...c, lastMessage: { ...last, readAt: read.readAt } };
    });
  }

  /**
   * An edit, from its event or from the answer to this user's own edit
   * (whichever comes first; the second changes nothing): the new content and
   * `editedAt` wherever the message is cached. Never undoes a later edit nor
   * a deletion, so it is safe to apply late or twice.
   */
  applyEdit(message: Message): void {
    this.changeMessage(message.conversationId, message.id, (m) => withEdit(m, message));
  }

  /**
   * A deletion: the tombstone wherever the message is cached (the loaded
   * messages, the conversation's `lastMessage`), and gone from search
   * results, so its content is nowhere in the cache any more.
   */
  applyDelete(deleted: MessageDeleted): void {
    this.changeMessage(deleted.conversationId, deleted.messageId, (m) => asTombstone(m, deleted.deletedAt), () => null);
  }

  private onReactions(r: ReactionUpdated): void {
    this.changeMessage(r.conversationId, r.messageId, (m) => withReactions(m, r.reactions));
  }

  /** One message's change in every cached place it can be: its conversation's pages and lastMessage, and search results. */
  private changeMessage(conversationId: string, messageId: string, edit: (m: Message) => Message, editHit: (m: Message) => Message | null = edit): void {
    this.patch<Pages<Message>>(chatKeys.messages(conversationId), (d) => updateMessage(d, messageId, edit));
    this.patchConversation(conversationId, (c) => withLastMessage(c, messageId, edit));
    for (const query of this.queryClient.getQueryCache().findAll({ queryKey: chatKeys.searches() }))
      this.patch<Pages<SearchResult>>(query.queryKey, (d) => updateSearchHits(d, messageId, editHit));
  }

  /**
   * A conversation's unread count, and the total: absolute from an
   * `unread.updated`, or moved by this conversation's change (a read answer).
   * The number of conversations with unread follows from the count this
   * conversation had before, when it is known; else that small query is asked again.
   */
  applyUnread(conversationId: string, conversationUnread: number, total: { total: number } | 'delta'): void {
    const previous = this.knownUnread(conversationId);
    this.unreadSeen.set(conversationId, conversationUnread);
    this.patchConversation(conversationId, (c) => (c.unreadCount === conversationUnread ? c : { ...c, unreadCount: conversationUnread }));

    const key = chatKeys.unread();
    const query = this.find<UnreadCount>(key);
    if (!query) return;
    if (query.state.data === undefined || query.state.fetchStatus !== 'idle' || previous === undefined) {
      if (query.state.data !== undefined && total !== 'delta') this.set<UnreadCount>(key, (d) => (d.total === total.total ? d : { ...d, total: total.total }));
      void this.queryClient.invalidateQueries({ queryKey: key, exact: true });
      return;
    }
    this.set<UnreadCount>(key, (d) => {
      const next = {
        total: total === 'delta' ? Math.max(0, d.total + conversationUnread - previous) : total.total,
        conversations: Math.max(0, d.conversations + (conversationUnread > 0 ? 1 : 0) - (previous > 0 ? 1 : 0)),
      };
      return next.total === d.total && next.conversations === d.conversations ? d : next;
    });
  }

  private onPresence(userId: string, presence: { isOnline: boolean; lastSeenAt?: string | null }): void {
    const qc = this.queryClient;
    const key = chatKeys.presence(userId);
    const before = qc.getQueryData<Presence>(key);
    const next: Presence = { isOnline: presence.isOnline, lastSeenAt: presence.lastSeenAt !== undefined ? presence.lastSeenAt : (before?.lastSeenAt ?? null) };
    if (!before || before.isOnline !== next.isOnline || before.lastSeenAt !== next.lastSeenAt) qc.setQueryData<Presence>(key, next);
    this.patchConversations(
      (c) => c.participant.id === userId,
      (c) => {
        const lastSeenAt = presence.lastSeenAt !== undefined ? presence.lastSeenAt : c.participant.lastSeenAt;
        if (c.participant.isOnline === presence.isOnline && c.participant.lastSeenAt === lastSeenAt) return c;
        return { ...c, participant: { ...c.participant, isOnline: presence.isOnline, lastSeenAt } };
      },
    );
  }

  private onResync(): void {
    void this.queryClient.invalidateQueries({ queryKey: chatKeys.all });
    this.refreshConnection(Date.now());
  }

  /**
   * After a reconnect, presence events sent while away are lost (they are
   * not replayed): ask for the presence of the loaded conversations' participants.
   */
  private onHello(): void {
    this.refreshConnection();
    if (++this.hellos === 1) return;
    const list = this.queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations());
    const ids = [...new Set((list?.pages ?? []).flatMap((p) => p.data.map((c) => c.participant.id)))];
    for (let i = 0; i < ids.length; i += 100) {
      this.client.rest.getPresence(ids.slice(i, i + 100)).then(
        (found) => {
          for (const [userId, p] of Object.entries(found)) this.onPresence(userId, p);
        },
        () => undefined, // the next reconnect tries again; events keep it current meanwhile
      );
    }
  }

  /** A send refused as BLOCKED: someone blocked; the block status shown is out of date. */
  private onPending(entries: ReadonlyArray<{ clientMessageId: string; state: string; error?: { code: string } }>): void {
    let stale = false;
    for (const e of entries)
      if (e.state === 'failed' && e.error?.code === 'BLOCKED' && !this.blockedSends.has(e.clientMessageId)) {
        this.blockedSends.add(e.clientMessageId);
        stale = true;
      }
    if (stale) void this.queryClient.invalidateQueries({ queryKey: chatKeys.blocks() });
  }

  // ---- commands the hooks use ----------------------------------------------

  /**
   * Marks read up to the newest loaded message from the other user, when it
   * is not read yet; once per message (a call while one is on its way, or
   * for a message already marked, does nothing).
   */
  async markRead(conversationId: string): Promise<void> {
    const me = this.client.userId;
    const pages = this.queryClient.getQueryData<Pages<Message>>(chatKeys.messages(conversationId));
    if (!me || !pages) return;
    let newest: Message | undefined;
    for (const page of pages.pages) {
      newest = page.data.find((m) => m.senderId !== me);
      if (newest) break;
    }
    if (!newest || newest.readAt !== null || this.marking.get(conversationId) === newest.id) return;
    const previous = this.marking.get(conversationId);
    if (previous !== undefined && previous > newest.id) return;
    this.marking.set(conversationId, newest.id);
    try {
      const result = await this.client.rest.markRead(conversationId, newest.id);
      const readAt = new Date().toISOString();
      this.patch<Pages<Message>>(chatKeys.messages(conversationId), (d) =>
        markMessagesRead(d, { conversationId, readerId: me, lastReadMessageId: newest.id, readAt }),
      );
      this.applyUnread(conversationId, result.unreadCount, 'delta');
    } catch (err) {
      if (this.marking.get(conversationId) === newest.id) this.marking.delete(conversationId); // the next call tries again
      throw err;
    }
  }

  /** A block or unblock done: the status query, and the conversation with that user in the list. */
  setBlockStatus(username: string, edit: (s: BlockStatus) => BlockStatus): void {
    const key = chatKeys.blockStatus(username);
    this.set<BlockStatus>(key, edit);
    const name = username.toLowerCase();
    this.patchConversations(
      (c) => c.participant.username.toLowerCase() === name,
      (c) => {
        const blockStatus = edit(c.blockStatus);
        return sameBlockStatus(blockStatus, c.blockStatus) ? c : { ...c, blockStatus };
      },
    );
  }

  /** A conversation just opened or created: into the list (where it belongs by activity) and its own query. */
  putConversation(conversation: Conversation): void {
    this.queryClient.setQueryData(chatKeys.conversation(conversation.id), conversation);
    this.patch<Pages<Conversation>>(chatKeys.conversations(), (d) => (findConversation(d, conversation.id) ? d : upsertConversation(d, conversation)));
  }

  // ---- cache plumbing ------------------------------------------------------

  private knownUnread(conversationId: string): number | undefined {
    const list = this.queryClient.getQueryData<Pages<Conversation>>(chatKeys.conversations());
    return (
      findConversation(list, conversationId)?.unreadCount ??
      this.queryClient.getQueryData<Conversation>(chatKeys.conversation(conversationId))?.unreadCount ??
      this.unreadSeen.get(conversationId)
    );
  }

  private find<T>(queryKey: QueryKey): Query<T, Error, T, QueryKey> | undefined {
    return this.queryClient.getQueryCache().find<T, Error, T>({ queryKey, exact: true });
  }

  /** Writes only a real change, so unchanged data notifies no one. */
  private set<T>(queryKey: QueryKey, edit: (data: T) => T): void {
    const before = this.queryClient.getQueryData<T>(queryKey);
    if (before === undefined) return;
    const after = edit(before);
    if (after !== before) this.queryClient.setQueryData<T>(queryKey, after);
  }

  /** An edit of a query in the cache, applied again after the fetch it may be racing (see the class). */
  private patch<T>(queryKey: QueryKey, edit: (data: T) => T): void {
    const query = this.find<T>(queryKey);
    if (!query) return; // not in the cache: whenever it is read, it is read whole from the server
    this.set(queryKey, edit);
    if (query.state.fetchStatus !== 'idle') {
      const list = this.deferred.get(query.queryHash) ?? [];
      list.push(() => this.set(queryKey, edit));
      this.deferred.set(query.queryHash, list);
    }
  }

  private patchConversation(conversationId: string, edit: (c: Conversation) => Conversation): void {
    this.patch<Pages<Conversation>>(chatKeys.conversations(), (d) => updateConversations(d, (c) => c.id === conversationId, edit));
    this.patch<Conversation>(chatKeys.conversation(conversationId), edit);
  }

  private patchConversations(match: (c: Conversation) => boolean, edit: (c: Conversation) => Conversation): void {
    this.patch<Pages<Conversation>>(chatKeys.conversations(), (d) => updateConversations(d, match, edit));
    for (const query of this.queryClient.getQueryCache().findAll({ queryKey: ['chat', 'conversation'] }))
      this.patch<Conversation>(query.queryKey, (c) => (match(c) ? edit(c) : c));
  }

  private onCacheEvent(event: QueryCacheNotifyEvent): void {
    const hash = event.query.queryHash;
    const pending = this.deferred.get(hash);
    if (!pending) return;
    if (event.type === 'removed') return void this.deferred.delete(hash);
    if (event.type !== 'updated' || event.query.state.fetchStatus !== 'idle') return;
    this.deferred.delete(hash);
    for (const apply of pending) apply();
  }
}

const sameBlockStatus = (a: BlockStatus, b: BlockStatus) =>
  a.blockedByMe === b.blockedByMe && a.blockedByThem === b.blockedByThem && a.canMessage === b.canMessage;

