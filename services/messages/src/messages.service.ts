import {
  ChatError,
  EventType,
  type ConversationSnapshot,
  ParticipantsReply,
  type Message,
  type SearchHit,
  type MessageReadEvent,
  type Page,
  type ReadResult,
  type Subjects,
  type UnreadCount,
} from '@chat/contracts';
import { appendOutbox, countFitting, decodeCursor, iso, isUuid, newId, toPage, traceCarrier, withTransaction, type BusClient, type Database, type Logger } from '@chat/platform';
import { z } from 'zod';
import { MessagesRepository, toMessage, type ConversationRow, type SearchRow, type SendItem } from './messages.repository';
import { SendBatcher } from './send-batcher';
import { MessageChanges } from './message-changes';
import { type UserEvent } from './events.repository';
import { readEvents } from './user-events';
import type { UnreadCache } from './unread-cache';

export interface CallContext {
  requestId: string | undefined;
  log: Logger;
}

export interface SendInput {
  actor: string;
  conversationId: string;
  content: string;
  clientMessageId?: string | undefined;
  deadline?: number | undefined;
}

const AppliedReply = z.object({ applied: z.boolean() });

/** Not a participant and not existing answer alike, so ids cannot be probed. */
const notFound = () => new ChatError('CONVERSATION_NOT_FOUND', 'conversation not found');

/**
 * Messages, read markers and unread counters: all three change in the one
 * transaction of a send or a read, together with the outbox event that
 * carries the conversation's new state to everyone else.
 */
export class MessagesService {
  private readonly repo: MessagesRepository;
  private readonly batcher: SendBatcher;
  /** Edits, deletes and reactions (SPEC 10). */
  readonly changes: MessageChanges;

  constructor(
    private readonly db: Database,
    private readonly bus: BusClient,
    private readonly subjects: Subjects,
    /** Runs after each commit that wrote events, before the caller is answered. */
    private readonly onCommitted: (events: UserEvent[]) => Promise<void>,
    private readonly onTyping: (recipientId: string, payload: { conversationId: string; userId: string; isTyping: boolean }) => void,
    private readonly maxReplyBytes: () => number,
    log: Logger,
    private readonly unreadCache?: UnreadCache,
    onBatch?: (size: number) => void,
    changes: { editWindowS: number; eraseFromStream: (filter: string) => Promise<void> } = { editWindowS: 0, eraseFromStream: async () => undefined },
  ) {
    this.repo = new MessagesRepository(db);
    const pushSnapshot = (snapshot: ConversationSnapshot) =>
      this.bus
        .request(this.subjects.conversations.applySnapshot, snapshot, AppliedReply, { idempotent: true })
        .then(() => undefined)
        // Committed either way: the outbox event brings the list up to date once the conversations service answers again.
        .catch((err: unknown) => log.warn({ err: (err as Error).message, conversationId: snapshot.conversationId }, 'could not push a changed snapshot to the conversations list'));
    this.changes = new MessageChanges(
      db,
      (actor, conversationId, ctx) => this.membership(actor, conversationId, ctx),
      onCommitted,
      changes.editWindowS,
      pushSnapshot,
      subjects.events,
      changes.eraseFromStream,
    );
    this.batcher = new SendBatcher((items) => this.repo.sendMany(items), log, onBatch);
  }

  async send(input: SendInput, ctx: CallContext): Promise<{ message: Message; created: boolean }> {
    if (!isUuid(input.conversationId)) throw notFound();
    const expired = () => new ChatError('SERVICE_UNAVAILABLE', 'messages: the send waited past its deadline and was not stored; retry with the same clientMessageId');
    if (input.deadline !== undefined && Date.now() > input.deadline) throw expired();
    const item = (): SendItem => ({
      id: newId(),
      conversationId: input.conversationId,
      sender: input.actor,
      content: input.content,
      clientMessageId: input.clientMessageId ?? null,
      eventId: newId(),
      trace: traceCarrier(),
      deadline: input.deadline === undefined ? null : new Date(input.deadline).toISOString(),
    });
    let result = await this.batcher.submit(item());
    if (result.status === 'unknown') {
      await this.learnConversation(input.conversationId, ctx);
      result = await this.batcher.submit(item());
    }
    switch (result.status) {
      case 'unknown':
      case 'not_found':
        throw notFound();
      case 'blocked':
        throw new ChatError('BLOCKED', 'messages cannot be sent while either user blocks the other');
      case 'expired':
        throw expired();
      case 'existing':
        return { message: this.replayed(result.message, input.content), created: false };
      case 'created':
        await this.onCommitted(result.events);
        ctx.log.debug({ conversationId: input.conversationId, messageId: result.message.id, userId: input.actor }, 'message sent');
        return { message: result.message, created: true };
    }
  }

