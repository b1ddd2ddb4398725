import {
  ChatError,
  DurableEventType,
  EventType,
  MAX_REACTIONS_PER_USER,
  type ConversationSnapshot,
  type Message,
  type MessageChangeReply,
  type Subjects,
} from '@chat/contracts';
import { appendOutbox, isUuid, newId, withTransaction, type Database, type Queryable } from '@chat/platform';
import { appendUserEvents, unreadUpdatedPayload } from './user-events';
import { MessagesRepository, type ConversationRow } from './messages.repository';
import type { PendingEvent, UserEvent } from './events.repository';
import type { CallContext } from './messages.service';

/** The message row a change works on, locked for the rest of its transaction. */
interface LockedMessage {
  id: string;
  sender_id: string;
  content: string;
  read_at: Date | null;
  deleted: boolean;
  /** Whether the edit window has passed, judged by the database clock that stamped createdAt. */
  past_window: boolean;
  [k: string]: unknown;
}

/** What one change did, for the events that describe it; undefined: nothing changed (no event). */
interface Applied {
  domainEvent: (typeof EventType)['messageUpdated' | 'messageDeleted' | 'messageReactions'];
  userEvents: (conv: ConversationRow, other: string, message: Message) => PendingEvent[];
  /** Filled in after the seq rows are locked (see appendUserEvents). */
  afterLock?: (pending: PendingEvent[]) => Promise<void>;
}

const messageNotFound = () => new ChatError('MESSAGE_NOT_FOUND', 'message not found');
const notSender = (what: string) => new ChatError('NOT_SENDER', `only the sender may ${what} a message`);
const deletedError = () => new ChatError('MESSAGE_DELETED', 'the message was deleted');
const blockedError = () => new ChatError('BLOCKED', 'not possible while either user blocks the other');

/**
 * Edits, deletes for everyone and reactions (SPEC 10). Each is one
 * transaction that takes the locks a send takes, in the same order (the
 * pair's advisory lock shared, the conversation's row, then the users' seq
 * rows), plus the message's row: so a change and a send of one conversation
 * take turns, their events reach each user's log in commit order, and a
 * block applied meanwhile is seen. A change writes its durable events for
 * both users and one outbox event carrying the conversation's new snapshot
 * (the list's lastMessage follows an edit or a delete); a repeat that changes
 * nothing writes nothing.
 */
export class MessageChanges {
  constructor(
    private readonly db: Database,
    private readonly membership: (actor: string, conversationId: string, ctx: CallContext) => Promise<ConversationRow>,
    private readonly onCommitted: (events: UserEvent[]) => Promise<void>,
    private readonly editWindowS: number,
    /** Shows the change in the conversations list before the caller is answered; the outbox event repairs a push that failed. */
    private readonly pushSnapshot: (snapshot: ConversationSnapshot) => Promise<void>,
    private readonly subjects: Subjects['events'],
    /** Erases every event of a subject filter from the event stream (never throws: logs). */
    private readonly eraseFromStream: (filter: string) => Promise<void>,
  ) {}

  edit(input: { actor: string; conversationId: string; messageId: string; content: string }, ctx: CallContext): Promise<MessageChangeReply> {
    return this.change(input, ctx, async (tx, m, blocked) => {
      if (m.sender_id !== input.actor) throw notSender('edit');
      if (m.deleted) throw deletedError();
      // A retried edit that already went through answers as it did, even once the window or a block would refuse it.
      if (m.content === input.content) return undefined;
      if (this.editWindowS > 0 && m.past_window) throw new ChatError('EDIT_WINDOW_PASSED', `messages can be edited for ${this.editWindowS} s after sending`);
      if (await blocked()) throw blockedError();
      await tx.query('UPDATE messages SET content = $2, edited_at = clock_timestamp() WHERE id = $1', [m.id, input.content]);
      return {
        domainEvent: EventType.messageUpdated,
        userEvents: (conv, other, message) =>
          [input.actor, other].map((userId) => ({ userId, type: DurableEventType.messageUpdated, payload: { message }, messageId: m.id })),
      };
    });
  }

