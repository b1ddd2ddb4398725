import { DurableEventType } from '@chat/contracts';
import type { Queryable } from '@chat/platform';
import { EventsRepository, type PendingEvent, type UserEvent } from './events.repository';
import { MessagesRepository, type ConversationRow, type SentParts } from './messages.repository';

/**
 * Durable per-user events, written in the transaction of the send or read
 * that causes them: a committed change always has its events, and nothing
 * else does. Called after the conversation row is locked and the counters
 * are changed; `reserve` then locks the users' seq rows, so the unread total
 * read afterwards includes every earlier committed change for that user.
 */
export async function appendUserEvents(tx: Queryable, pending: PendingEvent[], payloadsAfterLock?: (p: PendingEvent[]) => Promise<void>): Promise<UserEvent[]> {
  const events = new EventsRepository(tx);
  const counts = new Map<string, number>();
  for (const e of pending) counts.set(e.userId, (counts.get(e.userId) ?? 0) + 1);
  const next = await events.reserve(counts);
  await payloadsAfterLock?.(pending);
  const out = pending.map((e) => {
    const seq = next.get(e.userId)!;
    next.set(e.userId, seq + 1);
    return { ...e, seq };
  });
  await events.insert(out);
  return out;
}

export async function unreadUpdatedPayload(tx: Queryable, conversationId: string, userId: string, conversationUnread: number) {
  return { total: await new MessagesRepository(tx).unreadTotal(userId), conversationId, conversationUnread };
}

export async function readEvents(
  tx: Queryable,
  conv: ConversationRow,
  readerId: string,
  read: { lastReadMessageId: string; readAt: string; unreadCount: number },
): Promise<UserEvent[]> {
  const other = conv.user_a === readerId ? conv.user_b : conv.user_a;
  const payload = { conversationId: conv.id, readerId, lastReadMessageId: read.lastReadMessageId, readAt: read.readAt };
  const unread: PendingEvent = { userId: readerId, type: DurableEventType.unreadUpdated, payload: {} };
  return appendUserEvents(
    tx,
    [
      { userId: readerId, type: DurableEventType.messageRead, payload },
      { userId: other, type: DurableEventType.messageRead, payload },
      unread,
    ],
    async () => {
      unread.payload = await unreadUpdatedPayload(tx, conv.id, readerId, read.unreadCount);
    },
  );
}

/**
 * The three events a send wrote (send_messages stores them and answers their
 * parts): message.new for both users, then unread.updated for the recipient.
 * Built exactly as stored, so a live delivery and a replay are the same.
 */
export function sentEvents(r: SentParts): UserEvent[] {
  const payload = { message: r.message };
  return [
    { userId: r.senderId, seq: r.senderSeq, type: DurableEventType.messageNew, payload },
    { userId: r.recipientId, seq: r.recipientSeq, type: DurableEventType.messageNew, payload },
    {
      userId: r.recipientId,
      seq: r.recipientSeq + 1,
      type: DurableEventType.unreadUpdated,
      payload: { total: r.total, conversationId: r.message.conversationId, conversationUnread: r.conversationUnread },
    },
  ];
}
