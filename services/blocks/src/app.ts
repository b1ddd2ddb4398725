import { startService, type Config, type Database, type Logger } from '@chat/platform';
import { BlocksService } from './blocks.service';
import { blockEndpoints } from './handlers';

/** Composition root of the blocks service: who blocks whom. */
export function startBlocksService(config: Config, log: Logger) {
  return startService<Database>(config, log, {
    name: 'blocks',
    description: 'who blocks whom',
    database: { schema: 'blocks', migrations: new URL('../migrations', import.meta.url) },
    setup: async ({ db, bus, subjects }) => blockEndpoints(subjects.blocks, new BlocksService(db, bus, subjects)),
  });
}
