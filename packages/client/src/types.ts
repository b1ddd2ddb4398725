import type {
  Block,
  BlockStatus,
  Conversation,
  ErrorCode,
  Message,
  MessageDeletedPayload,
  MessageNewPayload,
  MessageReadPayload,
  MessageUpdatedPayload,
  NotificationPreferences,
  PageMeta,
  Presence,
  Reaction,
  ReactionUpdatedPayload,
  ReadResult,
  SearchResult,
  TypingPayload,
  UnreadCount,
  UnreadUpdatedPayload,
  User,
  UserOfflinePayload,
  UserOnlinePayload,
} from '@chat/contracts';
import type { z } from 'zod';

// Type-only imports: the contracts' zod schemas never reach a browser bundle.
export type { Block, BlockStatus, Conversation, ErrorCode, Message, NotificationPreferences, PageMeta, Presence, Reaction, ReadResult, SearchResult, UnreadCount, User };

/** A page of a list route: `{ data, meta }` as the API answers it. */
export interface Page<T> {
  data: T[];
  meta: PageMeta;
}

export interface PageParams {
  limit?: number;
  cursor?: string | null;
}

/** `GET /search/messages`: `q` is 1–200 characters after trimming; `limit` 1–50 (default 20). */
export interface SearchParams extends PageParams {
  q: string;
  /** Only this conversation's messages. */
  conversationId?: string;
}

export type MessageNew = z.infer<typeof MessageNewPayload>;
export type MessageRead = z.infer<typeof MessageReadPayload>;
export type UnreadUpdated = z.infer<typeof UnreadUpdatedPayload>;
export type MessageUpdated = z.infer<typeof MessageUpdatedPayload>;
export type MessageDeleted = z.infer<typeof MessageDeletedPayload>;
export type ReactionUpdated = z.infer<typeof ReactionUpdatedPayload>;
export type Typing = z.infer<typeof TypingPayload>;
export type UserOnline = z.infer<typeof UserOnlinePayload>;
export type UserOffline = z.infer<typeof UserOfflinePayload>;

/** The first frame of a connection (after the replayed events on a resume). */
export interface Hello {
  userId: string;
  seq: number;
  replayed: number;
  resync: boolean;
  heartbeatMs: number;
  typingTimeoutMs: number;
}

/** Durable events carry a per-user `seq`; the client applies each once, in order. */
export interface DurableEventMap {
  'message.new': MessageNew;
  'message.read': MessageRead;
  'unread.updated': UnreadUpdated;
  /** An edit: the message as it is now (new content, `editedAt`). */
  'message.updated': MessageUpdated;
  /** Deleted for both users: the message is a tombstone from now on. */
  'message.deleted': MessageDeleted;
  /** A message's reactions as they are now. */
  'reaction.updated': ReactionUpdated;
}
export interface EphemeralEventMap {
  typing: Typing;
  'user.online': UserOnline;
  'user.offline': UserOffline;
}
export type DurableEventType = keyof DurableEventMap;
export type DurableEvent = { [K in DurableEventType]: { seq: number; type: K; payload: DurableEventMap[K] } }[DurableEventType];

export interface EventsPage {
  data: DurableEvent[];
  meta: PageMeta & { latestSeq: number };
}

/**
 * `idle`: made, not yet connected. `connecting`: the first attempt.
 * `open`: hello received. `reconnecting`: waiting out a backoff or retrying.
 * `offline`: the browser says there is no network; retried the moment it says
 * `online`. `unauthorized`: the token was refused twice (terminal, like `closed`).
 */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed' | 'unauthorized';

export type SendState = 'pending' | 'sent' | 'failed';

/** A message the user sent that the server has not (yet) confirmed, or refused. */
export interface PendingSend {
  clientMessageId: string;
  conversationId: string;
  content: string;
  state: SendState;
  /** When the user pressed send (ISO time): the order of the queue and of optimistic rendering. */
  createdAt: string;
  attempts: number;
  /** The stored message, once `sent`. */
  message?: Message;
  /** Why it is `failed`: a SPEC error code, or `ACK_TIMEOUT` after the last retry. */
  error?: { code: ErrorCode | 'ACK_TIMEOUT'; message: string };
}

export interface ClientEventMap extends DurableEventMap, EphemeralEventMap {
  /** The connection state changed. */
  state: { state: ConnectionState; previous: ConnectionState };
  /** A connection is open and caught up (replayed events, if any, were applied first). */
  hello: Hello;
  /** Every durable event, once, in seq order (after its typed event). */
  event: DurableEvent;
  /**
   * The server could not replay what was missed (too old): state must be
   * reloaded over REST. The app can say so ("reloaded").
   */
  resync: { reason: 'retention' | 'gap' };
  /** A send was confirmed (ack or its own `message.new`). */
  sent: PendingSend & { state: 'sent'; message: Message };
  /** The pending queue changed: every entry still pending or failed. */
  pending: PendingSend[];
  /** Something failed in the background (a ticket, a catch-up read); the client carries on. */
  error: Error;
}

/** What the client stores pending sends in: `localStorage` fits. */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The part of the WebSocket API the client uses: the browser's, or `ws` in Node. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketFactory = new (url: string) => WebSocketLike;

export type TokenProvider = (opts: { forceRefresh: boolean }) => string | Promise<string>;
