import { EphemeralEventType, eventStreamName } from '@chat/contracts';
import { jetstreamManager } from '@nats-io/jetstream';
import { Histogram } from 'prom-client';
import { ensureEventStream, injectTrace, type NatsConnection, openCache, OutboxRelay, replyBudget, startService, type Config, type Database, type Logger } from '@chat/platform';
import { EventLog } from './event-log';
import { startBlockReplicaConsumer, startConversationConsumer, syncBlockReplica } from './replicas';
import { MessagesRepository } from './messages.repository';
import { messageEndpoints } from './handlers';
import { MessagesService } from './messages.service';
import { UnreadCache } from './unread-cache';

/**
 * Erases every stored message of the stream whose subject matches `filter`,
 * one at a time by sequence. Not a filtered purge: nats-server before 2.9.12
 * moves every consumer's cursor on one (nats-io/nats-server#3838), so the
 * projection and notifications consumers, whose filters are wider, would
 * skip the events published just before it; deleting a message leaves every
 * cursor where it is. A handful of copies per message: one per kind of event
 * that carried it as its lastMessage.
 */
async function eraseFromStream(nc: NatsConnection, stream: string, filter: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream, { subjects_filter: filter });
  for (const [subject, count] of Object.entries(info.state.subjects ?? {})) {
    for (let n = 0; n < count; n++) {
      const stored = await jsm.streams.getMessage(stream, { last_by_subj: subject });
      if (!stored) break;
      await jsm.streams.deleteMessage(stream, stored.seq, true);
    }
  }
}

/** Composition root of the messages service: messages, read markers, unread counters, the user event log and the outbox. */
export function startMessagesService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'messages',
    description: 'messages, read markers, unread counters and their events',
    database: { schema: 'messages', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, nc, bus, subjects, teardown, metrics }) => {
      await ensureEventStream(nc, config.NATS_PREFIX, config.JETSTREAM_REPLICAS);
      const relay = new OutboxRelay(nc, db, config.NATS_PREFIX, 'messages', log, metrics.registry);
      relay.start();
      // Registered before the endpoints' stop step, so it runs after it: the relay drains what the last requests wrote.
      teardown.add('outbox relay', () => relay.stop());
      const events = new EventLog(db, nc, subjects, config.EVENTS_RETENTION_DAYS, log);
      events.startPruning();
      teardown.add('event pruning', async () => events.stop());
      const batchSize = new Histogram({
        name: 'chat_send_batch_size',
        help: 'Sends committed together in one transaction (group commit); 1 when the system is idle',
        buckets: [1, 2, 4, 8, 16, 32, 64],
        registers: [metrics.registry],
      });
      const { redis, requests } = openCache({ config, log, metrics, teardown }, 'messages', 'unread:*');
      const unreadCache = new UnreadCache(redis, requests, log);
      const service = new MessagesService(
        db,
        bus,
        subjects,
        async (committed) => {
          // The recipient's cached badge is invalidated before anyone can learn of this write: the
          // invalidations are issued now (ioredis writes them in the next setImmediate), the events
          // published in the setImmediate after that, so Redis has the invalidation on its socket
          // before any delivery leaves, and any read it answers after that comes after it. Not
          // awaited: the round trip to Redis stays off the send's latency. (A failed invalidation
          // drops the key; see UnreadCache.)
          for (const e of committed) if (e.type === 'unread.updated') void unreadCache.invalidate(e.userId, e.seq);
          relay.kick();
          // The deliveries leave before the reply: the recipient's latency is the one a chat is judged by.
          await new Promise<void>((resolve) =>
            setImmediate(() => {
              events.publish(committed);
              resolve();
            }),
          );
        },
        (recipientId, payload) => nc.publish(subjects.deliver(recipientId), JSON.stringify({ type: EphemeralEventType.typing, payload }), { headers: injectTrace() }),
        () => replyBudget(nc),
        log,
        unreadCache,
        (size) => batchSize.observe(size),
        {
          editWindowS: config.MESSAGE_EDIT_WINDOW_S,
          eraseFromStream: async (filter) => {
            try {
              await eraseFromStream(nc, eventStreamName(config.NATS_PREFIX), filter);
            } catch (err) {
              // The delete stands; the copies age out with the stream's max_age (7 days). Worth an operator's look.
              log.error({ err: (err as Error).message, filter }, 'could not erase a deleted message from the event stream');
            }
          },
        },
      );
      let stopping = false;
      teardown.add('block replica sync', async () => void (stopping = true));
      const repo = new MessagesRepository(db);
      const replicaConsumer = await startBlockReplicaConsumer(nc, repo, config.NATS_PREFIX, log, metrics.registry, config.JETSTREAM_REPLICAS);
      teardown.add('block replica consumer', () => replicaConsumer.stop());
      const conversationConsumer = await startConversationConsumer(nc, repo, config.NATS_PREFIX, log, metrics.registry, config.JETSTREAM_REPLICAS);
      teardown.add('conversation consumer', () => conversationConsumer.stop());
      await syncBlockReplica(repo, bus, subjects, log, () => stopping);
      const warming = service
        .warmUnread(1000)
        .then((n) => log.info({ users: n }, 'unread cache warmed'))
        .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'cache warm-up failed'));
      teardown.add('cache warm-up', () => warming);
      return messageEndpoints(subjects.messages, service, events);
    },
  });
}