  delete(input: { actor: string; conversationId: string; messageId: string }, ctx: CallContext): Promise<MessageChangeReply> {
    return this.change(input, ctx, async (tx, m) => {
      if (m.sender_id !== input.actor) throw notSender('delete');
      if (m.deleted) return undefined;
      await tx.query("UPDATE messages SET content = '', deleted_at = clock_timestamp() WHERE id = $1", [m.id]);
      await tx.query('DELETE FROM reactions WHERE message_id = $1', [m.id]);
      await scrubStoredCopies(tx, m.id);
      const wasUnread = m.read_at === null;
      return {
        domainEvent: EventType.messageDeleted,
        userEvents: (conv, other, message) => {
          const payload = { conversationId: conv.id, messageId: m.id, deletedAt: message.deletedAt };
          const events: PendingEvent[] = [input.actor, other].map((userId) => ({ userId, type: DurableEventType.messageDeleted, payload }));
          if (wasUnread) events.push({ userId: other, type: DurableEventType.unreadUpdated, payload: {} });
          return events;
        },
        afterLock: async (pending) => {
          const unread = pending.find((e) => e.type === DurableEventType.unreadUpdated);
          if (!unread) return;
          // Recounted from the messages (a tombstone no longer counts), under the recipient's seq lock as a send's is.
          const { rows } = await tx.query<{ unread_count: number }>(
            `UPDATE participants SET unread_count =
               (SELECT count(*) FROM messages WHERE conversation_id = $1 AND sender_id <> $2 AND read_at IS NULL AND deleted_at IS NULL)
             WHERE conversation_id = $1 AND user_id = $2 RETURNING unread_count`,
            [input.conversationId, unread.userId],
          );
          unread.payload = await unreadUpdatedPayload(tx, input.conversationId, unread.userId, rows[0]!.unread_count);
        },
      };
    });
  }

  react(input: { actor: string; conversationId: string; messageId: string; emoji: string; on: boolean }, ctx: CallContext): Promise<MessageChangeReply> {
    return this.change(input, ctx, async (tx, m, blocked) => {
      if (!input.on) {
        const { rowCount } = await tx.query('DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3', [m.id, input.actor, input.emoji]);
        if (rowCount === 0) return undefined;
      } else {
        if (m.deleted) throw deletedError();
        const { rows } = await tx.query<{ mine: boolean }>('SELECT emoji = $3 AS mine FROM reactions WHERE message_id = $1 AND user_id = $2', [m.id, input.actor, input.emoji]);
        if (rows.some((r) => r.mine)) return undefined;
        if (await blocked()) throw blockedError();
        if (rows.length >= MAX_REACTIONS_PER_USER) {
          throw new ChatError('TOO_MANY_REACTIONS', `at most ${MAX_REACTIONS_PER_USER} different reactions per user on one message`);
        }
        await tx.query('INSERT INTO reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)', [m.id, input.actor, input.emoji]);
      }
      return {
        domainEvent: EventType.messageReactions,
        userEvents: (conv, other, message) => {
          const payload = { conversationId: conv.id, messageId: m.id, reactions: message.reactions };
          return [input.actor, other].map((userId) => ({ userId, type: DurableEventType.reactionUpdated, payload }));
        },
      };
    });
  }

