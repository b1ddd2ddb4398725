import { ensureEventStream, OutboxRelay, replyBudget, startService, type Config, type Database, type Logger } from '@chat/platform';
import { BlocksService } from './blocks.service';
import { blockEndpoints } from './handlers';

/** Composition root of the blocks service: who blocks whom. */
export function startBlocksService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'blocks',
    description: 'who blocks whom',
    database: { schema: 'blocks', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, nc, bus, subjects, teardown, metrics }) => {
      await ensureEventStream(nc, config.NATS_PREFIX, config.JETSTREAM_REPLICAS);
      const relay = new OutboxRelay(nc, db, config.NATS_PREFIX, 'blocks', log, metrics.registry);
      relay.start();
      teardown.add('outbox relay', () => relay.stop());
      return blockEndpoints(subjects.blocks, new BlocksService(db, bus, subjects, () => relay.kick(), () => replyBudget(nc)));
    },
  });
}
