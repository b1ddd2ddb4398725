import { ChatError, EventType, idRecord, type ConversationCreatedEvent, type Conversation, type Message, type Presence, type BlockStatus, type Page, type Subjects, type User, BlockStatusSchema, PresenceSchema } from '@chat/contracts';
import { appendOutbox, countFitting, decodeCursor, toPage, newId, iso, isUuid, withTransaction, type BusClient, type Database, type Logger } from '@chat/platform';
import { LIST_CACHE_ROWS, type ListCache } from './list-cache';
import { ConversationsRepository, type MembershipRow } from './conversations.repository';
import { UsersRepository } from './users.repository';

const StatusMap = idRecord(BlockStatusSchema);
const PresenceMap = idRecord(PresenceSchema);
const OFFLINE: Presence = { isOnline: false, lastSeenAt: null };
/** Contacts read per `contacts` request, before the cut to the reply budget. */
const CONTACTS_PAGE = 1000;

export interface CallContext {
  requestId: string | undefined;
  log: Logger;
}

/** Conversations: get-or-create by pair, and each participant's list built from the projection. */
export class ConversationsService {
  private readonly repo: ConversationsRepository;
  private readonly users: UsersRepository;

  constructor(
    private readonly db: Database,
    private readonly bus: BusClient,
    private readonly subjects: Subjects,
    /** Wakes the outbox relay after a commit that wrote an event. */
    private readonly onCommitted: () => void = () => undefined,
    private readonly cache?: ListCache,
    /** Bytes a reply may carry (replyBudget): a NATS message larger than max_payload is never delivered. */
    private readonly maxReplyBytes: () => number = () => 512 * 1024,
  ) {
    this.repo = new ConversationsRepository(db);
    this.users = new UsersRepository(db);
  }

  async list(actor: string, cursor: string | undefined, limit: number, ctx: CallContext): Promise<Page<Conversation>> {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = after ? await this.repo.listForUser(actor, after, limit + 1) : (await this.firstRows(actor)).slice(0, limit + 1);
    // Each item carries its last message (up to 5,000 characters): a full page can outgrow a NATS
    // message, and would then fail on every retry. It is cut short, with hasMore and a cursor at its last item.
    const dtos = await this.toDtos(actor, rows.slice(0, limit), ctx);
    const fit = Math.min(limit, countFitting(dtos, this.maxReplyBytes()));
    const page = toPage(rows.slice(0, fit + 1), fit, (r) => r, (r) => ({ at: r.activity_key, id: r.conversation_id }));
    return { items: dtos.slice(0, fit), meta: page.meta };
  }

  /**
   * Fills the list cache for the most recently active users, so a restart
   * does not send every first request to PostgreSQL. Runs in the background;
   * a failure only means colder caches.
   */
  async warm(users: number, log: Logger): Promise<number> {
    if (!this.cache) return 0;
    const ids = await this.repo.recentlyActiveUsers(users);
    for (const id of ids) await this.firstRows(id);
    log.info({ users: ids.length }, 'conversation list cache warmed');
    return ids.length;
  }

  /** The newest LIST_CACHE_ROWS rows of a user's list, from the cache when it is current. */
  private async firstRows(actor: string): Promise<MembershipRow[]> {
    if (!this.cache) return this.repo.listForUser(actor, undefined, LIST_CACHE_ROWS);
    const cached = await this.cache.read(actor);
    if ('rows' in cached) return cached.rows;
    const rows = await this.repo.listForUser(actor, undefined, LIST_CACHE_ROWS);
    if (cached.version !== undefined) await this.cache.store(actor, cached.version, rows);
    return rows;
  }

  async get(actor: string, conversationId: string, ctx: CallContext): Promise<Conversation> {
    const row = isUuid(conversationId) ? await this.repo.getForUser(actor, conversationId) : undefined;
    if (!row) throw new ChatError('CONVERSATION_NOT_FOUND', 'conversation not found');
    const [dto] = await this.toDtos(actor, [row], ctx);
    return dto!;
  }

