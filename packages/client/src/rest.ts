import { ChatApiError, ChatNetworkError } from './errors';
import type {
  Block,
  BlockStatus,
  Conversation,
  ErrorCode,
  EventsPage,
  Message,
  NotificationPreferences,
  Page,
  PageParams,
  Presence,
  ReadResult,
  SearchParams,
  SearchResult,
  TokenProvider,
  UnreadCount,
} from './types';

export interface RestOptions {
  /** The gateway's origin, e.g. `http://localhost:8080`; `''` in a page the gateway serves. */
  baseUrl: string;
  getToken: TokenProvider;
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | null | undefined>;

/** One method per route of SPEC sections 4 and 10, answers typed, failures as ChatApiError by code. */
export class ChatRest {
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly opts: RestOptions) {
    this.base = `${opts.baseUrl.replace(/\/+$/, '')}/api/chat`;
    // Bound: a bare `fetch` taken off window throws "Illegal invocation" when called as a method.
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** The gateway's origin as given (`''`: the page's own). */
  get baseUrl(): string {
    return this.opts.baseUrl.replace(/\/+$/, '');
  }

  /** The token the next request will carry (fresh from the provider when `forceRefresh`). */
  async getTokenFor(opts: { forceRefresh: boolean }): Promise<string> {
    return this.opts.getToken(opts);
  }

  listConversations(page: PageParams = {}): Promise<Page<Conversation>> {
    return this.page('GET', '/conversations', pageQuery(page));
  }
  getUnreadCount(): Promise<UnreadCount> {
    return this.data('GET', '/conversations/unread-count');
  }
  /** Gets or creates the 1:1 conversation with `username`. */
  async openConversation(username: string): Promise<{ conversation: Conversation; created: boolean }> {
    const body = await this.call<{ data: Conversation; meta: { created: boolean } }>('GET', `/conversations/with/${enc(username)}`);
    return { conversation: body.data, created: body.meta.created };
  }
  getConversation(conversationId: string): Promise<Conversation> {
    return this.data('GET', `/conversations/${enc(conversationId)}`);
  }
  /** Newest first. */
  listMessages(conversationId: string, page: PageParams = {}): Promise<Page<Message>> {
    return this.page('GET', `/conversations/${enc(conversationId)}/messages`, pageQuery(page));
  }
  /**
   * `created: false` is a repeat of a `clientMessageId` already stored: the
   * original message, a success (the send happened once), not an error.
   */
  async sendMessage(conversationId: string, body: { content: string; clientMessageId?: string }): Promise<{ message: Message; created: boolean }> {
    const res = await this.request('POST', `/conversations/${enc(conversationId)}/messages`, undefined, body);
    return { message: ((await res.json()) as { data: Message }).data, created: res.status === 201 };
  }
  markRead(conversationId: string, messageId?: string): Promise<ReadResult> {
    return this.data('POST', `/conversations/${enc(conversationId)}/read`, undefined, messageId === undefined ? {} : { messageId });
  }
  /** Durable events after `since`; `410 RESYNC_REQUIRED` when `since` is past the retention. */
  getEvents(since: number, limit?: number): Promise<EventsPage> {
    return this.call('GET', '/events', { since, limit });
  }
  /**
   * Changes the content; answers the message with its new `editedAt`. Only
   * the sender (`NOT_SENDER`), within the server's edit window
   * (`EDIT_WINDOW_PASSED`), not a deleted one (`MESSAGE_DELETED`). The same
   * content again is a success that changes nothing.
   */
  editMessage(conversationId: string, messageId: string, content: string): Promise<Message> {
    return this.data('PATCH', messagePath(conversationId, messageId), undefined, { content });
  }
  /** Deletes it for both users; answers the tombstone (also when it was deleted already). Only the sender (`NOT_SENDER`). */
  deleteMessage(conversationId: string, messageId: string): Promise<Message> {
    return this.data('DELETE', messagePath(conversationId, messageId));
  }
  /** The caller reacts with one emoji; answers the message. `TOO_MANY_REACTIONS` past 10 different emoji of one user. */
  addReaction(conversationId: string, messageId: string, emoji: string): Promise<Message> {
    return this.data('PUT', `${messagePath(conversationId, messageId)}/reactions/${enc(emoji)}`);
  }
  /** Takes the caller's reaction back; answers the message (also when there was none). */
  removeReaction(conversationId: string, messageId: string, emoji: string): Promise<Message> {
    return this.data('DELETE', `${messagePath(conversationId, messageId)}/reactions/${enc(emoji)}`);
  }
  /** The caller's messages matching every word of `q` (as words or word starts, ignoring case and accents), newest first. */
  searchMessages(params: SearchParams): Promise<Page<SearchResult>> {
    return this.page('GET', '/search/messages', { q: params.q, conversationId: params.conversationId, ...pageQuery(params) });
  }
  getMessage(messageId: string): Promise<Message> {
    return this.data('GET', `/messages/${enc(messageId)}`);
  }
  createWsTicket(): Promise<{ ticket: string; expiresAt: string }> {
    return this.data('POST', '/ws-ticket');
  }
  block(username: string): Promise<Block> {
    return this.data('POST', '/blocks', undefined, { username });
  }
  async unblock(username: string): Promise<void> {
    await this.request('DELETE', `/blocks/${enc(username)}`);
  }
  listBlocks(page: PageParams = {}): Promise<Page<Block>> {
    return this.page('GET', '/blocks', pageQuery(page));
  }
  getBlockStatus(username: string): Promise<BlockStatus> {
    return this.data('GET', `/blocks/status/${enc(username)}`);
  }
  getPresence(userIds: readonly string[]): Promise<Record<string, Presence>> {
    return this.data('GET', '/presence', { userIds: userIds.join(',') });
  }
  getNotificationPreferences(): Promise<NotificationPreferences> {
    return this.data('GET', '/notifications/preferences');
  }
  setNotificationPreferences(prefs: NotificationPreferences): Promise<NotificationPreferences> {
    return this.data('PUT', '/notifications/preferences', undefined, prefs);
  }