  private async change(
    input: { actor: string; conversationId: string; messageId: string },
    ctx: CallContext,
    apply: (tx: Queryable, m: LockedMessage, blocked: () => Promise<boolean>) => Promise<Applied | undefined>,
  ): Promise<MessageChangeReply> {
    const conv = await this.membership(input.actor, input.conversationId, ctx);
    if (!isUuid(input.messageId)) throw messageNotFound();
    const other = conv.user_a === input.actor ? conv.user_b : conv.user_a;
    const result = await withTransaction(this.db, async (tx) => {
      const repo = new MessagesRepository(tx);
      await tx.query("SELECT pg_advisory_xact_lock_shared(hashtext('chat.user-pair'), pair_lock_key($1, $2))", [conv.user_a, conv.user_b]);
      await repo.lockConversation(conv.id);
      const { rows } = await tx.query<LockedMessage>(
        `SELECT id, sender_id, content, read_at, deleted_at IS NOT NULL AS deleted,
                clock_timestamp() > created_at + make_interval(secs => $3) AS past_window
         FROM messages WHERE conversation_id = $1 AND id = $2 FOR UPDATE`,
        [conv.id, input.messageId, this.editWindowS],
      );
      const m = rows[0];
      if (!m) throw messageNotFound();
      const applied = await apply(tx, m, () => repo.blockedBetween(conv.user_a, conv.user_b));
      if (!applied) return { message: (await repo.findInConversation(conv.id, m.id))!.json, changed: false, events: [] as UserEvent[], snapshot: undefined };
      const version = await repo.bumpVersion(conv.id);
      const last = await repo.latest(conv.id);
      // Most changes are to the last message: then the list's snapshot and the answer are one read.
      const message = last?.id === m.id ? last.json : (await repo.findInConversation(conv.id, m.id))!.json;
      const events = await appendUserEvents(tx, applied.userEvents(conv, other, message), applied.afterLock);
      const eventId = newId();
      const snapshot: ConversationSnapshot = { conversationId: conv.id, version, lastMessage: last?.json ?? null, unread: await repo.unreadCounts(conv.id) };
      const about = applied.domainEvent === EventType.messageDeleted ? { messageId: m.id, deletedAt: message.deletedAt } : { messageId: m.id };
      await appendOutbox(tx, eventId, this.subjects.messageEvent(applied.domainEvent, snapshot.lastMessage), { eventId, ...snapshot, ...about }, m.id);
      return { message, changed: true, events, snapshot };
    });
    if (result.changed) {
      const erase = result.message.deletedAt !== null ? this.eraseFromStream(this.subjects.contentOf(result.message.id)) : undefined;
      await Promise.all([this.onCommitted(result.events), this.pushSnapshot(result.snapshot!), erase]);
      ctx.log.info({ conversationId: conv.id, messageId: input.messageId, userId: input.actor }, 'message changed');
    }
    return { message: result.message, changed: result.changed };
  }
}

/**
 * A delete removes the content from every copy this service keeps: the
 * message events of both users' logs (a replay renders the tombstone anyway,
 * but the stored payload must not hold the text either), the outbox rows
 * about the message and every outbox snapshot whose lastMessage it is (both
 * found by index). Copies already published to JetStream are erased by
 * subject once this commits (subjects().events.contentOf); the relay locks
 * the rows it publishes, so none is published behind this scrub's back.
 */
async function scrubStoredCopies(tx: Queryable, messageId: string): Promise<void> {
  const { rows } = await tx.query<{ json: Message }>('SELECT message_json(m) AS json FROM messages m WHERE id = $1', [messageId]);
  const tombstone = JSON.stringify(rows[0]!.json);
  await tx.query(
    `UPDATE user_events SET payload = jsonb_set(payload, '{message}', $2::jsonb)
     WHERE message_id = $1 AND payload ? 'message'`,
    [messageId, tombstone],
  );
  await tx.query(
    `UPDATE outbox SET payload = payload
         || CASE WHEN payload ? 'message' AND payload->'message'->>'id' = $1::text THEN jsonb_build_object('message', $2::jsonb) ELSE '{}'::jsonb END
         || CASE WHEN payload->'lastMessage'->>'id' = $1::text THEN jsonb_build_object('lastMessage', $2::jsonb) ELSE '{}'::jsonb END
     WHERE message_id = $1 OR payload->'lastMessage'->>'id' = $1::text`,
    [messageId, tombstone],
  );
}