  /** Race-free: the ordered pair is unique, so concurrent callers converge on one row. */
  async getOrCreate(actor: string, username: string, ctx: CallContext, create = true): Promise<{ conversation: Conversation; created: boolean }> {
    const other = await this.users.findByUsername(username);
    if (!other) throw new ChatError('USER_NOT_FOUND', `no user named ${username}`);
    if (other.id === actor) throw new ChatError('CANNOT_CHAT_WITH_SELF', 'cannot open a conversation with yourself');
    const [low, high] = actor < other.id ? [actor, other.id] : [other.id, actor];
    if (!create) {
      const existing = await this.repo.findPair(low, high);
      if (!existing) throw new ChatError('CONVERSATION_NOT_FOUND', 'conversation not found');
      return { conversation: await this.get(actor, existing, ctx), created: false };
    }
    const { id, created } = await withTransaction(this.db, async (tx) => {
      const repo = new ConversationsRepository(tx);
      const inserted = await repo.insertPair(newId(), low, high);
      if (inserted) {
        await repo.insertMemberships(inserted.id, low, high, inserted.created_at);
        const event: ConversationCreatedEvent = { eventId: newId(), conversationId: inserted.id, userIds: [low, high], createdAt: iso(inserted.created_at) };
        await appendOutbox(tx, event.eventId, EventType.conversationCreated, event);
        return { id: inserted.id, created: true };
      }
      const existing = await repo.findPair(low, high);
      if (!existing) throw new Error('conversation pair vanished after a conflict');
      return { id: existing, created: false };
    });
    if (created) {
      await this.cache?.invalidate([low, high]);
      this.onCommitted();
      ctx.log.info({ conversationId: id, userId: actor }, 'conversation created');
    }
    return { conversation: await this.get(actor, id, ctx), created };
  }

  async participants(conversationId: string): Promise<[string, string]> {
    const pair = isUuid(conversationId) ? await this.repo.participants(conversationId) : undefined;
    if (!pair) throw new ChatError('CONVERSATION_NOT_FOUND', 'conversation not found');
    return pair;
  }

  /**
   * Who shares a conversation with `userId`: whom presence tells when they
   * come and go. A page at a time, cut to fit a NATS reply, since a user may
   * have any number of contacts.
   */
  async contacts(userId: string, after: string | undefined): Promise<{ userIds: string[]; next: string | null }> {
    if (after !== undefined && !isUuid(after)) throw new ChatError('INVALID_CURSOR', 'after is not a cursor this subject returned');
    const rows = await this.repo.contactsPage(userId, after, CONTACTS_PAGE + 1);
    const page = rows.slice(0, CONTACTS_PAGE);
    const fit = countFitting(page.map((r) => r.other_user_id), this.maxReplyBytes());
    const more = rows.length > fit;
    return { userIds: page.slice(0, fit).map((r) => r.other_user_id), next: more ? page[fit - 1]!.conversation_id : null };
  }

  /** The directory's users among `ids`, in the order asked, as many as fit a reply (GetUsersReply). */
  async usersFitting(ids: readonly string[]): Promise<{ users: User[]; answered: number }> {
    const found = new Map((await this.users.getMany(ids)).map((u) => [u.id, u]));
    const budget = this.maxReplyBytes();
    const users: User[] = [];
    let bytes = 0;
    let answered = 0;
    for (const id of ids) {
      const user = found.get(id);
      if (user) {
        bytes += Buffer.byteLength(JSON.stringify(user));
        if (users.length > 0 && bytes > budget) break;
        users.push(user);
        found.delete(id);
      }
      answered++;
    }
    return { users, answered };
  }

  /** Block status and presence for a whole page in one request each, never one per row. */
  private async toDtos(actor: string, rows: MembershipRow[], ctx: CallContext): Promise<Conversation[]> {
    if (rows.length === 0) return [];
    const otherIds = [...new Set(rows.map((r) => r.user_id))];
    const [statuses, presence] = await Promise.all([
      this.bus.request(this.subjects.blocks.statusMany, { userId: actor, otherIds }, StatusMap, { requestId: ctx.requestId, idempotent: true, hedge: true }),
      this.presenceOf(otherIds, ctx),
    ]);
    return rows.map((r) => {
      const status: BlockStatus = statuses[r.user_id] ?? { blockedByMe: false, blockedByThem: false, canMessage: true };
      const blocked = status.blockedByMe || status.blockedByThem;
      return {
        id: r.conversation_id,
        participant: {
          id: r.user_id,
          username: r.username,
          displayName: r.display_name,
          avatarUrl: r.avatar_url,
          ...(blocked ? OFFLINE : (presence[r.user_id] ?? OFFLINE)),
        },
        lastMessage: (r.last_message as Message | null) ?? null,
        unreadCount: r.unread_count,
        blockStatus: status,
        createdAt: iso(r.created_at),
        updatedAt: iso(r.activity_at),
      };
    });
  }

  /** Presence is decoration: when its service is away the list still answers, showing everyone offline. */
  private async presenceOf(userIds: string[], ctx: CallContext): Promise<Record<string, Presence>> {
    try {
      return await this.bus.request(this.subjects.presence.query, { userIds }, PresenceMap, { requestId: ctx.requestId, timeoutMs: 1000, idempotent: true, hedge: true });
    } catch (err) {
      ctx.log.warn({ err: (err as Error).message }, 'presence unavailable: showing participants offline');
      return {};
    }
  }
}
