import { MessageCreatedEvent, MessageReadEvent, subjects } from '@chat/contracts';
import { PoisonEventError, runConsumer, type Database, type Logger, type NatsConnection } from '@chat/platform';
import type { Registry } from 'prom-client';
import { ConversationsRepository } from './conversations.repository';

/**
 * Keeps each membership's activity time, last message and unread count in
 * step with the messages service's events. Every event carries the
 * conversation's full derived state at a version, so applying "newest
 * version wins" is idempotent and indifferent to redelivery order.
 */
export async function startProjection(
  nc: NatsConnection,
  db: Database,
  prefix: string,
  log: Logger,
  onChanged: (userIds: string[]) => Promise<void>,
  registry?: Registry,
  replicas?: number,
) {
  const s = subjects(prefix).events;
  const repo = new ConversationsRepository(db);
  return runConsumer(nc, {
    prefix,
    durable: 'conversations-projection',
    filterSubject: s.messageEvents,
    log,
    registry,
    replicas,
    service: 'conversations',
    handle: async (subject, data) => {
      if (subject !== s.messageCreated && subject !== s.messageRead) return;
      const parsed = (subject === s.messageCreated ? MessageCreatedEvent : MessageReadEvent).safeParse(data);
      if (!parsed.success) throw new PoisonEventError(`${subject} does not match its contract`);
      const event = parsed.data;
      const changed = await repo.applySnapshot({
        conversationId: event.conversationId,
        version: event.version,
        lastMessage: event.lastMessage,
        lastMessageAt: event.lastMessage?.createdAt ?? null,
        unread: event.unread,
      });
      // Acked only after the cached lists are marked stale, so a crash in between replays the event (harmless).
      await onChanged(changed);
    },
  });
}