  private async data<T>(method: string, path: string, query?: Query, body?: unknown): Promise<T> {
    return (await this.call<{ data: T }>(method, path, query, body)).data;
  }
  private page<T>(method: string, path: string, query?: Query): Promise<Page<T>> {
    return this.call<Page<T>>(method, path, query);
  }
  private async call<T>(method: string, path: string, query?: Query, body?: unknown): Promise<T> {
    const res = await this.request(method, path, query, body);
    return (await res.json()) as T;
  }

  /** One authenticated request; a 401 asks the token provider for a fresh token and tries once more. */
  private async request(method: string, path: string, query?: Query, body?: unknown): Promise<Response> {
    let res = await this.attempt(method, path, query, body, false);
    if (res.status === 401) res = await this.attempt(method, path, query, body, true);
    if (res.ok) return res;
    throw await toApiError(res);
  }

  private async attempt(method: string, path: string, query: Query | undefined, body: unknown, forceRefresh: boolean): Promise<Response> {
    const token = await this.opts.getToken({ forceRefresh });
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await this.fetchImpl(`${this.base}${path}${queryString(query)}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new ChatNetworkError(`${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function toApiError(res: Response): Promise<ChatApiError> {
  const retryAfter = Number(res.headers.get('retry-after'));
  const requestId = res.headers.get('x-request-id') ?? undefined;
  try {
    const body = (await res.json()) as { error?: { code: ErrorCode; message: string; details?: unknown } };
    if (body.error) {
      const { code, message, details } = body.error;
      return new ChatApiError(code, message, res.status, details, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined, requestId);
    }
  } catch {
    /* not the API's envelope: a proxy's page */
  }
  const code: ErrorCode = res.status >= 500 ? 'SERVICE_UNAVAILABLE' : res.status === 404 ? 'NOT_FOUND' : 'VALIDATION_FAILED';
  return new ChatApiError(code, `HTTP ${res.status}`, res.status, undefined, undefined, requestId);
}

const enc = encodeURIComponent;
const messagePath = (conversationId: string, messageId: string) => `/conversations/${enc(conversationId)}/messages/${enc(messageId)}`;
const pageQuery = (p: PageParams): Query => ({ limit: p.limit, cursor: p.cursor });
function queryString(q?: Query): string {
  if (!q) return '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null) params.set(k, String(v));
  const s = params.toString();
  return s ? `?${s}` : '';
}