  async read(actor: string, conversationId: string, messageId: string | undefined, ctx: CallContext): Promise<ReadResult> {
    const conv = await this.membership(actor, conversationId, ctx);
    if (messageId !== undefined && !isUuid(messageId)) throw new ChatError('MESSAGE_NOT_FOUND', 'message not found');
    const result = await withTransaction(this.db, async (tx) => {
      const repo = new MessagesRepository(tx);
      await repo.lockConversation(conv.id);
      const target = messageId === undefined ? await repo.latest(conv.id) : await repo.findInConversation(conv.id, messageId);
      if (!target) {
        if (messageId !== undefined) throw new ChatError('MESSAGE_NOT_FOUND', 'message not found');
        return { markedCount: 0, unreadCount: 0, userEvents: undefined };
      }
      const upTo = { at: target.created_key, id: target.id };
      if (!(await repo.isPastReadMarker(conv.id, actor, upTo))) {
        const unread = (await repo.unreadCounts(conv.id)).find((u) => u.userId === actor)?.count ?? 0;
        return { markedCount: 0, unreadCount: unread, userEvents: undefined };
      }
      const marked = await repo.markRead(conv.id, actor, upTo);
      const unreadCount = await repo.setReadState(conv.id, actor, target.id);
      if (marked.count === 0) return { markedCount: 0, unreadCount, userEvents: undefined };
      const version = await repo.bumpVersion(conv.id);
      const last = await repo.latest(conv.id);
      const event: MessageReadEvent = {
        eventId: newId(),
        conversationId: conv.id,
        version,
        lastMessage: last ? toMessage(last) : null,
        unread: await repo.unreadCounts(conv.id),
        readerId: actor,
        lastReadMessageId: target.id,
        readAt: iso(marked.readAt ?? new Date()),
        markedCount: marked.count,
      };
      await appendOutbox(tx, event.eventId, this.subjects.events.messageEvent(EventType.messageRead, event.lastMessage), event);
      const userEvents = await readEvents(tx, conv, actor, { lastReadMessageId: target.id, readAt: event.readAt, unreadCount });
      return { markedCount: marked.count, unreadCount, userEvents };
    });
    if (result.userEvents) {
      await this.onCommitted(result.userEvents);
      ctx.log.info({ conversationId: conv.id, userId: actor, markedCount: result.markedCount }, 'messages read');
    }
    return { markedCount: result.markedCount, unreadCount: result.unreadCount };
  }

  async list(actor: string, conversationId: string, cursor: string | undefined, limit: number, ctx: CallContext): Promise<Page<Message>> {
    const conv = await this.membership(actor, conversationId, ctx);
    const before = cursor === undefined ? undefined : decodeCursor(cursor);
    const rows = await this.repo.page(conv.id, before, limit + 1);
    // A page of long messages may not fit one NATS reply: it is cut short, with hasMore and a cursor.
    const fit = Math.min(limit, countFitting(rows.slice(0, limit), this.maxReplyBytes()));
    return toPage(rows.slice(0, fit + 1), fit, toMessage, (r) => ({ at: r.created_key, id: r.id }));
  }

