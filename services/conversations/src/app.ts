import { ensureEventStream, openCache, OutboxRelay, replyBudget, startService, type Config, type Database, type Logger } from '@chat/platform';
import { ConversationsService } from './conversations.service';
import { conversationEndpoints } from './handlers';
import { startProjection } from './projection';
import { ListCache } from './list-cache';

/** How many of the most recently active users' first pages are loaded into the cache at start. */
const WARM_USERS = 1000;

/** Composition root of the conversations service: conversations, their list projection and the users directory. */
export function startConversationsService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'conversations',
    description: 'conversations, participants and the users directory',
    database: { schema: 'conversations', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, nc, bus, subjects, teardown, metrics }) => {
      await ensureEventStream(nc, config.NATS_PREFIX, config.JETSTREAM_REPLICAS);
      const relay = new OutboxRelay(nc, db, config.NATS_PREFIX, 'conversations', log, metrics.registry);
      relay.start();
      teardown.add('outbox relay', () => relay.stop());
      const { redis, requests } = openCache({ config, log, metrics, teardown }, 'conversations', 'list:*');
      const cache = new ListCache(redis, requests, log);
      const projection = await startProjection(nc, db, config.NATS_PREFIX, log, (users) => cache.invalidate(users), metrics.registry, config.JETSTREAM_REPLICAS);
      teardown.add('projection consumer', () => projection.stop());
      const service = new ConversationsService(db, bus, subjects, () => relay.kick(), cache, () => replyBudget(nc));
      const warming = service.warm(WARM_USERS, log).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'cache warm-up failed'));
      teardown.add('cache warm-up', () => warming);
      return conversationEndpoints(subjects.conversations, service, db, cache);
    },
  });
}
