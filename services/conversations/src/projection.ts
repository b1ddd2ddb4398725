import { MessageCreatedEvent, MessageDeletedEvent, MessageReactionsEvent, MessageReadEvent, MessageUpdatedEvent, subjects } from '@chat/contracts';
import type { z } from 'zod';
import { PoisonEventError, runConsumer, type BatchResults, type ConsumedEvent, type Database, type Logger, type NatsConnection } from '@chat/platform';
import type { Registry } from 'prom-client';
import { ConversationsRepository, type SnapshotUpdate } from './conversations.repository';

type SnapshotEvent = Pick<MessageCreatedEvent, 'conversationId' | 'version' | 'lastMessage' | 'unread'>;

/** SQLSTATE class 22: PostgreSQL refuses a value itself (not a uuid, a bad time, a NUL in text). The same event always fails the same way. */
const isDataException = (err: unknown) => typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('22');

/**
 * Keeps each membership's activity time, last message and unread count in
 * step with the messages service's events. Every event carries the
 * conversation's full derived state at a version, so applying "newest
 * version wins" is idempotent and indifferent to redelivery order, which is
 * also what lets a whole batch go in one statement.
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

  // Every message event carries the conversation's snapshot: an edit or a delete of the last message changes the list's lastMessage, a delete of an unread one its unread count.
  const contracts = new Map<string, z.ZodType<SnapshotEvent>>([
    [s.messageCreated, MessageCreatedEvent],
    [s.messageRead, MessageReadEvent],
    [s.messageUpdated, MessageUpdatedEvent],
    [s.messageDeleted, MessageDeletedEvent],
    [s.messageReactions, MessageReactionsEvent],
  ]);

  function toSnapshot({ subject, data }: ConsumedEvent): SnapshotUpdate | PoisonEventError | undefined {
    const contract = contracts.get(s.messageEventBase(subject));
    if (!contract) return undefined;
    const parsed = contract.safeParse(data);
    if (!parsed.success) return new PoisonEventError(`${subject} does not match its contract`);
    const event = parsed.data;
    return {
      conversationId: event.conversationId,
      version: event.version,
      lastMessage: event.lastMessage,
      lastMessageAt: event.lastMessage?.createdAt ?? null,
      unread: event.unread,
    };
  }

  async function handleBatch(events: ConsumedEvent[]): Promise<BatchResults> {
    const results: Array<Error | undefined> = events.map(() => undefined);
    const snapshots: Array<{ index: number; snapshot: SnapshotUpdate }> = [];
    events.forEach((e, index) => {
      const snapshot = toSnapshot(e);
      if (snapshot instanceof Error) results[index] = snapshot;
      else if (snapshot) snapshots.push({ index, snapshot });
    });
    if (snapshots.length === 0) return results;
    try {
      const changed = await repo.applySnapshots(snapshots.map((x) => x.snapshot));
      // Acked only after the cached lists are marked stale, so a crash in between replays the events (harmless).
      await onChanged(changed);
    } catch (err) {
      if (!isDataException(err)) {
        for (const { index } of snapshots) results[index] = err as Error;
        return results;
      }
      // One value PostgreSQL refuses must not hold back the rest of the batch:
      // each goes alone, and the one it refuses is dead-lettered, since it would fail forever.
      for (const { index, snapshot } of snapshots) {
        try {
          await onChanged(await repo.applySnapshot(snapshot));
        } catch (one) {
          results[index] = isDataException(one) ? new PoisonEventError(`PostgreSQL refuses the event: ${(one as Error).message}`) : (one as Error);
        }
      }
    }
    return results;
  }

  return runConsumer(nc, {
    prefix,
    durable: 'conversations-projection',
    filterSubject: s.messageEvents,
    log,
    registry,
    replicas,
    service: 'conversations',
    handleBatch,
    // A list is at most this much later than its messages (clients see messages live); it makes one statement of many.
    lingerMs: 25,
  });
}