  /**
   * SPEC 10 search: the caller's messages matching every word of q, newest
   * first. A conversationId that is not a uuid names no conversation of the
   * caller's, so it finds nothing, like any other that is not theirs.
   */
  async search(req: { actor: string; q: string; conversationId?: string | undefined; cursor?: string | undefined; limit: number }): Promise<Page<SearchHit>> {
    const before = req.cursor === undefined ? undefined : decodeCursor(req.cursor);
    // White space as JavaScript's trim() knows it, the rule q was trimmed by. Repeats add nothing but tsquery size.
    const words = [...new Set(req.q.split(/\s+/u).filter((w) => w.length > 0))];
    if (words.length === 0 || (req.conversationId !== undefined && !isUuid(req.conversationId))) return { items: [], meta: { nextCursor: null, hasMore: false } };
    const rows = await this.repo.search({ actor: req.actor, conversationId: req.conversationId, words, before, limit: req.limit + 1 });
    const hit = (r: SearchRow): SearchHit => ({ message: r.json, participantId: r.participant_id });
    // As in list: a page of long messages may not fit one NATS reply; it is cut short, with hasMore and a cursor.
    const fit = Math.min(req.limit, countFitting(rows.slice(0, req.limit).map(hit), this.maxReplyBytes()));
    return toPage(rows.slice(0, fit + 1), fit, hit, (r) => ({ at: r.created_key, id: r.id }));
  }

  async get(actor: string, messageId: string): Promise<Message> {
    const row = isUuid(messageId) ? await this.repo.getWithParticipants(messageId) : undefined;
    if (!row || (row.user_a !== actor && row.user_b !== actor)) throw new ChatError('MESSAGE_NOT_FOUND', 'message not found');
    return toMessage(row);
  }

  /**
   * Typing is ephemeral: straight to the other participant's gateways, never
   * stored. Across a block it is acknowledged but goes nowhere.
   */
  async typing(actor: string, conversationId: string, isTyping: boolean, ctx: CallContext): Promise<Record<string, never>> {
    const conv = await this.membership(actor, conversationId, ctx);
    const other = conv.user_a === actor ? conv.user_b : conv.user_a;
    if (!(await this.repo.blockedBetween(actor, other))) this.onTyping(other, { conversationId: conv.id, userId: actor, isTyping });
    return {};
  }

  /** Loads the unread totals of users with something unread into the cache; in the background at start. */
  async warmUnread(users: number): Promise<number> {
    if (!this.unreadCache) return 0;
    const ids = await this.repo.usersWithUnread(users);
    for (const id of ids) await this.unreadCount(id);
    return ids.length;
  }

  async unreadCount(actor: string): Promise<UnreadCount> {
    const cached = await this.unreadCache?.get(actor);
    if (cached) return cached;
    const { seq, ...totals } = await this.repo.unreadTotals(actor);
    await this.unreadCache?.offer(actor, seq, totals);
    return totals;
  }

  /** The repeat of a send: the original when the content matches (after trimming), else a conflict. */
  private replayed(existing: Message, content: string): Message {
    if (existing.content !== content)
      throw new ChatError('IDEMPOTENCY_CONFLICT', 'this clientMessageId was already used with other content');
    return existing;
  }

  /** The blocks service's push of one pair's state: applied once every send that passed its check has committed. */
  async applyBlock(change: { blockerId: string; blockedId: string; blocked: boolean; version: number }): Promise<{ applied: boolean }> {
    return { applied: await this.repo.applyBlock(change) };
  }

  /** Participants are learnt once from the conversations service (they never change in a 1:1 chat). */
  private async learnConversation(conversationId: string, ctx: CallContext): Promise<void> {
    let reply;
    try {
      reply = await this.bus.request(this.subjects.conversations.participants, { conversationId }, ParticipantsReply, { requestId: ctx.requestId, idempotent: true, hedge: true });
    } catch (err) {
      if (err instanceof ChatError && err.code === 'CONVERSATION_NOT_FOUND') throw notFound();
      throw err;
    }
    await this.repo.insertConversation(conversationId, reply.userIds[0], reply.userIds[1]);
  }

  /**
   * The conversation if the actor takes part in it. Participants are learnt
   * once from the conversations service (they never change in a 1:1 chat).
   * Not a participant and not existing answer alike, so ids cannot be probed.
   */
  private async membership(actor: string, conversationId: string, ctx: CallContext): Promise<ConversationRow> {
    if (!isUuid(conversationId)) throw notFound();
    let conv = await this.repo.findConversation(conversationId);
    if (!conv) {
      await this.learnConversation(conversationId, ctx);
      conv = await this.repo.findConversation(conversationId);
    }
    if (!conv || (conv.user_a !== actor && conv.user_b !== actor)) throw notFound();
    return conv;
  }
}
