import { runMain } from '@chat/platform';
import { startBlocksService } from './app';

await runMain('blocks', ['PostgreSQL', 'NATS'], startBlocksService);
