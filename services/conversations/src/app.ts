import { ensureEventStream, OutboxRelay, startService, type Config, type Database, type Logger } from '@chat/platform';
import { ConversationsService } from './conversations.service';
import { conversationEndpoints } from './handlers';
import { startProjection } from './projection';

/** Composition root of the conversations service: conversations, their list projection and the users directory. */
export function startConversationsService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'conversations',
    description: 'conversations, participants and the users directory',
    database: { schema: 'conversations', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, nc, bus, subjects, teardown }) => {
      await ensureEventStream(nc, config.NATS_PREFIX);
      const relay = new OutboxRelay(nc, db, config.NATS_PREFIX, 'conversations', log);
      relay.start();
      teardown.add('outbox relay', () => relay.stop());
      const projection = await startProjection(nc, db, config.NATS_PREFIX, log);
      teardown.add('projection consumer', () => projection.stop());
      return conversationEndpoints(subjects.conversations, new ConversationsService(db, bus, subjects, () => relay.kick()), db);
    },
  });
}
